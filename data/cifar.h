// CIFAR-10 binary batches (data_batch_1..5.bin, test_batch.bin): records of 1 label byte and
// 3072 planar RGB bytes. Inputs float32 (3, 32, 32) with per-channel normalisation; targets int64.
#pragma once

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "data/normalize.h"

namespace lattice::data {

/// Training-set channel statistics (of byte/255), for Normalization.
inline const Normalization kCifar10Normalization{{0.4914f, 0.4822f, 0.4465f},
                                                 {0.2470f, 0.2435f, 0.2616f}};

struct CifarOptions {
  Normalization normalization = {};
};

class Cifar10Dataset final : public Dataset {
 public:
  static constexpr int64_t kRecordBytes = 1 + 3 * 32 * 32;

  /// The records of `paths`, in order (gzip or raw). Throws lattice::Error naming the file
  /// when it is missing, not a whole number of records, or holds a label above 9.
  explicit Cifar10Dataset(const std::vector<std::string>& paths, CifarOptions options = {});

  int64_t size() const override {
    return int64_t(labels_.size());
  }
  Example get(int64_t index) const override;
  /// get()'s examples, normalised straight into the batch.
  Batch get_batch(std::vector<int64_t> indices, int threads) const override;
  uint8_t label(int64_t index) const {
    return labels_[size_t(index)];
  }

 private:
  CifarOptions options_;
  PixelNormalizer normalize_;
  std::vector<uint8_t> labels_;
  std::vector<uint8_t> pixels_;  // (count, 3, 32, 32)
};

/// data_batch_1.bin .. data_batch_5.bin (train) or test_batch.bin from `directory`.
std::shared_ptr<Cifar10Dataset> load_cifar10(const std::string& directory,
                                             bool train,
                                             CifarOptions options = {});

}  // namespace lattice::data
