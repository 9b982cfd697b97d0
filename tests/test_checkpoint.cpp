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
#include "ops/ops.h"
#include "optim/checkpoint.h"
#include "optim/schedule.h"
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

/// The tensor file a checkpoint's JSON names, beside it.
std::string tensor_file(const TempDir& dir, const std::string& stem) {
  const nlohmann::json json = nlohmann::json::parse(read_bytes(dir / (stem + ".json")));
  return dir / json.at("tensors").get<std::string>();
}

std::vector<std::string> file_names(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir))
    names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

void edit_json(const std::string& path, const std::function<void(nlohmann::json&)>& edit) {
  nlohmann::json json = nlohmann::json::parse(read_bytes(path));
  edit(json);
  const std::string text = json.dump();
  write_bytes(path, std::vector<uint8_t>(text.begin(), text.end()));
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
  CHECK(file_names(dir.path) == std::vector<std::string>{"ckpt.1.safetensors", "ckpt.json"});
  save_checkpoint(dir / "ckpt", run.model(), *run.optimizer, TrainingState{}, &run.scaler);
  // Each save writes a new tensor file and removes the one before once its JSON is in place.
  CHECK(file_names(dir.path) == std::vector<std::string>{"ckpt.2.safetensors", "ckpt.json"});
  CHECK(tensor_file(dir, "ckpt") == dir / "ckpt.2.safetensors");

  const std::vector<uint8_t> bytes = read_bytes(dir / "ckpt.2.safetensors");
  REQUIRE(bytes.size() >= 8);
  uint64_t header_length = 0;
  std::memcpy(&header_length, bytes.data(), 8);
  CHECK(header_length % 8 == 0);
  const nlohmann::json header = nlohmann::json::parse(
      std::string(bytes.begin() + 8, bytes.begin() + 8 + int64_t(header_length)));
  // The working weights lie on Λw = bf16 and are written as BF16, exactly; the masters as F32.
  CHECK(header["w"]["dtype"] == "BF16");
  CHECK(header["w"]["shape"] == nlohmann::json::array({4, 1}));
  CHECK(header["w"]["data_offsets"] == nlohmann::json::array({0, 8}));
  CHECK(header["optimizer.w.master"]["dtype"] == "F32");
  CHECK(header.contains("optimizer.w.exp_avg"));
  uint16_t w0_bits = 0;
  std::memcpy(&w0_bits, bytes.data() + 8 + header_length, 2);
  const uint32_t w0_float_bits = uint32_t(w0_bits) << 16;
  float w0 = 0;
  std::memcpy(&w0, &w0_float_bits, 4);
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
  const std::string path = tensor_file(dir, "ckpt");
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
      safetensors_bytes(R"({"a":{"dtype":"I16","shape":[2],"data_offsets":[0,4]}})", {0, 0, 0, 0}),
      "has dtype \"I16\"; expected F32, F64, I64, I32, U8, BOOL, BF16 or F16");
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
  fs::copy_file(tensor_file(dir, "b"), tensor_file(dir, "a"), fs::copy_options::overwrite_existing);
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
  const std::string tensors = tensor_file(dir, "ckpt");
  const std::vector<uint8_t> before = read_bytes(tensors);
  REQUIRE(!before.empty());
  CHECK_THROWS_WITH_AS(save_safetensors(tensors, {{"x", Tensor()}}),
                       doctest::Contains("tensor \"x\" is undefined"), Error);
  CHECK_THROWS_WITH_AS(save_safetensors(tensors, {{"w", run.w}, {"w", run.b}}),
                       doctest::Contains("tensor name \"w\" repeats or is reserved"), Error);
  CHECK(read_bytes(tensors) == before);
  const std::string missing = dir / "no_such_dir/ckpt.safetensors";
  CHECK_THROWS_WITH_AS(save_safetensors(missing, {{"w", run.w}}),
                       doctest::Contains("cannot create temporary file"), Error);
}

