// The trainers as a user runs them, on tiny generated data: a few steps of mnist (MLP and CNN)
// and regression write their metrics and summary, a resumed run continues bit-identically to
// an uninterrupted one, and bad flags or data give one-line errors.
#include <doctest/doctest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <tuple>
#include <vector>

#include "data/dataset.h"
#include "data/file_io.h"
#include "data/idx.h"
#include "examples/trainer.h"
#include "nn/layers.h"
#include "process_support.h"
#include "tensor/ops.h"
#include "tensor/random.h"

namespace {

namespace fs = std::filesystem;
using lattice::test::read_file;
using lattice::test::run_program;
using lattice::test::scratch_dir;

std::string trainer(const std::string& name) {
  return std::string(LATTICE_BIN_DIR) + "/" + name;
}

/// A tiny MNIST-format directory: 64 training and 32 test images of noise, labels i % 10.
const fs::path& tiny_mnist() {
  static const fs::path dir = [] {
    const fs::path d = scratch_dir() / "mnist";
    fs::create_directories(d);
    for (const auto& [prefix, count] : {std::pair{"train", 64}, std::pair{"t10k", 32}}) {
      std::vector<uint8_t> pixels(size_t(count) * 28 * 28), labels;
      for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = uint8_t((i * 2654435761u) >> 24);
      for (int i = 0; i < count; ++i) labels.push_back(uint8_t(i % 10));
      lattice::data::write_idx_images((d / (std::string(prefix) + "-images-idx3-ubyte")).string(),
                                      pixels, count, 28, 28);
      lattice::data::write_idx_labels((d / (std::string(prefix) + "-labels-idx1-ubyte")).string(),
                                      labels);
    }
    return d;
  }();
  return dir;
}

std::vector<nlohmann::json> metrics(const fs::path& run) {
  std::vector<nlohmann::json> lines;
  std::istringstream in(read_file(run / "metrics.jsonl"));
  for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

nlohmann::json summary(const fs::path& run) {
  return nlohmann::json::parse(read_file(run / "summary.json"));
}

std::string tiny_data_flags() {
  return "--hidden 16 --batch 16 --data '" + tiny_mnist().string() + "' ";
}

int64_t line_count(const std::string& text) {
  return std::count(text.begin(), text.end(), '\n');
}

}  // namespace

TEST_CASE("mnist trains an MLP and a CNN for a few steps and reports them") {
  for (const std::string model : {"mlp", "cnn"}) {
    const fs::path out = scratch_dir() / ("mnist-" + model);
    const auto result = run_program(trainer("mnist"),
                                    "--model " + model +
                                        " --hidden 16 --steps 4 --batch 16 --log-every 2 --data '" +
                                        tiny_mnist().string() + "' --out '" + out.string() + "'");
    INFO(result.err);
    REQUIRE(result.status == 0);
    const nlohmann::json s = summary(out);
    CHECK(s["status"] == "finished");
    CHECK(s["steps"] == 4);
    CHECK(s["config"]["model"] == model);
    CHECK(s["val_accuracy"].get<double>() >= 0.0);
    CHECK(s["val_accuracy"].get<double>() <= 1.0);
    const std::vector<nlohmann::json> lines = metrics(out);
    REQUIRE(lines.size() == 5);  // four steps, then the final evaluation
    CHECK(lines[3]["step"] == 4);
    CHECK(lines[3].contains("lr"));
    CHECK(lines[4].contains("val_loss"));
    const nlohmann::json checkpoint = nlohmann::json::parse(read_file(out / "checkpoint.json"));
    CHECK(fs::exists(out / checkpoint["tensors"].get<std::string>()));
    CHECK(result.err.find("mnist  epoch") != std::string::npos);  // the progress line
  }
}

TEST_CASE("regression with StableSPAM runs and records its validation loss and stack") {
  const fs::path out = scratch_dir() / "regression";
  const auto result =
      run_program(trainer("regression"),
                  "--rows 256 --features 8 --batch 32 --steps 5 --optimizer stablespam "
                  "--stack gemm=mxfp8 --out '" +
                      out.string() + "'");
  INFO(result.err);
  REQUIRE(result.status == 0);
  const nlohmann::json s = summary(out);
  CHECK(s["optimizer"] == "stablespam");
  CHECK(s["stack"] == "gemm=mxfp8");
  CHECK(s["val_loss"].is_number());
  CHECK(s["complexity_points"] == 0.5);  // StableSPAM's half point

  // A per-module override: the regression model is a single Linear, the root module "".
  const fs::path kept = scratch_dir() / "regression-kept";
  const auto overridden =
      run_program(trainer("regression"),
                  "--rows 256 --features 8 --batch 32 --steps 2 --stack gemm=mxfp8 "
                  "--override ':gemm=bf16' --out '" +
                      kept.string() + "'");
  INFO(overridden.err);
  REQUIRE(overridden.status == 0);
  CHECK(summary(kept)["overrides"] == nlohmann::json::array({":gemm=bf16"}));
}

namespace {

/// The bytes of the run's checkpoint tensors (its one .safetensors file).
std::string checkpoint_tensors(const fs::path& run) {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(run))
    if (entry.path().extension() == ".safetensors") files.push_back(entry.path());
  REQUIRE(files.size() == 1);
  return read_file(files[0]);
}

}  // namespace

