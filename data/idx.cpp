// The IDX reader and writer (big-endian header: magic 0x0000080D, D sizes, then the bytes).
#include "data/idx.h"

#include <cstdio>
#include <filesystem>

#include "data/file_io.h"

namespace lattice::data {

namespace {

constexpr uint32_t kImagesMagic = 0x00000803;  // uint8, 3 dimensions
constexpr uint32_t kLabelsMagic = 0x00000801;  // uint8, 1 dimension

uint32_t read_big_endian(const std::vector<uint8_t>& bytes, size_t at) {
  return uint32_t(bytes[at]) << 24 | uint32_t(bytes[at + 1]) << 16 | uint32_t(bytes[at + 2]) << 8 |
         uint32_t(bytes[at + 3]);
}

std::string hex(uint32_t value) {
  char text[11];
  std::snprintf(text, sizeof text, "0x%08x", value);
  return text;
}

// The sizes after the magic; throws on a short header, a wrong magic or a short body.
std::vector<int64_t> read_header(const std::string& path,
                                 const std::vector<uint8_t>& bytes,
                                 uint32_t magic,
                                 const char* what) {
  const int dims = int(magic & 0xff);
  const size_t header = 4 + 4 * size_t(dims);
  LATTICE_CHECK(bytes.size() >= 4, "[idx] ", path, ": truncated: ", bytes.size(),
                " bytes, expected an IDX header (", what, ")");
  const uint32_t found = read_big_endian(bytes, 0);
  LATTICE_CHECK(found == magic, "[idx] ", path, ": magic ", hex(found), ", expected ", hex(magic),
                " (", what, ")");
  LATTICE_CHECK(bytes.size() >= header, "[idx] ", path, ": truncated: ", bytes.size(),
                " bytes, expected a ", header, "-byte header");
  std::vector<int64_t> sizes;
  // Three 32-bit sizes can overflow 64 bits; a body that large is truncated in any case.
  unsigned __int128 product = 1;
  for (int d = 0; d < dims; ++d) {
    sizes.push_back(read_big_endian(bytes, 4 + 4 * size_t(d)));
    product *= uint64_t(sizes.back());
  }
  const int64_t body = product > (uint64_t(1) << 62) ? int64_t(1) << 62 : int64_t(product);
  if (bytes.size() != header + size_t(body)) {
    std::string sizes_text;
    for (int64_t size : sizes) sizes_text += concat(sizes_text.empty() ? "" : "*", size);
    throw Error(concat(
        "[idx] ", path, bytes.size() < header + size_t(body) ? ": truncated: " : ": too long: ",
        bytes.size(), " bytes, expected ", header, " + ", sizes_text,
        product == static_cast<unsigned __int128>(body) ? concat(" = ", header + size_t(body))
                                                        : ""));
  }
  return sizes;
}

std::vector<uint8_t> header_bytes(uint32_t magic, const std::vector<int64_t>& sizes) {
  std::vector<uint8_t> bytes;
  const auto push = [&](uint32_t v) {
    for (int shift = 24; shift >= 0; shift -= 8) bytes.push_back(uint8_t(v >> shift));
  };
  push(magic);
  for (int64_t size : sizes) push(uint32_t(size));
  return bytes;
}

void write_idx(const std::string& path, std::vector<uint8_t> bytes) {
  if (path.ends_with(".gz")) {
    write_gzip_file(path, bytes);
  } else {
    write_file_bytes(path, bytes);
  }
}

}  // namespace

IdxDataset::IdxDataset(const std::string& images_path,
                       const std::string& labels_path,
                       IdxOptions options)
    : options_(std::move(options)), normalize_(1, options_.normalization, "idx") {
  images_ = read_file_bytes(images_path, "idx");
  const std::vector<int64_t> image_sizes =
      read_header(images_path, images_, kImagesMagic, "idx3 uint8 images");
  labels_ = read_file_bytes(labels_path, "idx");
  const std::vector<int64_t> label_sizes =
      read_header(labels_path, labels_, kLabelsMagic, "idx1 uint8 labels");
  count_ = image_sizes[0];
  rows_ = image_sizes[1];
  cols_ = image_sizes[2];
  LATTICE_CHECK(label_sizes[0] == count_, "[idx] ", labels_path, ": ", label_sizes[0],
                " labels, expected ", count_, " (the image count of ", images_path, ")");
  images_.erase(images_.begin(), images_.begin() + 16);
  images_.shrink_to_fit();
  labels_.erase(labels_.begin(), labels_.begin() + 8);
}

Example IdxDataset::get(int64_t index) const {
  check_index("idx", index, count_);
  Tensor input = normalize_(pixels(index), rows_, cols_, false);
  if (options_.flatten) input = input.reshape({rows_ * cols_});
  return {input, scalar_tensor(double(labels_[size_t(index)]), DType::int64)};
}

Batch IdxDataset::get_batch(std::vector<int64_t> indices, int threads) const {
  const ByteImages images{images_.data(), labels_.data(), count_, 1, rows_, cols_, "idx"};
  return normalized_batch(images, normalize_,
                          options_.flatten ? Shape{rows_ * cols_} : Shape{1, rows_, cols_},
                          std::move(indices), threads);
}

std::shared_ptr<IdxDataset> load_mnist(const std::string& directory,
                                       bool train,
                                       IdxOptions options) {
  namespace fs = std::filesystem;
  LATTICE_CHECK(fs::is_directory(directory), "[idx] ", directory,
                ": no such directory; expected a folder with the four MNIST IDX files");
  const std::string split = train ? "train" : "t10k";
  const auto find = [&](const std::string& stem) {
    for (const std::string& name : {stem, stem + ".gz"}) {
      if (fs::exists(fs::path(directory) / name)) return (fs::path(directory) / name).string();
    }
    throw Error(concat("[idx] ", directory, ": no ", stem,
                       "[.gz]; expected the four MNIST files (train/t10k images and labels)"));
  };
  return std::make_shared<IdxDataset>(find(split + "-images-idx3-ubyte"),
                                      find(split + "-labels-idx1-ubyte"), std::move(options));
}

void write_idx_images(const std::string& path,
                      const std::vector<uint8_t>& images,
                      int64_t count,
                      int64_t rows,
                      int64_t cols) {
  LATTICE_CHECK(int64_t(images.size()) == count * rows * cols, "[idx] ", path, ": ", images.size(),
                " image bytes, expected ", count, "*", rows, "*", cols);
  std::vector<uint8_t> bytes = header_bytes(kImagesMagic, {count, rows, cols});
  bytes.insert(bytes.end(), images.begin(), images.end());
  write_idx(path, std::move(bytes));
}

void write_idx_labels(const std::string& path, const std::vector<uint8_t>& labels) {
  std::vector<uint8_t> bytes = header_bytes(kLabelsMagic, {int64_t(labels.size())});
  bytes.insert(bytes.end(), labels.begin(), labels.end());
  write_idx(path, std::move(bytes));
}

}  // namespace lattice::data
