// Trains an image classifier — the peer benchmark's CNN or ResNet-20 (examples/models/cnn.h) —
// on CIFAR-10 binary batches with random crops and flips (Table 11: batch 512, Adam, lr 1e-3,
// 20 epochs), or on an ImageNet-style folder (the appendix's ImageNet-100 row).
#include "examples/image_data.h"
#include "examples/models/cnn.h"
#include "examples/trainer.h"
#include "ops/ops.h"
#include "tensor/random.h"

using namespace lattice;

int main(int argc, char** argv) {
  CLI::App app{"Train a CNN or ResNet-20 on CIFAR-10 or an ImageNet-style image folder."};
  examples::TrainerFlags flags{.epochs = 20, .batch = 512, .lr = 1e-3};
  std::string model_kind = "cnn", dataset = "cifar10";
  int64_t folder_size = 64;
  app.add_option("--model", model_kind, "cnn (the peer benchmark's) or resnet20")
      ->capture_default_str()
      ->check(CLI::IsMember({"cnn", "resnet20"}));
  app.add_option("--dataset", dataset, "cifar10 or folder (DIR/train/<class>, DIR/val/<class>)")
      ->capture_default_str()
      ->check(CLI::IsMember({"cifar10", "folder"}));
  app.add_option("--size", folder_size, "--dataset folder: image side after resize and crop")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  examples::add_trainer_flags(app, flags);
  return examples::trainer_main("cifar", app, argc, argv, [&] {
    manual_seed(flags.seed);
    const examples::ImageSplits splits =
        examples::load_image_splits("cifar", dataset, flags.data, folder_size);
    LATTICE_CHECK(model_kind != "cnn" || splits.size % 8 == 0,
                  "[cifar] --model cnn pools three "
                  "times: the image side must be a multiple of 8, got ",
                  splits.size);
    LATTICE_CHECK(model_kind != "resnet20" || splits.size % 4 == 0,
                  "[cifar] --model resnet20 "
                  "strides twice: the image side must be a multiple of 4, got ",
                  splits.size);
    data::DataLoader train(splits.train,
                           examples::training_loader_options(splits, flags.batch, flags.seed));
    data::DataLoader test(splits.test, {.batch_size = 500, .shuffle = false});
    const std::shared_ptr<nn::Module> model =
        model_kind == "cnn" ? std::shared_ptr<nn::Module>(
                                  models::peer_cnn(splits.channels, splits.size, splits.classes))
                            : std::make_shared<models::ResNet20>(splits.channels, splits.classes);
    examples::TrainingJob job{
        .name = "cifar",
        .model = model.get(),
        .train = &train,
        .loss = [&](const data::Batch& b) { return cross_entropy((*model)(b.input), b.target); },
        .evaluate = [&] { return examples::evaluate_classifier(*model, test, flags.eval_batches); },
        .config = {{"model", model_kind},
                   {"dataset", dataset},
                   {"image_size", splits.size},
                   {"classes", splits.classes},
                   {"data", flags.data}},
        .unit = "images"};
    return examples::run_training(flags, job);
  });
}