TEST_CASE("a resumed run continues bit for bit, wherever the stack draws random bits") {
  // Each stack draws from the default random stream somewhere else: weights written back with
  // SR, SR inside the backward GEMMs, Hadamard signs, optimizer state, scale rounding, and
  // Λa/Λg. The first part ends with an evaluation (whose forward quantizers draw streams too)
  // before its checkpoint; the uninterrupted run evaluates only at the epoch end (step 4).
  const char* stacks[] = {
      "w=bf16:sr",
      "gemm=mxfp4,gemm.bwd=mxfp4:sr",
      "gemm=mxfp4,gemm.hadamard=all",
      "opt=bf16:sr",
      "gemm=e2m1:b16:scale=e4m3:rule=encode:scale_round=sr",
      "a=bf16:sr,g=bf16:sr",
  };
  for (const std::string stack : stacks) {
    CAPTURE(stack);
    const std::string common = std::string("--hidden 16 --batch 16 --schedule constant --seed 7 ") +
                               "--stack '" + stack + "' --data '" + tiny_mnist().string() + "' ";
    const fs::path whole = scratch_dir() / "whole", parts = scratch_dir() / "parts";
    fs::remove_all(whole);
    fs::remove_all(parts);
    REQUIRE(
        run_program(trainer("mnist"), common + "--steps 6 --out '" + whole.string() + "'").status ==
        0);
    REQUIRE(
        run_program(trainer("mnist"), common + "--steps 3 --out '" + parts.string() + "'").status ==
        0);
    const auto resumed =
        run_program(trainer("mnist"), common + "--steps 6 --out '" + parts.string() +
                                          "' --resume '" + (parts / "checkpoint").string() + "'");
    INFO(resumed.err);
    REQUIRE(resumed.status == 0);
    std::vector<double> uninterrupted, continued;
    for (const auto& line : metrics(whole))
      if (line.contains("loss")) uninterrupted.push_back(line["loss"]);
    for (const auto& line : metrics(parts))
      if (line.contains("loss")) continued.push_back(line["loss"]);
    CHECK(continued == uninterrupted);
    CHECK(summary(parts)["val_loss"] == summary(whole)["val_loss"]);
    CHECK(checkpoint_tensors(parts) == checkpoint_tensors(whole));
  }
}

