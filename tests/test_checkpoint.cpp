// Checkpoints: safetensors layout, train -> checkpoint -> resume bit-identical to a run that
// never stopped (bf16 stochastic-rounding weights, AdamW, dynamic loss scaling, a schedule),
// and clear one-line errors for truncated, corrupted and mismatched files.
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "autograd/autograd.h"
#include "optim/checkpoint.h"
#include "optim/schedule.h"
#include "tensor/ops.h"
#include "tensor/random.h"

using namespace lattice;
using namespace lattice::optim;
namespace fs = std::filesystem;

namespace {

/// A fresh directory under the system temp dir, removed with its contents at scope end.
struct TempDir {
  fs::path path;
  TempDir() {
    static int counter = 0;
    path =
        fs::temp_directory_path() / concat("lattice_checkpoint_test_", ::getpid(), "_", counter++);
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path, ignored);
  }
  std::string operator/(const std::string& name) const {
    return (path / name).string();
  }
};

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
}

/// A safetensors file from a header and data bytes, as a foreign writer would make it.
std::vector<uint8_t> safetensors_bytes(const std::string& header, std::vector<uint8_t> data) {
  const uint64_t length = header.size();
  std::vector<uint8_t> bytes(static_cast<size_t>(8 + length + data.size()));
  std::memcpy(bytes.data(), &length, 8);
  std::memcpy(bytes.data() + 8, header.data(), length);
  if (!data.empty()) std::memcpy(bytes.data() + 8 + length, data.data(), data.size());
  return bytes;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

// ---- A tiny model of raw parameters: linear regression y = X w + b on fresh random batches.

const Tensor kTrueWeights = from_vector<float>({1.5f, -2.0f, 0.7f, 0.3f}, {4, 1});

struct Run {
  Tensor w, b;
  std::unique_ptr<AdamW> optimizer;
  LossScaler scaler;
  Schedule schedule;

  explicit Run(float initial) {
    w = full({4, 1}, initial);
    b = full({1}, initial);
    set_requires_grad(w);
    set_requires_grad(b);
    optimizer = std::make_unique<AdamW>(one_group({{"w", w}, {"b", b}}, 0.05, 0.01), AdamOptions{},
                                        parse_precision_stack("w=bf16:sr"));
    scaler = LossScaler::dynamic(
        {.initial_scale = 64, .growth_factor = 2, .growth_interval = 3, .backoff_factor = 0.5});
    schedule = parse_schedule("warmup:3,cosine:0.1", 12);
  }
  NamedTensors model() const {
    return {{"w", w}, {"b", b}};
  }
  void train_step(int64_t step) {
    apply_schedule(schedule, *optimizer, step);
    const Tensor x = randn({8, 4}, next_random_stream());  // the batch draws from the RNG too
    const Tensor y = matmul(x, kTrueWeights);
    optimizer->zero_grad();
    backward(scaler.scale_loss(mse(matmul(x, w) + b, y)));
    scaler.step(*optimizer);
  }
};

std::vector<float> values(const Tensor& t) {
  return t.to_vector<float>();
}

}  // namespace