namespace {

/// Everything a load restores, taken from a fresh run that loaded the checkpoint.
struct Restored {
  int64_t step = -1;
  std::vector<float> w, b;
  std::vector<std::vector<float>> optimizer_tensors;
  nlohmann::json optimizer_scalars, scaler;
  RandomState rng;
  bool operator==(const Restored&) const = default;
};

Restored restore(const TempDir& dir, const std::string& stem) {
  Run fresh(-1.0f);
  Restored r;
  r.step = load_checkpoint(dir / stem, fresh.model(), *fresh.optimizer, &fresh.scaler).step;
  r.w = values(fresh.w);
  r.b = values(fresh.b);
  const OptimizerState state = fresh.optimizer->state();
  for (const auto& [name, tensor] : state.tensors) r.optimizer_tensors.push_back(values(tensor));
  r.optimizer_scalars = state.scalars;
  r.scaler = fresh.scaler.state();
  r.rng = default_random_state();
  return r;
}

/// Installs a fault hook for its scope.
struct FaultHook {
  explicit FaultHook(lattice::detail::WriteFaultHook hook) {
    lattice::detail::set_write_fault_hook(std::move(hook));
  }
  ~FaultHook() {
    lattice::detail::set_write_fault_hook({});
  }
};

struct SimulatedCrash {};

bool is_tensor_generation(const std::string& name, const std::string& stem) {
  const std::string middle = name.substr(0, name.size() - std::string(".safetensors").size());
  return name.starts_with(stem + ".") && name.ends_with(".safetensors") &&
         middle.size() > stem.size() + 1 &&
         std::all_of(middle.begin() + std::ptrdiff_t(stem.size() + 1), middle.end(),
                     [](char c) { return c >= '0' && c <= '9'; });
}

}  // namespace

TEST_CASE("a save that fails or dies at any I/O step leaves the previous checkpoint loadable") {
  std::vector<std::string> steps;
  {
    TempDir dir;
    manual_seed(3);
    Run run(0.5f);
    run.train_step(0);
    FaultHook hook([&](const std::string& step) {
      steps.push_back(step);
      return 0;
    });
    save_checkpoint(dir / "ckpt", run.model(), *run.optimizer, TrainingState{}, &run.scaler);
  }
  CHECK(steps == std::vector<std::string>{"tensors.create", "tensors.write", "tensors.fsync",
                                          "tensors.rename", "json.create", "json.write",
                                          "json.fsync", "json.rename", "cleanup"});

  for (const std::string& failing : steps) {
    for (const bool dies : {false, true}) {
      const std::string scenario = failing + (dies ? ": the process dies" : ": ENOSPC");
      INFO(scenario);
      TempDir dir;
      manual_seed(3);
      Run run(0.5f);
      run.train_step(0);
      save_checkpoint(dir / "ckpt", run.model(), *run.optimizer, TrainingState{.step = 1},
                      &run.scaler);
      const Restored previous = restore(dir, "ckpt");
      run.train_step(1);
      {
        FaultHook hook([&](const std::string& step) -> int {
          if (step != failing) return 0;
          if (dies) throw SimulatedCrash{};
          return ENOSPC;
        });
        auto save = [&] {
          save_checkpoint(dir / "ckpt", run.model(), *run.optimizer, TrainingState{.step = 2},
                          &run.scaler);
        };
        if (dies) {
          CHECK_THROWS_AS(save(), SimulatedCrash);
        } else if (failing == "cleanup") {
          CHECK_NOTHROW(save());  // committed: the old files just stay until the next save
        } else {
          CHECK_THROWS_WITH_AS(save(), doctest::Contains("No space left on device"), Error);
        }
      }
      const Restored after = restore(dir, "ckpt");
      if (failing == "cleanup") {
        CHECK(after.step == 2);
        CHECK(after.w == values(run.w));
      } else {
        CHECK(after == previous);
      }
      // The next save succeeds and leaves exactly one pair: no temporary or orphaned files.
      save_checkpoint(dir / "ckpt", run.model(), *run.optimizer, TrainingState{.step = 3},
                      &run.scaler);
      const std::vector<std::string> names = file_names(dir.path);
      REQUIRE(names.size() == 2);
      CHECK(is_tensor_generation(names[0], "ckpt"));
      CHECK(names[1] == "ckpt.json");
      const Restored last = restore(dir, "ckpt");
      CHECK(last.step == 3);
      CHECK(last.w == values(run.w));
      CHECK(last.b == values(run.b));
    }
  }
}