TEST_CASE("--accumulate N: N micro-batches make one optimizer step of their mean gradient") {
  // One SGD step on 2 micro-batches of 8 against one step on their batch of 16 (the same 16
  // images: an epoch's order does not depend on the batch size): the same update up to fp32
  // summation order, so the same validation loss to ~1e-6; a missing 1/N would double it.
  const std::string common =
      "--hidden 16 --optimizer sgd --lr 0.5 --schedule constant --steps 1 "
      "--data '" +
      tiny_mnist().string() + "' ";
  const fs::path accumulated = scratch_dir() / "accumulated", whole = scratch_dir() / "batch16";
  const auto a = run_program(
      trainer("mnist"), common + "--batch 8 --accumulate 2 --out '" + accumulated.string() + "'");
  INFO(a.err);
  REQUIRE(a.status == 0);
  REQUIRE(
      run_program(trainer("mnist"), common + "--batch 16 --out '" + whole.string() + "'").status ==
      0);
  const double loss_a = summary(accumulated)["val_loss"], loss_w = summary(whole)["val_loss"];
  CHECK(loss_a == doctest::Approx(loss_w).epsilon(1e-5));
  CHECK(metrics(accumulated)[0]["loss"].get<double>() ==
        doctest::Approx(metrics(whole)[0]["loss"].get<double>()).epsilon(1e-6));
  const nlohmann::json s = summary(accumulated);
  CHECK(s["accumulate"] == 2);
  CHECK(s["epochs"] == 0.25);  // 8 micro-batches of 8 per epoch: 4 steps
  CHECK(s["throughput_unit"] == "images");
  CHECK(s["images_per_second"].get<double>() > 0);
  CHECK(a.err.find("images/s") != std::string::npos);

  // Resuming inside an accumulated run is bit-identical too.
  const std::string sr =
      "--hidden 16 --batch 8 --accumulate 2 --schedule constant --stack "
      "'gemm=mxfp4,gemm.bwd=mxfp4:sr' --data '" +
      tiny_mnist().string() + "' ";
  const fs::path straight = scratch_dir() / "acc-straight", split = scratch_dir() / "acc-split";
  REQUIRE(
      run_program(trainer("mnist"), sr + "--steps 6 --out '" + straight.string() + "'").status ==
      0);
  REQUIRE(run_program(trainer("mnist"), sr + "--steps 3 --out '" + split.string() + "'").status ==
          0);
  REQUIRE(run_program(trainer("mnist"), sr + "--steps 6 --out '" + split.string() + "' --resume '" +
                                            (split / "checkpoint").string() + "'")
              .status == 0);
  CHECK(checkpoint_tensors(split) == checkpoint_tensors(straight));
}

TEST_CASE("--eval-every N evaluates every N steps instead of at epoch ends") {
  const fs::path out = scratch_dir() / "eval-every";
  const auto result = run_program(trainer("mnist"),
                                  "--hidden 16 --batch 16 --steps 6 "
                                  "--eval-every 4 --data '" +
                                      tiny_mnist().string() + "' --out '" + out.string() + "'");
  INFO(result.err);
  REQUIRE(result.status == 0);
  std::vector<int64_t> evaluated;
  for (const auto& line : metrics(out))
    if (line.contains("val_loss")) evaluated.push_back(line["step"]);
  CHECK(evaluated == std::vector<int64_t>{4, 6});  // not at the epoch end (step 4) twice
}

TEST_CASE("evaluate_classifier reads the first N batches of an epoch, the same ones each time") {
  using namespace lattice;
  std::vector<float> inputs(12 * 3);
  for (size_t i = 0; i < inputs.size(); ++i) inputs[i] = float(i % 7) - 3.0f;
  std::vector<int64_t> labels(12);
  for (size_t i = 0; i < labels.size(); ++i) labels[i] = int64_t(i % 2);
  const auto dataset = std::make_shared<data::TensorDataset>(from_vector(inputs, {12, 3}),
                                                             from_vector<int64_t>(labels, {12}));
  data::DataLoader loader(dataset, {.batch_size = 4, .shuffle = false});
  manual_seed(3);
  nn::Linear model(3, 2);
  const Tensor logits =
      model(from_vector(std::vector<float>(inputs.begin(), inputs.begin() + 12), {4, 3}));
  const double first_batch =
      cross_entropy(logits, from_vector<int64_t>({0, 1, 0, 1}, {4})).item<double>();
  const examples::Evaluation one = examples::evaluate_classifier(model, loader, 1);
  CHECK(one.loss == doctest::Approx(first_batch).epsilon(1e-6));
  CHECK(examples::evaluate_classifier(model, loader, 1).loss == one.loss);  // again batch 0
  const examples::Evaluation all = examples::evaluate_classifier(model, loader);
  CHECK(all.loss != one.loss);
  CHECK(examples::evaluate_classifier(model, loader, 5).loss == all.loss);  // at most an epoch
}

