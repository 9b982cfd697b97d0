// The synthetic gaussian regression of the FP4 appendix: y = X·w_true with X_ij, w_true_j
// ~ N(0, 1) iid. Rows are drawn on demand from their own Philox subsequence, so the default
// 100000 x 1024 problem needs no memory and any row is reproducible from (seed, index).
#pragma once

#include <cstdint>
#include <memory>

#include "data/dataset.h"

namespace lattice::data {

struct GaussianRegressionOptions {
  int64_t rows = 100000;
  int64_t features = 1024;
  uint64_t seed = 0;
  /// The last validation_fraction of the rows form the validation split.
  double validation_fraction = 0.1;
};

/// Example i: input x_i (features) float32, target (1) float32 = x_i · w_true, summed in double
/// and rounded once.
class GaussianRegressionDataset final : public Dataset {
 public:
  explicit GaussianRegressionDataset(GaussianRegressionOptions options = {});
  int64_t size() const override {
    return options_.rows;
  }
  Example get(int64_t index) const override;
  /// w_true: (features) float32 (Philox subsequence 0 of the seed; row i uses subsequence i+1).
  const Tensor& true_weights() const {
    return true_weights_;
  }
  const GaussianRegressionOptions& options() const {
    return options_;
  }

 private:
  GaussianRegressionOptions options_;
  Tensor true_weights_;
};

struct TrainValidation {
  std::shared_ptr<const Dataset> train;
  std::shared_ptr<const Dataset> validation;
};

/// Rows [0, n - n_val) for training, the rest for validation; n_val = round(n * fraction).
TrainValidation make_gaussian_regression(GaussianRegressionOptions options = {});

}  // namespace lattice::data
