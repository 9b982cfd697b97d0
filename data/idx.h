// MNIST / Fashion-MNIST in the IDX format: idx3 uint8 images + idx1 uint8 labels, gzip or raw.
// Inputs are float32 in [0, 1] (optionally normalised), (1, 28, 28) or flattened; targets int64.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "data/normalize.h"

namespace lattice::data {

/// Where the Debian package dataset-fashion-mnist installs its four .gz files.
inline constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";
/// Training-set pixel statistics (of byte/255), for Normalization{{mean}, {std}}.
inline constexpr float kFashionMnistMean = 0.2860f, kFashionMnistStd = 0.3530f;
inline constexpr float kMnistMean = 0.1307f, kMnistStd = 0.3081f;

struct IdxOptions {
  /// (rows*cols) inputs instead of (1, rows, cols).
  bool flatten = false;
  Normalization normalization = {};
};

class IdxDataset final : public Dataset {
 public:
  /// Reads both files (gzip or raw). Throws lattice::Error naming the file on a missing file,
  /// a wrong magic number, a truncated file, or image and label counts that differ.
  IdxDataset(const std::string& images_path,
             const std::string& labels_path,
             IdxOptions options = {});

  int64_t size() const override {
    return count_;
  }
  Example get(int64_t index) const override;
  /// get()'s examples, normalised straight into the batch.
  Batch get_batch(std::vector<int64_t> indices, int threads) const override;

  int64_t rows() const {
    return rows_;
  }
  int64_t cols() const {
    return cols_;
  }
  uint8_t label(int64_t index) const {
    return labels_[size_t(index)];
  }
  /// The raw bytes of image `index`, rows*cols of them.
  const uint8_t* pixels(int64_t index) const {
    return images_.data() + size_t(index * rows_ * cols_);
  }

 private:
  IdxOptions options_;
  PixelNormalizer normalize_;
  int64_t count_ = 0, rows_ = 0, cols_ = 0;
  std::vector<uint8_t> images_;  // (count, rows, cols), header stripped
  std::vector<uint8_t> labels_;  // (count)
};

/// The standard layout of `directory`: train-images-idx3-ubyte, train-labels-idx1-ubyte,
/// t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, each with or without ".gz".
/// Throws "[idx] DIR: no train-images-idx3-ubyte[.gz]; expected the four MNIST files".
std::shared_ptr<IdxDataset> load_mnist(const std::string& directory,
                                       bool train,
                                       IdxOptions options = {});

/// Writes IDX files (for tests and for exporting subsets); gzipped when the path ends in .gz.
/// images: count*rows*cols bytes.
void write_idx_images(const std::string& path,
                      const std::vector<uint8_t>& images,
                      int64_t count,
                      int64_t rows,
                      int64_t cols);
void write_idx_labels(const std::string& path, const std::vector<uint8_t>& labels);

}  // namespace lattice::data