namespace {

/// A tiny WikiText-format folder: wiki.train.raw and wiki.valid.raw of short repetitive
/// sentences, which a small model learns within a few steps.
const fs::path& tiny_wikitext() {
  static const fs::path dir = [] {
    const fs::path d = scratch_dir() / "wikitext";
    fs::create_directories(d);
    const char* subjects[] = {"the cat", "a dog", "the bird", "my fish"};
    const char* verbs[] = {"sat on", "looked at", "ran to", "slept by"};
    const char* objects[] = {"the mat.", "a tree.", "the door.", "my bed."};
    for (const auto& [name, lines] : {std::pair{"wiki.train.raw", 600}, {"wiki.valid.raw", 60}}) {
      std::ofstream out(d / name);
      for (int i = 0; i < lines; ++i)
        out << subjects[i % 4] << " " << verbs[(i / 4) % 4] << " " << objects[(i / 16) % 4] << "\n";
    }
    return d;
  }();
  return dir;
}

}  // namespace

TEST_CASE("llama trains on a WikiText folder: loss falls, resume is exact, BPE is cached") {
  const std::string common =
      "--dim 32 --layers 1 --heads 2 --hidden 64 --vocab 300 --seq 16 --batch 8 --lr 3e-3 "
      "--schedule constant --log-every 1 --data '" +
      tiny_wikitext().string() + "' ";
  const fs::path whole = scratch_dir() / "llama-whole", parts = scratch_dir() / "llama-parts";
  const auto result =
      run_program(trainer("llama"), common + "--steps 8 --sample 8 --out '" + whole.string() + "'");
  INFO(result.err);
  REQUIRE(result.status == 0);
  CHECK(fs::exists(tiny_wikitext() / "wiki.train.raw.bpe300.model"));  // trained once, cached
  const nlohmann::json s = summary(whole);
  CHECK(s["status"] == "finished");
  CHECK(s["throughput_unit"] == "tokens");
  CHECK(s["tokens_per_second"].get<double>() > 0);
  CHECK(s["val_perplexity"].get<double>() ==
        doctest::Approx(std::exp(s["val_loss"].get<double>())));
  CHECK(s["config"]["tokens_per_step"] == 8 * 16);
  CHECK(s["config"]["unigram_entropy"].get<double>() > 0);
  std::vector<double> losses;
  for (const auto& line : metrics(whole))
    if (line.contains("loss")) losses.push_back(line["loss"]);
  REQUIRE(losses.size() == 8);
  CHECK(losses.back() < losses.front() - 0.5);
  CHECK(read_file(whole / "sample.txt").size() > 0);
  CHECK(s["parameters"] == 2 * 300 * 32 + (2 * 32 + 4 * 32 * 32 + 3 * 32 * 64) + 32);

  REQUIRE(
      run_program(trainer("llama"), common + "--steps 4 --out '" + parts.string() + "'").status ==
      0);
  REQUIRE(run_program(trainer("llama"), common + "--steps 8 --out '" + parts.string() +
                                            "' --resume '" + (parts / "checkpoint").string() + "'")
              .status == 0);
  CHECK(checkpoint_tensors(parts) == checkpoint_tensors(whole));

  // A token budget sets the step count: 1000 tokens at 8 x 16 per step is 8 steps.
  const auto dry = run_program(trainer("llama"), common + "--tokens 1000 --dry-run");
  CHECK(dry.status == 0);
  CHECK(dry.out.find("128 tokens per step (8 x 16 x 1), 8 steps") != std::string::npos);
  const auto named = run_program(trainer("llama"), "--config 60m --tokens auto --dry-run");
  CHECK(named.out.find("58073600 parameters") != std::string::npos);
  CHECK(named.out.find("91553 steps") != std::string::npos);  // 6B tokens / (128 x 512)
}