TEST_CASE("a save removes temporary and tensor files that crashed saves of its stem left") {
  TempDir dir;
  manual_seed(1);
  Run run(0.5f);
  run.train_step(0);
  save_checkpoint(dir / "ckpt", run.model(), *run.optimizer, TrainingState{}, &run.scaler);
  for (const std::string name :
       {".ckpt.json.tmp.99999", ".ckpt.5.safetensors.tmp.1", "ckpt.7.safetensors",
        ".ckpt.b.json.tmp.1", ".other.json.tmp.1", "other.3.safetensors", "ckpt.notes.txt"})
    write_bytes(dir / name, {1, 2, 3});
  save_checkpoint(dir / "ckpt", run.model(), *run.optimizer, TrainingState{}, &run.scaler);
  // The next generation is above the orphan's; other stems' files stay.
  CHECK(file_names(dir.path) == std::vector<std::string>{".ckpt.b.json.tmp.1", ".other.json.tmp.1",
                                                         "ckpt.8.safetensors", "ckpt.json",
                                                         "ckpt.notes.txt", "other.3.safetensors"});
}

TEST_CASE("a checkpoint in the layout before generations (<stem>.safetensors) still loads") {
  TempDir dir;
  manual_seed(1);
  Run run(0.5f);
  run.train_step(0);
  save_checkpoint(dir / "ckpt", run.model(), *run.optimizer, TrainingState{.step = 4}, &run.scaler);
  fs::rename(dir / "ckpt.1.safetensors", dir / "ckpt.safetensors");
  edit_json(dir / "ckpt.json", [](nlohmann::json& json) { json["tensors"] = "ckpt.safetensors"; });
  const Restored old = restore(dir, "ckpt");
  CHECK(old.step == 4);
  CHECK(old.w == values(run.w));
  save_checkpoint(dir / "ckpt", run.model(), *run.optimizer, TrainingState{.step = 5}, &run.scaler);
  CHECK(file_names(dir.path) == std::vector<std::string>{"ckpt.1.safetensors", "ckpt.json"});
}

TEST_CASE("malformed checkpoint JSON gets one line naming the field, before anything changes") {
  TempDir dir;
  manual_seed(1);
  Run run(0.5f);
  run.train_step(0);
  save_checkpoint(dir / "good", run.model(), *run.optimizer, TrainingState{.step = 1}, &run.scaler);
  manual_seed(42);
  Run target(-1.0f);
  const RandomState rng = default_random_state();
  const OptimizerState optimizer_before = target.optimizer->state();
  const nlohmann::json scaler_before = target.scaler.state();
  auto refused = [&](const std::function<void(nlohmann::json&)>& edit) {
    fs::copy_file(dir / "good.json", dir / "bad.json", fs::copy_options::overwrite_existing);
    edit_json(dir / "bad.json", edit);
    const std::string message = error_of(
        [&] { load_checkpoint(dir / "bad", target.model(), *target.optimizer, &target.scaler); });
    CHECK(values(target.w) == std::vector<float>(4, -1.0f));
    CHECK(values(target.b) == std::vector<float>{-1.0f});
    CHECK(target.optimizer->state().scalars == optimizer_before.scalars);
    CHECK(target.optimizer->state().tensors.size() == optimizer_before.tensors.size());
    CHECK(target.scaler.state() == scaler_before);
    CHECK(default_random_state() == rng);
    CHECK(message.starts_with("[checkpoint] " + (dir / "bad.json") + ": "));
    CHECK(message.find('\n') == std::string::npos);
    return message;
  };
  using Json = nlohmann::json;
  CHECK(refused([](Json& j) {
          j["step"] = "3";
        }).ends_with("\"step\" is \"3\"; expected an integer in [0, 2^63)"));
  CHECK(refused([](Json& j) {
          j["step"] = -1;
        }).ends_with("\"step\" is -1; expected an integer in [0, 2^63)"));
  CHECK(refused([](Json& j) {
          j["optimizer"]["step"] = "3";
        }).ends_with("[adamw] optimizer state has step \"3\"; expected an integer in [0, 2^63)"));
  CHECK(refused([](Json& j) {
          j["optimizer"]["lr"] = Json::array({"fast"});
        }).find("learning rate \"fast\"") != std::string::npos);
  CHECK(refused([](Json& j) {
          j["loss_scaler"]["growth_interval"] = 1e300;
        }).find("\"growth_interval\" 1e+300") != std::string::npos);
  CHECK(refused([](Json& j) {
          j["loss_scaler"]["backoff_factor"] = 0;
        }).ends_with("backoff factor 0 must lie in (0, 1)"));
  CHECK(refused([](Json& j) { j["rng"]["seed"] = "x"; }).find("\"rng\"") != std::string::npos);
  CHECK(refused([](Json& j) { j["extra"] = 5; }).ends_with("\"extra\" is not an object"));
  CHECK(refused([](Json& j) {
          j["tensors"] = "../good.1.safetensors";
        }).find("expected the name of a .safetensors file in the same directory") !=
        std::string::npos);

  // A .json (or the tensor file it names) that is a directory: a clear line, not bad_alloc.
  fs::create_directories(dir / "folder.json");
  CHECK(error_of([&] {
          load_checkpoint(dir / "folder", target.model(), *target.optimizer, &target.scaler);
        }) ==
        "[checkpoint] " + (dir / "folder.json") + ": is a directory; expected a checkpoint file");
  fs::create_directories(dir / "dir.safetensors");
  edit_json(dir / "bad.json", [](Json& j) { j["tensors"] = "dir.safetensors"; });
  CHECK(error_of([&] {
          load_checkpoint(dir / "bad", target.model(), *target.optimizer, &target.scaler);
        }) == "[checkpoint] " + (dir / "dir.safetensors") +
                  ": is a directory; expected a checkpoint file");

  // A negative step is not written in the first place.
  CHECK_THROWS_WITH_AS(save_checkpoint(dir / "neg", run.model(), *run.optimizer,
                                       TrainingState{.step = -5}, &run.scaler),
                       doctest::Contains("step -5 is negative"), Error);
  CHECK(load_checkpoint(dir / "good", target.model(), *target.optimizer, &target.scaler).step == 1);
}

