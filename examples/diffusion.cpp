// Trains a DDPM noise-prediction U-Net (examples/models/unet.h): the small one on Fashion-MNIST
// padded to 32x32 (default) or CIFAR-10, the big one on FFHQ-style image folders (Table 11:
// batch 20, lr 1e-4, 3 epochs). Validation is the noise-prediction MSE on a fixed set of
// images, noise and timesteps; --sample N writes a grid of N ancestral samples as a PNG.
#include <cmath>
#include <filesystem>

#include "autograd/autograd.h"
#include "data/cifar.h"
#include "data/file_io.h"
#include "data/idx.h"
#include "data/image_folder.h"
#include "examples/models/unet.h"
#include "examples/trainer.h"
#include "ops/ops.h"
#include "ops/spatial_ops.h"
#include "tensor/random.h"

using namespace lattice;
namespace fs = std::filesystem;

namespace {

/// Pixels mapped to [-1, 1], DDPM's convention.
const data::Normalization kSymmetric1{{0.5f}, {0.5f}};
const data::Normalization kSymmetric3{{0.5f, 0.5f, 0.5f}, {0.5f, 0.5f, 0.5f}};

struct Images {
  std::shared_ptr<const data::Dataset> train, validation;
  int64_t channels, size;
  int pad;  // pixels of -1 (black) added on each side (28 -> 32 for Fashion-MNIST)
};

Images load_images(const std::string& dataset, const std::string& dir, int64_t folder_size) {
  if (dataset == "fashion-mnist") {
    const data::IdxOptions options{.flatten = false, .normalization = kSymmetric1};
    const std::string root = dir.empty() ? data::kFashionMnistDir : dir;
    return {data::load_mnist(root, true, options), data::load_mnist(root, false, options), 1, 32,
            2};
  }
  if (dataset == "cifar10") {
    LATTICE_CHECK(!dir.empty(),
                  "[diffusion] --dataset cifar10 needs --data DIR with CIFAR-10's binary batches "
                  "(data_batch_1.bin .. data_batch_5.bin, test_batch.bin; not in Debian)");
    const data::CifarOptions options{.normalization = kSymmetric3};
    return {data::load_cifar10(dir, true, options), data::load_cifar10(dir, false, options), 3, 32,
            0};
  }
  LATTICE_CHECK(!dir.empty(),
                "[diffusion] --dataset folder needs --data DIR (FFHQ-style: "
                "images in DIR/train and DIR/val, or in class subfolders of them)");
  const data::ImageFolderOptions options{.size = int(folder_size), .normalization = kSymmetric3};
  return {std::make_shared<data::ImageFolderDataset>((fs::path(dir) / "train").string(), options),
          std::make_shared<data::ImageFolderDataset>((fs::path(dir) / "val").string(), options), 3,
          folder_size, 0};
}

/// (N, C, H, W) -> (N, C, H + 2 pad, W + 2 pad), the border at -1.
Tensor pad_images(const Tensor& images, int pad) {
  return pad == 0 ? images : lattice::pad(images, {pad, pad, pad, pad}, -1.0);
}

/// Timesteps uniform in [0, steps): one 32-bit word of `random` per sample.
Tensor random_timesteps(int64_t count, int64_t steps, const RandomStream& random) {
  std::vector<int64_t> t(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i)
    t[size_t(i)] = int64_t((uint64_t(random.word(uint64_t(i))) * uint64_t(steps)) >> 32);
  return from_vector<int64_t>(t, {count});
}

/// DDPM ancestral sampling (Ho et al. 2020, Algorithm 2, σ_t² = β_t): `count` images from
/// pure noise, every timestep from T-1 down to 0, mapped back to [0, 1]. As in the paper's
/// reference code (clip_denoised), each step's mean is the posterior mean of q(x_{t-1} | x_t, x̂_0)
/// with the predicted x̂_0 = (x_t - √(1-ᾱ_t) ε̂) / √ᾱ_t clipped to the data range [-1, 1];
/// unclipped it is Algorithm 2's mean exactly.
Tensor sample_images(models::Unet& model,
                     const nn::NoiseSchedule& schedule,
                     int64_t count,
                     int64_t channels,
                     int64_t size,
                     uint64_t seed,
                     Device device) {
  NoGradGuard no_grad;
  model.eval();
  const RandomStream start{.seed = seed, .subsequence = 0};
  Tensor x = randn({count, channels, size, size}, start, DType::float32, device);
  for (int64_t t = schedule.steps() - 1; t >= 0; --t) {
    const double alpha_bar = schedule.alpha_bar(t);
    const double alpha_bar_before = t > 0 ? schedule.alpha_bar(t - 1) : 1.0;
    const double alpha = alpha_bar / alpha_bar_before;
    const double beta = 1.0 - alpha;
    const Tensor noise = model(x, full({count}, double(t), DType::int64, device));
    const Tensor x0 =
        clamp(scale(sub(x, scale(noise, std::sqrt(1.0 - alpha_bar))), 1.0 / std::sqrt(alpha_bar)),
              -1.0, 1.0);
    x = add(scale(x0, std::sqrt(alpha_bar_before) * beta / (1.0 - alpha_bar)),
            scale(x, std::sqrt(alpha) * (1.0 - alpha_bar_before) / (1.0 - alpha_bar)));
    if (t > 0)
      x = add(x, scale(randn(x.shape(), RandomStream{.seed = seed, .subsequence = uint64_t(t)},
                             DType::float32, device),
                       std::sqrt(beta)));
  }
  return clamp(scale(add(x, full({}, 1.0, DType::float32, device)), 0.5), 0.0, 1.0).to(Device::cpu);
}

/// Images (N, C, S, S) in [0, 1] tiled as a (C, rows S, cols S) grid, rows of ceil(sqrt(N)).
Tensor image_grid(const Tensor& images) {
  const int64_t n = images.shape(0), c = images.shape(1), s = images.shape(2);
  const int64_t cols = int64_t(std::ceil(std::sqrt(double(n)))), rows = (n + cols - 1) / cols;
  Tensor grid = zeros({c, rows * s, cols * s});
  const Tensor in = images.contiguous();
  const float* from = in.data<float>();
  float* to = grid.data<float>();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t y = 0; y < s; ++y)
        std::copy_n(from + ((i * c + ch) * s + y) * s, s,
                    to + (ch * rows * s + (i / cols) * s + y) * cols * s + (i % cols) * s);
  return grid;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "Train a DDPM U-Net: the small one on Fashion-MNIST (padded to 32x32) or CIFAR-10, the big "
      "one on FFHQ-style image folders."};
  examples::TrainerFlags flags{.epochs = 20, .batch = 512, .lr = 1e-3, .eval_batches = 4};
  std::string config_name = "small", dataset;
  int64_t timesteps = 1000, folder_size = 64, sample = 0;
  app.add_option("--config", config_name,
                 "small (32, 64, 64 channels at sides S, S/2, S/4; Table 11: batch 512, lr "
                 "1e-3, 20 epochs) or big (128, 256, 256, 256 channels at S .. S/8; batch 20, lr "
                 "1e-4, 3 epochs); self-attention at S/4 and in the middle")
      ->capture_default_str()
      ->check(CLI::IsMember({"small", "big"}));
  app.add_option("--dataset", dataset,
                 "fashion-mnist or cifar10 (small), folder (big): DIR/train and DIR/val")
      ->check(CLI::IsMember({"fashion-mnist", "cifar10", "folder"}));
  app.add_option("--timesteps", timesteps, "diffusion steps T (linear betas 1e-4 .. 0.02)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(2), int64_t(100000)));
  app.add_option("--size", folder_size, "--dataset folder: image side after resize and crop")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--sample", sample, "write a grid of this many ancestral samples (samples.png)")
      ->check(CLI::Range(int64_t(0), int64_t(1024)));
  examples::add_trainer_flags(app, flags);
  return examples::trainer_main("diffusion", app, argc, argv, [&] {
    const bool big = config_name == "big";
    if (dataset.empty()) dataset = big ? "folder" : "fashion-mnist";
    if (big) {
      if (app.count("--batch") == 0) flags.batch = 20;
      if (app.count("--lr") == 0) flags.lr = 1e-4;
      if (app.count("--epochs") == 0) flags.epochs = 3;
    }
    manual_seed(flags.seed);
    const Images images = load_images(dataset, flags.data, folder_size);
    const models::UnetConfig config{
        .channels = images.channels,
        .base = big ? 128 : 32,
        .multipliers = big ? std::vector<int64_t>{1, 2, 2, 2} : std::vector<int64_t>{1, 2, 2},
        .attention_levels = {2},
        .time_dim = big ? 256 : 128,
        .groups = 8,
        .heads = big ? 4 : 1};
    LATTICE_CHECK(images.size % config.side_divisor() == 0, "[diffusion] the ", config_name,
                  " U-Net halves the image ", config.multipliers.size() - 1,
                  " times: the side must be divisible by ", config.side_divisor(), ", got ",
                  images.size);
    models::Unet model(config);
    const nn::NoiseSchedule schedule(timesteps);
    const int pad = images.pad;
    data::DataLoader train(images.train, {.batch_size = flags.batch, .seed = flags.seed});
    data::DataLoader validation(
        images.validation, {.batch_size = std::min<int64_t>(flags.batch, 64), .shuffle = false});

    // A batch's noise and timesteps come from the default random stream (in the checkpoint).
    const auto loss_of = [&](const Tensor& x0, const RandomStream& noise_random,
                             const RandomStream& time_random) {
      const Tensor noise = randn(x0.shape(), noise_random, DType::float32, x0.device());
      const Tensor t = random_timesteps(x0.shape(0), schedule.steps(), time_random).to(x0.device());
      return nn::noise_prediction_loss(model(schedule.add_noise(x0, noise, t), t), noise);
    };
    examples::TrainingJob job{
        .name = "diffusion",
        .model = &model,
        .train = &train,
        .loss =
            [&](const data::Batch& b) {
              const RandomStream noise_random = next_random_stream();
              return loss_of(pad_images(b.input, pad), noise_random, next_random_stream());
            },
        .evaluate =
            [&] {
              // The same images, noise and timesteps at every evaluation: batch i draws from
              // subsequences 2i and 2i + 1 of a stream of its own.
              NoGradGuard no_grad;
              double total = 0.0;
              int64_t count = 0, index = 0;
              examples::for_each_validation_batch(
                  validation, flags.eval_batches, examples::trainer_device(flags),
                  [&](const data::Batch& batch) {
                    const RandomStream noise{.seed = 0x5eed, .subsequence = uint64_t(2 * index)};
                    const RandomStream time{.seed = 0x5eed, .subsequence = uint64_t(2 * index + 1)};
                    const int64_t n = batch.size();
                    total += loss_of(pad_images(batch.input, pad), noise, time).item<double>() *
                             double(n);
                    count += n;
                    ++index;
                  });
              return examples::Evaluation{.loss = total / double(count)};
            },
        .config = {{"config", config_name},
                   {"dataset", dataset},
                   {"image_size", images.size},
                   {"channels", images.channels},
                   {"base", config.base},
                   {"multipliers", config.multipliers},
                   {"timesteps", timesteps},
                   {"data", flags.data}},
        .unit = "images"};
    const int status = examples::run_training(flags, job);
    if (status == 0 && sample > 0) {
      const fs::path out = flags.out.empty() ? "runs/diffusion" : flags.out;
      const Tensor samples = sample_images(model, schedule, sample, images.channels, images.size,
                                           flags.seed, examples::trainer_device(flags));
      data::write_png((out / "samples.png").string(), image_grid(samples));
      std::fprintf(stderr, "diffusion  %lld samples -> %s\n", (long long)sample,
                   (out / "samples.png").string().c_str());
    }
    return status;
  });
}
