// The gaussian regression generator.
#include "data/synthetic.h"

#include <cmath>

namespace lattice::data {

GaussianRegressionDataset::GaussianRegressionDataset(GaussianRegressionOptions options)
    : options_(options) {
  LATTICE_CHECK(options_.rows > 0 && options_.features > 0, "[regression] ", options_.rows, "x",
                options_.features, " problem, expected positive sizes");
  LATTICE_CHECK(options_.validation_fraction >= 0 && options_.validation_fraction < 1,
                "[regression] validation fraction ", options_.validation_fraction,
                ", expected 0 <= fraction < 1");
  true_weights_ = randn({options_.features}, RandomStream{.seed = options_.seed});
}

Example GaussianRegressionDataset::get(int64_t index) const {
  check_index("regression", index, options_.rows);
  const RandomStream row_stream{.seed = options_.seed, .subsequence = uint64_t(index) + 1};
  Tensor x = randn({options_.features}, row_stream);
  const float* xs = x.data<float>();
  const float* ws = true_weights_.data<float>();
  double y = 0;
  for (int64_t j = 0; j < options_.features; ++j) y += double(xs[j]) * double(ws[j]);
  return {x, from_vector<float>({float(y)})};
}

TrainValidation make_gaussian_regression(GaussianRegressionOptions options) {
  auto all = std::make_shared<GaussianRegressionDataset>(options);
  const auto validation_rows =
      int64_t(std::llround(double(options.rows) * options.validation_fraction));
  const int64_t train_rows = options.rows - validation_rows;
  return {Subset::range(all, 0, train_rows), Subset::range(all, train_rows, options.rows)};
}

}  // namespace lattice::data