TEST_CASE("llama rejects a missing WikiText folder, a corpus too small and bad budgets") {
  const auto missing = run_program(trainer("llama"), "--data /nonexistent/wikitext --steps 1");
  CHECK(missing.status == 1);
  CHECK(missing.err.rfind("llama: [llama] --data /nonexistent/wikitext: no wiki.train.raw", 0) ==
        0);
  CHECK(std::count(missing.err.begin(), missing.err.end(), '\n') == 1);

  const fs::path empty = scratch_dir() / "empty-wikitext";
  fs::create_directories(empty);
  std::ofstream(empty / "wiki.train.raw") << "";
  std::ofstream(empty / "wiki.valid.raw") << "";
  const auto small = run_program(
      trainer("llama"), "--tokenizer byte --seq 16 --steps 1 --data '" + empty.string() + "'");
  CHECK(small.status == 1);
  CHECK(small.err.find("expected at least one each") != std::string::npos);

  const auto budget = run_program(trainer("llama"), "--tokens lots --dry-run");
  CHECK(budget.status == 1);
  CHECK(budget.err ==
        "llama: [llama] --tokens \"lots\": expected auto or a count such as "
        "2000000, 500k, 5M or 1B\n");
  const auto both = run_program(trainer("llama"), "--tokens 5M --steps 3 --dry-run");
  CHECK(both.err == "llama: [llama] give --tokens or --steps, not both\n");
  const auto config = run_program(trainer("llama"), "--config 7b --dry-run");
  CHECK(config.err == "llama: [llama] --config \"7b\": expected 9m, 60m, 350m or 1b\n");
}

namespace {

/// A CIFAR-10 binary folder: five training batches of 16 records and a test batch of 16, labels
/// i % 10 and pixels of a fixed hash.
const fs::path& tiny_cifar() {
  static const fs::path dir = [] {
    const fs::path d = scratch_dir() / "cifar";
    fs::create_directories(d);
    for (const std::string name : {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                   "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"}) {
      std::string bytes;
      for (int i = 0; i < 16; ++i) {
        bytes += char(i % 10);
        for (int k = 0; k < 3072; ++k) bytes += char(((i * 3072 + k) * 2654435761u) >> 24);
      }
      std::ofstream(d / name, std::ios::binary) << bytes;
    }
    return d;
  }();
  return dir;
}

}  // namespace

TEST_CASE("vit trains on MNIST-format and CIFAR-10 files and resumes bit for bit") {
  const std::string small = "--dim 16 --depth 1 --heads 2 --batch 16 --schedule constant ";
  const fs::path mnist_run = scratch_dir() / "vit-mnist";
  const auto mnist =
      run_program(trainer("vit"), small + "--steps 3 --data '" + tiny_mnist().string() +
                                      "' --out '" + mnist_run.string() + "'");
  INFO(mnist.err);
  REQUIRE(mnist.status == 0);
  CHECK(summary(mnist_run)["config"]["image_size"] == 28);
  CHECK(summary(mnist_run)["images_per_second"].get<double>() > 0);

  const std::string cifar = small + "--dataset cifar10 --data '" + tiny_cifar().string() + "' ";
  const fs::path whole = scratch_dir() / "vit-whole", parts = scratch_dir() / "vit-parts";
  const auto run = run_program(trainer("vit"), cifar + "--steps 6 --out '" + whole.string() + "'");
  INFO(run.err);
  REQUIRE(run.status == 0);
  CHECK(summary(whole)["config"]["image_size"] == 32);
  CHECK(summary(whole)["val_accuracy"].get<double>() >= 0.0);
  REQUIRE(run_program(trainer("vit"), cifar + "--steps 3 --out '" + parts.string() + "'").status ==
          0);
  REQUIRE(run_program(trainer("vit"), cifar + "--steps 6 --out '" + parts.string() +
                                          "' --resume '" + (parts / "checkpoint").string() + "'")
              .status == 0);
  CHECK(checkpoint_tensors(parts) == checkpoint_tensors(whole));  // augmentation replays too

  const auto no_data = run_program(trainer("vit"), "--dataset cifar10 --steps 1");
  CHECK(no_data.status == 1);
  CHECK(no_data.err.rfind("vit: [vit] --dataset cifar10 needs --data DIR", 0) == 0);
  const fs::path truncated = scratch_dir() / "cifar-truncated";
  fs::create_directories(truncated);
  for (const auto& entry : fs::directory_iterator(tiny_cifar()))
    fs::copy_file(entry.path(), truncated / entry.path().filename(),
                  fs::copy_options::overwrite_existing);
  fs::resize_file(truncated / "data_batch_3.bin", 3073 * 2 + 100);
  const auto cut = run_program(trainer("vit"),
                               "--dataset cifar10 --steps 1 --data '" + truncated.string() + "'");
  CHECK(cut.status == 1);
  CHECK(cut.err.find("data_batch_3.bin") != std::string::npos);
  CHECK(std::count(cut.err.begin(), cut.err.end(), '\n') == 1);
  const auto patch =
      run_program(trainer("vit"), "--patch 5 --steps 1 --data '" + tiny_mnist().string() + "'");
  CHECK(patch.err == "vit: [vit] --patch 5 does not divide the 28-pixel images\n");
}

