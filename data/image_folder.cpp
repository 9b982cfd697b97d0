// The image-folder reader.
#include "data/image_folder.h"

#include <algorithm>
#include <cctype>
#include <filesystem>

#include "data/file_io.h"

namespace lattice::data {

namespace {
bool is_image_file(const std::filesystem::path& path) {
  std::string extension = path.extension().string();
  std::transform(extension.begin(), extension.end(), extension.begin(),
                 [](unsigned char c) { return char(std::tolower(c)); });
  return extension == ".png" || extension == ".jpg" || extension == ".jpeg";
}
}  // namespace

ImageFolderDataset::ImageFolderDataset(const std::string& root, ImageFolderOptions options)
    : options_(std::move(options)), normalize_(3, options_.normalization, "image_folder") {
  namespace fs = std::filesystem;
  if (options_.resize == 0) options_.resize = options_.size;
  LATTICE_CHECK(options_.size > 0 && options_.resize >= options_.size, "[image_folder] size ",
                options_.size, " and resize ", options_.resize, ", expected 0 < size <= resize");
  LATTICE_CHECK(fs::is_directory(root), "[image_folder] ", root,
                ": no such directory; expected one subfolder of images per class");
  for (const auto& entry : fs::directory_iterator(root)) {
    if (entry.is_directory()) class_names_.push_back(entry.path().filename().string());
  }
  std::sort(class_names_.begin(), class_names_.end());
  const auto images_in = [](const fs::path& folder) {
    std::vector<std::string> paths;
    for (const auto& entry : fs::directory_iterator(folder)) {
      if (entry.is_regular_file() && is_image_file(entry.path())) {
        paths.push_back(entry.path().string());
      }
    }
    std::sort(paths.begin(), paths.end());
    return paths;
  };
  if (class_names_.empty()) {
    // A flat folder of images (generative data such as FFHQ) is one class.
    std::vector<std::string> paths = images_in(root);
    LATTICE_CHECK(!paths.empty(), "[image_folder] ", root,
                  ": no class subfolders and no images; expected one subfolder of images per "
                  "class, or a folder of images");
    class_names_.push_back(fs::path(root).filename().string());
    for (std::string& path : paths) files_.push_back({std::move(path), 0});
    return;
  }
  for (size_t label = 0; label < class_names_.size(); ++label) {
    for (std::string& path : images_in(fs::path(root) / class_names_[label])) {
      files_.push_back({std::move(path), int64_t(label)});
    }
  }
  LATTICE_CHECK(!files_.empty(), "[image_folder] ", root, ": no .png/.jpg/.jpeg files in its ",
                class_names_.size(), " class subfolders");
}

Example ImageFolderDataset::get(int64_t index) const {
  check_index("image_folder", index, size());
  const File& file = files_[size_t(index)];
  const Image image = resize_and_center_crop(load_image(file.path, 3, "image_folder"),
                                             options_.resize, options_.size);
  return {normalize_(image.pixels.data(), image.height, image.width, true),
          scalar_tensor(double(file.label), DType::int64)};
}

}  // namespace lattice::data
