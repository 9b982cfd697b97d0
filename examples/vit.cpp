// Trains the Tiny-ViT of the forward-stability paper (pre-LN, width 96 or 128) on
// Fashion-MNIST (default, from Debian's dataset-fashion-mnist), CIFAR-10 binary batches, or an
// ImageNet-style image folder. The attention blocks keep their probes (examples/models/vit.h),
// so stability diagnostics can attach to them.
#include "examples/models/vit.h"

#include "examples/image_data.h"
#include "examples/trainer.h"
#include "ops/ops.h"
#include "tensor/random.h"

using namespace lattice;

int main(int argc, char** argv) {
  CLI::App app{
      "Train the Tiny-ViT (pre-LN) on Fashion-MNIST, CIFAR-10 or an ImageNet-style folder."};
  examples::TrainerFlags flags{.epochs = 10, .batch = 128, .lr = 1e-3, .schedule = "cosine"};
  std::string dataset = "fashion-mnist";
  models::VitConfig config{.patch = 4, .dim = 96, .layers = 6, .heads = 3, .hidden = 0};
  int64_t folder_size = 64;
  app.add_option("--dataset", dataset, "fashion-mnist, cifar10 or folder (DIR/train, DIR/val)")
      ->capture_default_str()
      ->check(CLI::IsMember({"fashion-mnist", "cifar10", "folder"}));
  app.add_option("--dim", config.dim, "model width (the paper's 96 or 128)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--depth", config.layers, "transformer blocks")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--heads", config.heads, "attention heads (head width dim / heads)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--patch", config.patch, "patch side in pixels")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--hidden", config.hidden, "MLP width (default 4 x dim)")
      ->check(CLI::PositiveNumber);
  app.add_option("--size", folder_size, "--dataset folder: image side after resize and crop")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  examples::add_trainer_flags(app, flags);
  return examples::trainer_main("vit", app, argc, argv, [&] {
    manual_seed(flags.seed);
    const examples::ImageSplits splits =
        examples::load_image_splits("vit", dataset, flags.data, folder_size);
    config.channels = splits.channels;
    config.image_size = splits.size;
    config.classes = splits.classes;
    if (config.hidden == 0) config.hidden = 4 * config.dim;
    LATTICE_CHECK(config.image_size % config.patch == 0, "[vit] --patch ", config.patch,
                  " does not divide the ", config.image_size, "-pixel images");
    LATTICE_CHECK(config.dim % config.heads == 0, "[vit] --dim ", config.dim,
                  " is not a multiple of --heads ", config.heads);
    data::DataLoader train(splits.train,
                           examples::training_loader_options(splits, flags.batch, flags.seed));
    data::DataLoader test(splits.test, {.batch_size = 500, .shuffle = false});
    models::Vit model(config);
    examples::TrainingJob job{
        .name = "vit",
        .model = &model,
        .train = &train,
        .loss = [&](const data::Batch& b) { return cross_entropy(model(b.input), b.target); },
        .evaluate = [&] { return examples::evaluate_classifier(model, test, flags.eval_batches); },
        .config = {{"dataset", dataset},
                   {"dim", config.dim},
                   {"depth", config.layers},
                   {"heads", config.heads},
                   {"patch", config.patch},
                   {"hidden", config.hidden},
                   {"image_size", config.image_size},
                   {"classes", config.classes},
                   {"data", flags.data}},
        .unit = "images"};
    return examples::run_training(flags, job);
  });
}