TEST_CASE("cifar trains the CNN and ResNet-20 on CIFAR-10 files and on an image folder") {
  for (const std::string model : {"cnn", "resnet20"}) {
    const fs::path out = scratch_dir() / ("cifar-" + model);
    const auto result =
        run_program(trainer("cifar"), "--model " + model + " --batch 16 --steps 3 --data '" +
                                          tiny_cifar().string() + "' --out '" + out.string() + "'");
    INFO(result.err);
    REQUIRE(result.status == 0);
    const nlohmann::json s = summary(out);
    CHECK(s["config"]["model"] == model);
    CHECK(s["val_accuracy"].get<double>() >= 0.0);
  }
  // An ImageNet-style folder: two classes of generated PNGs in train/ and val/.
  const fs::path folder = scratch_dir() / "image-folder";
  for (const char* split : {"train", "val"})
    for (const char* label : {"cats", "dogs"}) {
      fs::create_directories(folder / split / label);
      for (int i = 0; i < 4; ++i) {
        std::vector<uint8_t> pixels(20 * 20 * 3);
        for (size_t k = 0; k < pixels.size(); ++k)
          pixels[k] = uint8_t((k * 7 + size_t(i) * 31 + (label[0] == 'c' ? 0 : 128)) & 255);
        lattice::data::write_png((folder / split / label / (std::to_string(i) + ".png")).string(),
                                 {.width = 20, .height = 20, .channels = 3, .pixels = pixels});
      }
    }
  const fs::path out = scratch_dir() / "cifar-folder";
  const auto result = run_program(trainer("cifar"),
                                  "--dataset folder --size 16 --batch 4 "
                                  "--steps 2 --data '" +
                                      folder.string() + "' --out '" + out.string() + "'");
  INFO(result.err);
  REQUIRE(result.status == 0);
  CHECK(summary(out)["config"]["classes"] == 2);
  CHECK(summary(out)["config"]["image_size"] == 16);

  const auto no_data = run_program(trainer("cifar"), "--steps 1");
  CHECK(no_data.status == 1);
  CHECK(no_data.err.rfind("cifar: [cifar] --dataset cifar10 needs --data DIR", 0) == 0);
}

TEST_CASE("diffusion trains the small U-Net, validates on fixed noise and writes a sample grid") {
  const std::string common =
      "--batch 8 --timesteps 20 --eval-batches 2 --schedule constant "
      "--data '" +
      tiny_mnist().string() + "' ";
  const fs::path whole = scratch_dir() / "diffusion-whole",
                 parts = scratch_dir() / "diffusion-parts";
  const auto result = run_program(trainer("diffusion"),
                                  common + "--steps 4 --sample 5 --out '" + whole.string() + "'");
  INFO(result.err);
  REQUIRE(result.status == 0);
  const nlohmann::json s = summary(whole);
  CHECK(s["config"]["image_size"] == 32);  // 28 padded by 2
  CHECK(s["val_loss"].get<double>() > 0);
  const lattice::data::Image grid = lattice::data::load_image((whole / "samples.png").string(), 1);
  CHECK(grid.width == 3 * 32);  // 5 samples: rows of 3
  CHECK(grid.height == 2 * 32);

  REQUIRE(run_program(trainer("diffusion"), common + "--steps 2 --out '" + parts.string() + "'")
              .status == 0);
  REQUIRE(run_program(trainer("diffusion"), common + "--steps 4 --out '" + parts.string() +
                                                "' --resume '" + (parts / "checkpoint").string() +
                                                "'")
              .status == 0);
  CHECK(checkpoint_tensors(parts) == checkpoint_tensors(whole));
  // The validation set, noise and timesteps are fixed: the same weights give the same loss.
  CHECK(summary(parts)["val_loss"] == s["val_loss"]);

  const fs::path cifar_run = scratch_dir() / "diffusion-cifar";
  const auto cifar =
      run_program(trainer("diffusion"),
                  "--dataset cifar10 --batch 8 --steps 1 "
                  "--timesteps 10 --data '" +
                      tiny_cifar().string() + "' --out '" + cifar_run.string() + "'");
  INFO(cifar.err);
  CHECK(cifar.status == 0);
  const auto folder = run_program(trainer("diffusion"), "--config big --steps 1");
  CHECK(folder.status == 1);
  CHECK(folder.err.rfind("diffusion: [diffusion] --dataset folder needs --data DIR", 0) == 0);
}