TEST_CASE("train -> checkpoint -> resume is bit-identical to the run that never stopped") {
  TempDir dir;
  manual_seed(2024);
  Run straight(0.25f);
  for (int64_t step = 0; step < 12; ++step) straight.train_step(step);
  const RandomState straight_rng = default_random_state();

  manual_seed(2024);
  Run first_half(0.25f);
  for (int64_t step = 0; step < 6; ++step) first_half.train_step(step);
  TrainingState saved;
  saved.step = 6;
  saved.schedule = to_string(first_half.schedule);
  saved.data_loader = {{"epoch", 0}, {"batch", 6}};
  save_checkpoint(dir / "ckpt", first_half.model(), *first_half.optimizer, saved,
                  &first_half.scaler);

  manual_seed(99);  // another seed, and other weights: the checkpoint must restore all
  Run resumed(-1.0f);
  const TrainingState loaded =
      load_checkpoint(dir / "ckpt", resumed.model(), *resumed.optimizer, &resumed.scaler);
  CHECK(loaded.step == 6);
  CHECK(loaded.data_loader == saved.data_loader);
  CHECK(loaded.schedule == "warmup:3,cosine:0.1");
  resumed.schedule = parse_schedule(loaded.schedule, 12);
  for (int64_t step = loaded.step; step < 12; ++step) resumed.train_step(step);

  CHECK(values(resumed.w) == values(straight.w));
  CHECK(values(resumed.b) == values(straight.b));
  CHECK(resumed.scaler.scale() == straight.scaler.scale());
  CHECK(default_random_state() == straight_rng);
  const OptimizerState a = straight.optimizer->state(), b = resumed.optimizer->state();
  REQUIRE(a.tensors.size() == b.tensors.size());
  for (size_t i = 0; i < a.tensors.size(); ++i) {
    INFO(a.tensors[i].first);
    CHECK(values(a.tensors[i].second) == values(b.tensors[i].second));
  }
  CHECK(a.scalars == b.scalars);
  // The weights really live on bf16, apart from their fp32 masters.
  CHECK(values(straight.w) == values(cast(straight.w, bf16)));
  CHECK(values(straight.w) != values(a.tensors[0].second));  // w.master differs from w
}

TEST_CASE("resuming without the RNG state would diverge: the test above can fail") {
  manual_seed(5);
  Run a(0.25f);
  for (int64_t step = 0; step < 4; ++step) a.train_step(step);
  manual_seed(5);
  Run b(0.25f);
  for (int64_t step = 0; step < 2; ++step) b.train_step(step);
  manual_seed(6);  // as if the RNG state were lost at step 2
  for (int64_t step = 2; step < 4; ++step) b.train_step(step);
  CHECK(values(a.w) != values(b.w));
}

TEST_CASE("save_checkpoint writes a safetensors file any reader can parse, and no temp files") {
  TempDir dir;
  manual_seed(1);
  Run run(0.5f);
  run.train_step(0);
  save_checkpoint(dir / "ckpt", run.model(), *run.optimizer, TrainingState{}, &run.scaler);
  save_checkpoint(dir / "ckpt", run.model(), *run.optimizer, TrainingState{}, &run.scaler);
  std::vector<std::string> files;
  for (const auto& entry : fs::directory_iterator(dir.path))
    files.push_back(entry.path().filename().string());
  std::sort(files.begin(), files.end());
  CHECK(files == std::vector<std::string>{"ckpt.json", "ckpt.safetensors"});

  const std::vector<uint8_t> bytes = read_bytes(dir / "ckpt.safetensors");
  uint64_t header_length = 0;
  std::memcpy(&header_length, bytes.data(), 8);
  CHECK(header_length % 8 == 0);
  const nlohmann::json header = nlohmann::json::parse(
      std::string(bytes.begin() + 8, bytes.begin() + 8 + int64_t(header_length)));
  CHECK(header["w"]["dtype"] == "F32");
  CHECK(header["w"]["shape"] == nlohmann::json::array({4, 1}));
  CHECK(header["w"]["data_offsets"] == nlohmann::json::array({0, 16}));
  CHECK(header.contains("optimizer.w.exp_avg"));
  CHECK(header.contains("optimizer.w.master"));
  float w0 = 0;
  std::memcpy(&w0, bytes.data() + 8 + header_length, 4);
  CHECK(w0 == values(run.w)[0]);

  const nlohmann::json state = nlohmann::json::parse(read_bytes(dir / "ckpt.json"));
  CHECK(state["precision_stack"] == "w=bf16:sr");
  CHECK(state["rng"]["seed"] == 1);
  CHECK(state["loss_scaler"]["scale"] == 64.0);
}

