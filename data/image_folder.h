// Image folders as ImageNet-100 and FFHQ are laid out: one class per subfolder (sorted names
// give class ids 0, 1, ...) or a flat folder of images (one class), PNG/JPEG decoded (libpng,
// libjpeg-turbo) on each get(), resized (shorter side) and centre-cropped to (3, S, S) float32.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "data/normalize.h"

namespace lattice::data {

struct ImageFolderOptions {
  /// Output side S of the centre crop.
  int size = 224;
  /// Shorter side after resizing, before the crop; 0 means `size` (no border cropped).
  int resize = 0;
  Normalization normalization = {};
};

class ImageFolderDataset final : public Dataset {
 public:
  /// Lists root/<class>/<image>.{png,jpg,jpeg} (case-insensitive), both levels sorted; with no
  /// subfolders, root/<image> as class 0. Throws lattice::Error when root is missing or
  /// holds no image.
  explicit ImageFolderDataset(const std::string& root, ImageFolderOptions options = {});

  int64_t size() const override {
    return int64_t(files_.size());
  }
  /// Throws "[image_folder] path: cannot decode image (...)" on an unreadable file.
  Example get(int64_t index) const override;

  const std::vector<std::string>& class_names() const {
    return class_names_;
  }
  const std::string& path(int64_t index) const {
    return files_[size_t(index)].path;
  }
  int64_t label(int64_t index) const {
    return files_[size_t(index)].label;
  }

 private:
  struct File {
    std::string path;
    int64_t label;
  };
  ImageFolderOptions options_;
  PixelNormalizer normalize_;
  std::vector<std::string> class_names_;
  std::vector<File> files_;
};

}  // namespace lattice::data
