// regression: the FP4 appendix's synthetic linear regression y = X·w_true (X, w_true ~ N(0, 1),
// 100000 x 1024 by default) fitted by a bias-free Linear(features, 1) under any precision
// stack. Defaults follow Table 11 (batch 4096, lr 1e-2, 20 epochs); validation MSE is the
// result (StableSPAM drives it to about zero).
#include "data/synthetic.h"
#include "examples/trainer.h"
#include "nn/layers.h"
#include "ops/ops.h"
#include "tensor/random.h"

using namespace lattice;

int main(int argc, char** argv) {
  CLI::App app{"Fit the synthetic Gaussian linear regression of the FP4 appendix."};
  examples::TrainerFlags flags{.epochs = 20, .batch = 4096, .lr = 1e-2};
  data::GaussianRegressionOptions sizes;
  int loader_threads = 2;
  app.add_option("--rows", sizes.rows, "examples (train + validation)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--features", sizes.features, "features per example")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--loader-threads", loader_threads, "threads generating rows")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  examples::add_trainer_flags(app, flags);
  return examples::trainer_main("regression", app, argc, argv, [&] {
    manual_seed(flags.seed);
    sizes.seed = flags.seed;
    const data::TrainValidation split = data::make_gaussian_regression(sizes);
    const auto validation = data::materialize(*split.validation, loader_threads);
    data::DataLoader train(
        split.train, {.batch_size = flags.batch, .seed = flags.seed, .threads = loader_threads});
    nn::Linear model(sizes.features, 1, false);
    examples::TrainingJob job{
        .name = "regression",
        .model = &model,
        .train = &train,
        .loss = [&](const data::Batch& b) { return mse(model(b.input), b.target); },
        .evaluate =
            [&] {
              return examples::Evaluation{
                  mse(model(validation->inputs()), validation->targets()).item<double>()};
            },
        .config = {{"rows", sizes.rows}, {"features", sizes.features}}};
    return examples::run_training(flags, job);
  });
}