TEST_CASE("safetensors round-trips every dtype, and reads files without Lattice's CRC") {
  TempDir dir;
  const NamedTensors tensors = {{"f32", from_vector<float>({1.5f, -2.f}, {2, 1})},
                                {"f64", from_vector<double>({3.25})},
                                {"i64", from_vector<int64_t>({-7, 8, 9})},
                                {"i32", from_vector<int32_t>({42})},
                                {"u8", from_vector<uint8_t>({1, 255})},
                                {"scalar", scalar_tensor(2.0)},
                                {"empty", zeros({0, 3})}};
  save_safetensors(dir / "t.safetensors", tensors, {{"note", "hello"}});
  const SafetensorsFile file = load_safetensors(dir / "t.safetensors");
  REQUIRE(file.tensors.size() == tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    CHECK(file.tensors[i].first == tensors[i].first);
    CHECK(file.tensors[i].second.dtype() == tensors[i].second.dtype());
    CHECK(file.tensors[i].second.shape() == tensors[i].second.shape());
    CHECK(file.tensors[i].second.to_vector<double>() == tensors[i].second.to_vector<double>());
  }
  CHECK(file.metadata.at("note") == "hello");

  write_bytes(dir / "foreign.safetensors",
              safetensors_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                                {0, 0, 128, 63, 0, 0, 0, 64}));
  const SafetensorsFile foreign = load_safetensors(dir / "foreign.safetensors");
  CHECK(foreign.tensors[0].second.to_vector<float>() == std::vector<float>{1.0f, 2.0f});
}

