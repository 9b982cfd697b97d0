// mnist: trains an MLP (784-256-256-10) or a small CNN on MNIST-format data (Fashion-MNIST from
// the Debian package by default) under any precision stack, and reports test accuracy.
// Defaults follow the FP4 appendix's Table 11 (batch 512, Adam, lr 1e-3) with 5 epochs.
#include "data/idx.h"
#include "examples/trainer.h"
#include "nn/layers.h"
#include "ops/ops.h"
#include "tensor/random.h"

using namespace lattice;

namespace {

std::shared_ptr<nn::Module> make_model(const std::string& kind, int64_t hidden) {
  using nn::Activation;
  const auto relu = [] { return std::make_shared<Activation>(Activation::Kind::relu); };
  if (kind == "mlp")
    return std::make_shared<nn::Sequential>(std::vector<std::shared_ptr<nn::Module>>{
        std::make_shared<nn::Flatten>(), std::make_shared<nn::Linear>(784, hidden), relu(),
        std::make_shared<nn::Linear>(hidden, hidden), relu(),
        std::make_shared<nn::Linear>(hidden, 10)});
  // (1, 28, 28) -> conv 32 -> pool -> conv 64 -> pool -> (64, 7, 7) -> 128 -> 10, batch norm
  // after each convolution
  return std::make_shared<nn::Sequential>(std::vector<std::shared_ptr<nn::Module>>{
      std::make_shared<nn::Conv2d>(1, 32, 3, 1, 1), std::make_shared<nn::BatchNorm2d>(32), relu(),
      std::make_shared<nn::MaxPool2d>(2), std::make_shared<nn::Conv2d>(32, 64, 3, 1, 1),
      std::make_shared<nn::BatchNorm2d>(64), relu(), std::make_shared<nn::MaxPool2d>(2),
      std::make_shared<nn::Flatten>(), std::make_shared<nn::Linear>(64 * 7 * 7, 128), relu(),
      std::make_shared<nn::Linear>(128, 10)});
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Train an MLP or a small CNN on MNIST-format images (IDX files)."};
  examples::TrainerFlags flags{
      .epochs = 5, .batch = 512, .lr = 1e-3, .schedule = "cosine", .data = data::kFashionMnistDir};
  std::string model_kind = "mlp";
  int64_t hidden = 512;
  app.add_option("--model", model_kind, "mlp or cnn")
      ->capture_default_str()
      ->check(CLI::IsMember({"mlp", "cnn"}));
  app.add_option("--hidden", hidden, "width of the MLP's two hidden layers")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  examples::add_trainer_flags(app, flags);
  return examples::trainer_main("mnist", app, argc, argv, [&] {
    manual_seed(flags.seed);
    const data::IdxOptions options{
        .flatten = false, .normalization = {{data::kFashionMnistMean}, {data::kFashionMnistStd}}};
    const auto train_set = data::load_mnist(flags.data, true, options);
    const auto test_set = data::load_mnist(flags.data, false, options);
    data::DataLoader train(train_set, {.batch_size = flags.batch, .seed = flags.seed});
    data::DataLoader test(test_set, {.batch_size = 1000, .shuffle = false});
    const std::shared_ptr<nn::Module> model = make_model(model_kind, hidden);
    examples::TrainingJob job{
        .name = "mnist",
        .model = model.get(),
        .train = &train,
        .loss = [&](const data::Batch& b) { return cross_entropy((*model)(b.input), b.target); },
        .evaluate = [&] { return examples::evaluate_classifier(*model, test, flags.eval_batches); },
        .config = {{"model", model_kind}, {"hidden", hidden}, {"data", flags.data}},
        .unit = "images"};
    return examples::run_training(flags, job);
  });
}
