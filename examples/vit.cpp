// Trains the Tiny-ViT of the forward-stability paper (pre-LN, width 96 or 128) on
// Fashion-MNIST (default, from Debian's dataset-fashion-mnist), CIFAR-10 binary batches, or an
// ImageNet-style image folder. The attention blocks keep their probes (examples/models/vit.h),
// so stability diagnostics can attach to them.
#include "examples/models/vit.h"

#include <filesystem>

#include "data/augment.h"
#include "data/cifar.h"
#include "data/idx.h"
#include "data/image_folder.h"
#include "examples/trainer.h"
#include "tensor/ops.h"
#include "tensor/random.h"

using namespace lattice;
namespace fs = std::filesystem;

namespace {

struct Splits {
  std::shared_ptr<const data::Dataset> train, test;
  int64_t channels, size, classes;
};

/// The dataset's training and test splits and their image geometry.
Splits load_splits(const std::string& dataset, const std::string& dir, int64_t folder_size) {
  if (dataset == "fashion-mnist") {
    const data::IdxOptions options{
        .flatten = false, .normalization = {{data::kFashionMnistMean}, {data::kFashionMnistStd}}};
    const std::string root = dir.empty() ? data::kFashionMnistDir : dir;
    return {data::load_mnist(root, true, options), data::load_mnist(root, false, options), 1, 28,
            10};
  }
  if (dataset == "cifar10") {
    LATTICE_CHECK(!dir.empty(),
                  "[vit] --dataset cifar10 needs --data DIR with CIFAR-10's binary batches "
                  "(data_batch_1.bin .. data_batch_5.bin, test_batch.bin; CIFAR-10 is not in "
                  "Debian)");
    const data::CifarOptions options{.normalization = data::kCifar10Normalization};
    return {data::load_cifar10(dir, true, options), data::load_cifar10(dir, false, options), 3, 32,
            10};
  }
  // An ImageNet-style folder: DIR/train/<class>/... and DIR/val/<class>/...
  LATTICE_CHECK(!dir.empty(), "[vit] --dataset folder needs --data DIR with train/ and val/");
  const data::ImageFolderOptions options{.size = int(folder_size),
                                         .normalization = data::kCifar10Normalization};
  auto train =
      std::make_shared<data::ImageFolderDataset>((fs::path(dir) / "train").string(), options);
  auto test = std::make_shared<data::ImageFolderDataset>((fs::path(dir) / "val").string(), options);
  LATTICE_CHECK(train->class_names() == test->class_names(), "[vit] ", dir,
                ": train/ and val/ hold different classes (", train->class_names().size(), " and ",
                test->class_names().size(), ")");
  const int64_t classes = int64_t(train->class_names().size());
  return {train, test, 3, folder_size, classes};
}

}  // namespace

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
    const Splits splits = load_splits(dataset, flags.data, folder_size);
    config.channels = splits.channels;
    config.image_size = splits.size;
    config.classes = splits.classes;
    if (config.hidden == 0) config.hidden = 4 * config.dim;
    LATTICE_CHECK(config.image_size % config.patch == 0, "[vit] --patch ", config.patch,
                  " does not divide the ", config.image_size, "-pixel images");
    LATTICE_CHECK(config.dim % config.heads == 0, "[vit] --dim ", config.dim,
                  " is not a multiple of --heads ", config.heads);
    data::LoaderOptions train_options{.batch_size = flags.batch, .seed = flags.seed};
    if (dataset != "fashion-mnist")  // CIFAR-style augmentation: random crop and flip
      train_options.transform = data::RandomCropFlip({.padding = 4, .seed = flags.seed});
    data::DataLoader train(splits.train, train_options);
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