TEST_CASE("truncated and corrupted safetensors files give one-line errors naming the file") {
  TempDir dir;
  manual_seed(1);
  Run run(0.5f);
  run.train_step(0);
  save_checkpoint(dir / "ckpt", run.model(), *run.optimizer, TrainingState{}, &run.scaler);
  const std::string path = dir / "ckpt.safetensors";
  const std::vector<uint8_t> good = read_bytes(path);
  uint64_t header_length = 0;
  std::memcpy(&header_length, good.data(), 8);

  auto check_error = [&](std::vector<uint8_t> bytes, const std::string& expected) {
    const std::string bad = dir / "bad.safetensors";
    write_bytes(bad, bytes);
    const std::string message = error_of([&] { load_safetensors(bad); });
    INFO(message);
    CHECK(message.find("[safetensors] " + bad + ": ") == 0);
    CHECK(message.find(expected) != std::string::npos);
    CHECK(message.find('\n') == std::string::npos);
  };
  check_error({1, 2, 3}, "file is 3 bytes, too short for the header length");
  check_error(std::vector<uint8_t>(good.begin(), good.begin() + 40), "does not fit the file");
  check_error(std::vector<uint8_t>(good.begin(), good.end() - 5), "(truncated file?)");
  std::vector<uint8_t> flipped = good;
  flipped[8 + header_length + 3] ^= 0x10;
  check_error(flipped, "corrupted file");
  std::vector<uint8_t> bad_json = good;
  bad_json[8] = '#';
  check_error(bad_json, "header is not a JSON object");
  std::vector<uint8_t> huge_length = good;
  huge_length[7] = 0x7f;
  check_error(huge_length, "header length");
  check_error({}, "file is 0 bytes");

  const std::vector<uint8_t> eight = {0, 0, 128, 63, 0, 0, 0, 64};
  check_error(
      safetensors_bytes(R"({"a":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}})", {0, 0, 0, 0}),
      "has dtype \"F16\"; expected F32, F64, I64, I32, U8 or BOOL");
  check_error(safetensors_bytes(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", eight),
              "needs 12");
  check_error(safetensors_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                                eight),
              "overlaps");
  check_error(safetensors_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", eight),
              "bytes 0 to 4 belong to no tensor");
  check_error(safetensors_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", eight),
              "data section is 8 bytes but the tensors cover 4");
  check_error(
      safetensors_bytes(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", eight),
      "expected sizes in [0, 2^40]");
  check_error(safetensors_bytes(R"({"a":{"dtype":"F32","shape":[2]}})", eight),
              "has no data_offsets");
  check_error(safetensors_bytes(R"({"a":[1,2]})", eight), "entry \"a\" is not an object");
}

TEST_CASE("bad checkpoints are refused before anything is changed") {
  TempDir dir;
  manual_seed(1);
  Run run(0.5f);
  run.train_step(0);
  save_checkpoint(dir / "a", run.model(), *run.optimizer, TrainingState{.step = 1}, &run.scaler);
  run.train_step(1);
  save_checkpoint(dir / "b", run.model(), *run.optimizer, TrainingState{.step = 2}, &run.scaler);

  Run target(-1.0f);
  auto load_error = [&](const std::string& stem) {
    const std::vector<float> before = values(target.w);
    const std::string message = error_of(
        [&] { load_checkpoint(dir / stem, target.model(), *target.optimizer, &target.scaler); });
    CHECK(values(target.w) == before);
    CHECK(target.optimizer->step_count() == 0);
    CHECK(message.find('\n') == std::string::npos);
    return message;
  };
  // a.json paired with b's tensors (a crash between the two renames, or a stray copy).
  fs::copy_file(dir / "b.safetensors", dir / "a.safetensors", fs::copy_options::overwrite_existing);
  CHECK(load_error("a").find("[checkpoint] " + (dir / "a.json") + ": tensor file ") == 0);
  CHECK(load_error("a").find("a corrupted file or one from another save") != std::string::npos);

  const std::vector<uint8_t> json = read_bytes(dir / "b.json");
  write_bytes(dir / "b.json", std::vector<uint8_t>(json.begin(), json.begin() + 50));
  CHECK(load_error("b") == "[checkpoint] " + (dir / "b.json") + ": not a JSON object (truncated?)");
  CHECK(load_error("missing").find("cannot open") != std::string::npos);

  save_checkpoint(dir / "c", run.model(), *run.optimizer, TrainingState{}, &run.scaler);
  Tensor wide = full({5, 1}, 0.0);
  set_requires_grad(wide);
  AdamW other(one_group({{"w", wide}, {"b", target.b}}, 0.05), AdamOptions{},
              parse_precision_stack("w=bf16:sr"));
  const std::string shape_error = error_of([&] {
    load_checkpoint(dir / "c", {{"w", wide}, {"b", target.b}}, other, nullptr);
  });
  CHECK(shape_error.find("model tensor \"w\" is float32 (4, 1) in the file; the model has "
                         "float32 (5, 1)") != std::string::npos);
  AdamW fp32(one_group({{"w", target.w}, {"b", target.b}}, 0.05));
  CHECK(error_of([&] {
          load_checkpoint(dir / "c", target.model(), fp32, nullptr);
        }).find("precision stack \"w=bf16:sr\" differs") != std::string::npos);

  // A good checkpoint still loads afterwards.
  CHECK(load_checkpoint(dir / "c", target.model(), *target.optimizer, &target.scaler).step == 0);
  CHECK(values(target.w) == values(run.w));
}

TEST_CASE("a failed save leaves the previous checkpoint intact and says why") {
  TempDir dir;
  manual_seed(1);
  Run run(0.5f);
  run.train_step(0);
  save_checkpoint(dir / "ckpt", run.model(), *run.optimizer, TrainingState{}, &run.scaler);
  const std::vector<uint8_t> before = read_bytes(dir / "ckpt.safetensors");
  CHECK_THROWS_WITH_AS(save_safetensors(dir / "ckpt.safetensors", {{"x", Tensor()}}),
                       doctest::Contains("tensor \"x\" is undefined"), Error);
  CHECK_THROWS_WITH_AS(save_safetensors(dir / "ckpt.safetensors", {{"w", run.w}, {"w", run.b}}),
                       doctest::Contains("tensor name \"w\" repeats or is reserved"), Error);
  CHECK(read_bytes(dir / "ckpt.safetensors") == before);
  const std::string missing = dir / "no_such_dir/ckpt.safetensors";
  CHECK_THROWS_WITH_AS(save_safetensors(missing, {{"w", run.w}}),
                       doctest::Contains("cannot create temporary file"), Error);
}