TEST_CASE("zero-sized tensors load with no data bytes; shapes whose strides overflow do not") {
  TempDir dir;
  write_bytes(dir / "zero.safetensors",
              safetensors_bytes(R"({"z":{"dtype":"F32","shape":[0,5],"data_offsets":[0,0]}})", {}));
  const SafetensorsFile zero = load_safetensors(dir / "zero.safetensors");
  REQUIRE(zero.tensors.size() == 1);
  CHECK(zero.tensors[0].second.shape() == Shape{0, 5});

  // Zero elements, but the strides (sizes with 0 counted as 1) would be 2^80.
  const std::string path = dir / "huge.safetensors";
  write_bytes(path, safetensors_bytes(R"({"z":{"dtype":"F32","shape":[0,1099511627776,)"
                                      R"(1099511627776],"data_offsets":[0,0]}})",
                                      {}));
  CHECK(error_of([&] { load_safetensors(path); }) ==
        "[safetensors] " + path +
            ": tensor \"z\" has shape [0,1099511627776,1099511627776], too many elements (at "
            "most 2^56, zero sizes counted as one)");
}

TEST_CASE("write_file_atomically names the file and the errno text, and keeps the old file") {
  TempDir dir;
  const std::string path = dir / "summary.json";
  const std::string old_text = "{\"status\": \"finished\"}";
  write_file_atomically(
      path, std::span(reinterpret_cast<const uint8_t*>(old_text.data()), old_text.size()));
  for (const std::string failing : {"file.create", "file.write", "file.fsync", "file.rename"}) {
    INFO(failing);
    FaultHook hook([&](const std::string& step) { return step == failing ? ENOSPC : 0; });
    const std::vector<uint8_t> text = {'{', '}'};
    const std::string message = error_of([&] { write_file_atomically(path, text, "trainer"); });
    CHECK(message.starts_with("[trainer] " + path + ": "));
    CHECK(message.find(": No space left on device") != std::string::npos);
    CHECK(read_bytes(path) == std::vector<uint8_t>(old_text.begin(), old_text.end()));
    CHECK(file_names(dir.path) == std::vector<std::string>{"summary.json"});
  }
}
