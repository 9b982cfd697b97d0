// The trainers as a user runs them, on tiny generated data: a few steps of mnist (MLP and CNN)
// and regression write their metrics and summary, a resumed run continues bit-identically to
// an uninterrupted one, and bad flags or data give one-line errors.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <vector>

#include "data/idx.h"
#include "process_support.h"

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
    CHECK(fs::exists(out / "checkpoint.safetensors"));
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