TEST_CASE("trainers reject bad flags, specs and data with one line") {
  const auto unknown = run_program(trainer("mnist"), "--epochz 3");
  CHECK(unknown.status != 0);
  CHECK(unknown.err.find("--epochz") != std::string::npos);

  const auto missing = run_program(trainer("mnist"), "--data /nonexistent/dir --steps 1");
  CHECK(missing.status == 1);
  CHECK(missing.err.rfind("mnist: [idx] /nonexistent/dir", 0) == 0);
  CHECK(std::count(missing.err.begin(), missing.err.end(), '\n') == 1);

  const auto bad_override =
      run_program(trainer("regression"), "--rows 64 --features 4 --override head");
  CHECK(bad_override.status == 1);
  CHECK(bad_override.err ==
        "regression: [trainer] --override \"head\": expected PATTERN:SPEC, e.g. 0:gemm=bf16\n");

  const auto bad_stack =
      run_program(trainer("regression"), "--rows 64 --features 4 --stack gemm=mxfp5");
  CHECK(bad_stack.status == 1);
  CHECK(bad_stack.err.rfind("regression: [stack]", 0) == 0);
}

TEST_CASE("a resumed run cuts metrics.jsonl back to its checkpoint, so no step is logged twice") {
  const std::string common = tiny_data_flags() + "--schedule constant ";
  const fs::path whole = scratch_dir() / "metrics-whole", run = scratch_dir() / "metrics-resumed",
                 saved = scratch_dir() / "metrics-step2";
  REQUIRE(
      run_program(trainer("mnist"), common + "--steps 4 --out '" + whole.string() + "'").status ==
      0);
  REQUIRE(run_program(trainer("mnist"), common + "--steps 2 --out '" + run.string() + "'").status ==
          0);
  // Keep the step-2 checkpoint, run on to step 4, then put it back: as if the run had died
  // after logging steps 3 and 4 but before its next checkpoint.
  fs::create_directories(saved);
  const std::string tensors =
      nlohmann::json::parse(read_file(run / "checkpoint.json"))["tensors"].get<std::string>();
  for (const std::string& file : {std::string("checkpoint.json"), tensors})
    fs::copy_file(run / file, saved / file);
  const std::string resume =
      "--steps 4 --out '" + run.string() + "' --resume '" + (run / "checkpoint").string() + "'";
  REQUIRE(run_program(trainer("mnist"), common + resume).status == 0);
  for (const std::string& file : {std::string("checkpoint.json"), tensors})
    fs::copy_file(saved / file, run / file, fs::copy_options::overwrite_existing);
  const auto again = run_program(trainer("mnist"), common + resume);
  INFO(again.err);
  REQUIRE(again.status == 0);

  std::vector<int64_t> steps;
  std::vector<double> losses, uninterrupted;
  for (const auto& line : metrics(run))
    if (line.contains("loss")) {
      steps.push_back(line["step"]);
      losses.push_back(line["loss"]);
    }
  for (const auto& line : metrics(whole))
    if (line.contains("loss")) uninterrupted.push_back(line["loss"]);
  CHECK(steps == std::vector<int64_t>{1, 2, 3, 4});
  CHECK(losses == uninterrupted);
}

TEST_CASE("a loss that explodes without becoming NaN ends the run as diverged") {
  const fs::path out = scratch_dir() / "exploding";
  const auto result = run_program(
      trainer("mnist"), tiny_data_flags() + "--lr 1e6 --steps 40 --out '" + out.string() + "'");
  INFO(result.err);
  REQUIRE(result.status == 0);  // a result, not a crash
  const nlohmann::json s = summary(out);
  CHECK(s["status"] == "diverged");
  CHECK(s["steps"].get<int64_t>() < 40);
  CHECK(result.err.find("stopping (diverged)") != std::string::npos);
  // The rule that fired is the growth one: every logged loss is a finite number.
  const std::vector<nlohmann::json> lines = metrics(out);
  double largest = 0;
  for (const auto& line : lines)
    if (line.contains("loss")) {
      REQUIRE(line["loss"].is_number());
      largest = std::max(largest, line["loss"].get<double>());
    }
  CHECK(largest > 1e4 * lines[0]["loss"].get<double>());

  // An ordinary run at a sane learning rate is not flagged.
  const fs::path calm = scratch_dir() / "calm";
  REQUIRE(
      run_program(trainer("mnist"), tiny_data_flags() + "--steps 12 --out '" + calm.string() + "'")
          .status == 0);
  CHECK(summary(calm)["status"] == "finished");
}

TEST_CASE("a full disk fails the run with one line naming the file, instead of 'finished'") {
  // /dev/full fails every write with ENOSPC, for root too.
  const fs::path out = scratch_dir() / "full-disk";
  fs::create_directories(out);
  fs::create_symlink("/dev/full", out / "metrics.jsonl");
  const auto result =
      run_program(trainer("mnist"), tiny_data_flags() + "--steps 2 --out '" + out.string() + "'");
  CHECK(result.status == 1);
  CHECK(result.err == "mnist: [trainer] " + (out / "metrics.jsonl").string() +
                          ": write failed: No space left on device\n");
  CHECK(!fs::exists(out / "summary.json"));

  // A summary that cannot be put in place: the run fails, and says so on one line.
  const fs::path blocked = scratch_dir() / "summary-blocked";
  fs::create_directories(blocked / "summary.json" / "occupied");
  const auto refused = run_program(
      trainer("mnist"), tiny_data_flags() + "--steps 2 --out '" + blocked.string() + "'");
  CHECK(refused.status == 1);
  CHECK(refused.err.find("finished") == std::string::npos);
  const std::string last_line =
      refused.err.substr(refused.err.rfind('\n', refused.err.size() - 2) + 1);
  CHECK(last_line.starts_with("mnist: [trainer] " + (blocked / "summary.json").string() +
                              ": rename failed: Is a directory"));
}

TEST_CASE("absurd --threads and --epochs give one line instead of a crash or an overflow") {
  const auto threads =
      run_program(trainer("mnist"), tiny_data_flags() + "--steps 1 --threads 1000000 --out '" +
                                        (scratch_dir() / "threads").string() + "'");
  CHECK(threads.status == 1);
  CHECK(threads.err.starts_with("mnist: [trainer] --threads 1000000: expected at most "));
  CHECK(line_count(threads.err) == 1);

  const auto epochs =
      run_program(trainer("mnist"), tiny_data_flags() + "--epochs 9223372036854775807 --out '" +
                                        (scratch_dir() / "epochs").string() + "'");
  CHECK(epochs.status == 1);
  CHECK(epochs.err ==
        "mnist: [trainer] --epochs 9223372036854775807 x 4 batches per epoch overflows the step "
        "count; expected at most 2305843009213693951 epochs\n");
}

TEST_CASE("resuming from a malformed checkpoint gives one line naming the file and field") {
  const fs::path out = scratch_dir() / "malformed-resume";
  REQUIRE(
      run_program(trainer("mnist"), tiny_data_flags() + "--steps 2 --out '" + out.string() + "'")
          .status == 0);
  const fs::path json = out / "checkpoint.json";
  const std::string good = read_file(json);
  const std::string resume = tiny_data_flags() + "--steps 3 --out '" + out.string() +
                             "' --resume '" + (out / "checkpoint").string() + "'";
  for (const auto& [field, value, expected] :
       std::vector<std::tuple<std::string, nlohmann::json, std::string>>{
           {"step", "2", "\"step\" is \"2\"; expected an integer in [0, 2^63)"},
           {"data_loader", "x", "data_loader: "}}) {
    nlohmann::json edited = nlohmann::json::parse(good);
    edited[field] = value;
    std::ofstream(json) << edited.dump();
    const auto result = run_program(trainer("mnist"), resume);
    INFO(result.err);
    CHECK(result.status == 1);
    CHECK(result.err.starts_with("mnist: [checkpoint] " + json.string() + ": "));
    CHECK(result.err.find(expected) != std::string::npos);
    CHECK(line_count(result.err) == 1);
  }
}
