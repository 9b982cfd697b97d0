// The training checkpoint (a safetensors file of tensors + JSON state), written and read
// through the tensor layer's safetensors and atomic-write primitives (tensor/safetensors.h).
#include "optim/checkpoint.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <limits>
#include <optional>
#include <set>
#include <span>
#include <vector>

#include "tensor/precision_stack.h"
#include "tensor/random.h"

namespace lattice::optim {

// Layout: <stem>.json names its tensor file, <stem>.<generation>.safetensors, and holds the
// file's CRC-32. A save writes a tensor file under a new generation, then replaces the JSON:
// that one rename commits the pair, and only then are older tensor files removed. A crash or
// an I/O error at any point before it leaves the previous JSON and the tensor file it names.

namespace {
constexpr const char* kOptimizerPrefix = "optimizer.";
constexpr int kCheckpointVersion = 1;

/// "<stem>.<digits>.safetensors" -> the generation; otherwise nullopt.
std::optional<uint64_t> tensor_generation(const std::string& file, const std::string& stem) {
  const std::string prefix = stem + ".", suffix = ".safetensors";
  if (file.size() <= prefix.size() + suffix.size() || !file.starts_with(prefix) ||
      !file.ends_with(suffix))
    return std::nullopt;
  const std::string digits =
      file.substr(prefix.size(), file.size() - prefix.size() - suffix.size());
  if (digits.size() > 18 ||
      !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  return std::stoull(digits);
}

/// Files in `directory` that earlier saves of `stem` left: its tensor files other than `keep`
/// (the old layout's <stem>.safetensors included) and temporary files of interrupted writes.
std::vector<std::filesystem::path> stale_files(const std::filesystem::path& directory,
                                               const std::string& stem,
                                               const std::string& keep) {
  std::vector<std::filesystem::path> stale;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(directory, error)) {
    const std::string name = entry.path().filename().string();
    auto ours = [&](const std::string& file) {
      return file == stem + ".safetensors" || tensor_generation(file, stem).has_value();
    };
    // write_atomically's temporary files: ".<file>.tmp.<pid>".
    const size_t tmp = name.rfind(".tmp.");
    const bool temporary =
        name.starts_with(".") && tmp != std::string::npos &&
        (ours(name.substr(1, tmp - 1)) || name.substr(1, tmp - 1) == stem + ".json");
    if ((name != keep && ours(name)) || temporary) stale.push_back(entry.path());
  }
  return stale;
}

/// <path>.json parsed; a file that is not JSON gives a discarded value (is_object() false).
nlohmann::json read_checkpoint_json(const std::string& json_path) {
  const std::vector<uint8_t> bytes = read_regular_file(json_path);
  return nlohmann::json::parse(bytes.begin(), bytes.end(), nullptr, false);
}

}  // namespace

void save_checkpoint(const std::string& path,
                     const NamedTensors& model,
                     const Optimizer& optimizer,
                     const TrainingState& state,
                     const LossScaler* scaler) {
  LATTICE_CHECK(state.step >= 0, "[checkpoint] ", path, ": step ", state.step, " is negative");
  const std::filesystem::path stem_path(path);
  std::filesystem::path directory = stem_path.parent_path();
  if (directory.empty()) directory = ".";
  const std::string stem = stem_path.filename().string();

  const OptimizerState optimizer_state = optimizer.state();
  NamedTensors tensors = model;
  for (const auto& [name, tensor] : optimizer_state.tensors)
    tensors.emplace_back(kOptimizerPrefix + name, tensor);
  // A generation above every tensor file present, so the one the current JSON names is never
  // overwritten.
  uint64_t generation = 1;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(directory, error))
    if (auto g = tensor_generation(entry.path().filename().string(), stem))
      generation = std::max(generation, *g + 1);
  const std::string tensor_name = concat(stem, ".", generation, ".safetensors");
  const std::string tensor_path = (directory / tensor_name).string();
  const std::vector<uint8_t> tensor_file =
      encode_safetensors(tensor_path, tensors, {{"format", "lattice"}});
  write_file_atomically(tensor_path, tensor_file, "checkpoint", "tensors");

  const RandomState rng = default_random_state();
  nlohmann::json json = {{"format", "lattice-checkpoint"},
                         {"version", kCheckpointVersion},
                         {"tensors", tensor_name},
                         {"tensors_crc32", crc32_hex(tensor_file.data(), tensor_file.size())},
                         {"step", state.step},
                         {"schedule", {{"spec", state.schedule}, {"position", state.step}}},
                         {"loss_scaler", scaler ? scaler->state() : nlohmann::json(nullptr)},
                         {"rng", {{"seed", rng.seed}, {"next_subsequence", rng.next_subsequence}}},
                         {"data_loader", state.data_loader},
                         {"precision_stack", to_string(optimizer.precision())},
                         {"optimizer", optimizer_state.scalars},
                         {"extra", state.extra}};
  const std::string text = json.dump(2) + "\n";
  try {
    write_file_atomically(path + ".json",
                          std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()),
                          "checkpoint", "json");
  } catch (const Error&) {
    ::unlink(tensor_path.c_str());  // never committed; the previous pair stays as it was
    throw;
  }
  // Committed. What is left of earlier saves goes; a failure here only leaves files that the
  // next save removes.
  if (detail::injected_fault("cleanup") != 0) return;
  for (const std::filesystem::path& file : stale_files(directory, stem, tensor_name))
    std::filesystem::remove(file, error);
  sync_directory(directory.string());
}

int64_t checkpoint_step(const std::string& path) {
  const std::string json_path = path + ".json";
  const nlohmann::json json = read_checkpoint_json(json_path);
  const bool valid = json.is_object() && json.contains("step") &&
                     json["step"].is_number_integer() &&
                     (json["step"].is_number_unsigned() || json["step"].get<int64_t>() >= 0) &&
                     json["step"].get<uint64_t>() <= uint64_t(std::numeric_limits<int64_t>::max());
  LATTICE_CHECK(valid, "[checkpoint] ", json_path,
                ": no valid \"step\" (expected an integer in [0, 2^63))");
  return json["step"].get<int64_t>();
}

nlohmann::json checkpoint_extra(const std::string& path) {
  const std::string json_path = path + ".json";
  const nlohmann::json json = read_checkpoint_json(json_path);
  LATTICE_CHECK(json.is_object(), "[checkpoint] ", json_path, ": not a JSON object");
  if (!json.contains("extra")) return nlohmann::json::object();
  LATTICE_CHECK(json["extra"].is_object(), "[checkpoint] ", json_path,
                ": \"extra\" is not a JSON object");
  return json["extra"];
}

TrainingState load_checkpoint(const std::string& path,
                              const NamedTensors& model,
                              Optimizer& optimizer,
                              LossScaler* scaler) {
  const std::string json_path = path + ".json";
  auto fail = [&](const auto&... parts) {
    throw Error(concat("[checkpoint] ", json_path, ": ", parts...));
  };
  const std::vector<uint8_t> json_bytes = read_regular_file(json_path);
  const nlohmann::json json =
      nlohmann::json::parse(json_bytes.begin(), json_bytes.end(), nullptr, false);
  if (json.is_discarded() || !json.is_object()) fail("not a JSON object (truncated?)");
  try {
    auto field = [&](const char* key) -> const nlohmann::json& {
      if (!json.contains(key)) fail("has no \"", key, "\"");
      return json.at(key);
    };
    // Every field is checked before anything is changed.
    if (field("format") != "lattice-checkpoint" || field("version") != kCheckpointVersion)
      fail("format ", field("format").dump(), " version ", field("version").dump(),
           "; expected \"lattice-checkpoint\" version ", kCheckpointVersion);
    const nlohmann::json& rng = field("rng");
    if (!rng.is_object() || !rng.contains("seed") || !rng["seed"].is_number_unsigned() ||
        !rng.contains("next_subsequence") || !rng["next_subsequence"].is_number_unsigned())
      fail("\"rng\" needs unsigned \"seed\" and \"next_subsequence\"");
    const nlohmann::json& step = field("step");
    if (!step.is_number_integer() ||
        (step.is_number_unsigned() &&
         step.get<uint64_t>() > uint64_t(std::numeric_limits<int64_t>::max())) ||
        (!step.is_number_unsigned() && step.get<int64_t>() < 0))
      fail("\"step\" is ", step.dump(), "; expected an integer in [0, 2^63)");
    const nlohmann::json& schedule = field("schedule");
    if (!schedule.is_object() || !schedule.contains("spec") || !schedule["spec"].is_string())
      fail("\"schedule\" needs a string \"spec\"");
    if (field("precision_stack") != to_string(optimizer.precision()))
      fail("precision stack ", field("precision_stack").dump(), " differs from the optimizer's \"",
           to_string(optimizer.precision()), "\"");
    if (!field("tensors_crc32").is_string()) fail("\"tensors_crc32\" is not a string");
    if (!field("optimizer").is_object()) fail("\"optimizer\" is not an object");
    if (json.contains("extra") && !json["extra"].is_object()) fail("\"extra\" is not an object");
    // The tensor file sits beside the JSON. (Checkpoints written before generations named
    // "<stem>.safetensors" here, so they load unchanged.)
    const nlohmann::json& tensors_field = field("tensors");
    const std::string tensor_name =
        tensors_field.is_string() ? tensors_field.get<std::string>() : std::string();
    if (tensor_name.empty() || tensor_name.find('/') != std::string::npos ||
        tensor_name.starts_with(".") || !tensor_name.ends_with(".safetensors"))
      fail("\"tensors\" is ", tensors_field.dump(),
           "; expected the name of a .safetensors file in the same directory");
    std::filesystem::path directory = std::filesystem::path(path).parent_path();
    const std::string tensor_path = (directory / tensor_name).string();

    const std::vector<uint8_t> tensor_bytes = read_regular_file(tensor_path);
    const std::string crc = crc32_hex(tensor_bytes.data(), tensor_bytes.size());
    if (crc != field("tensors_crc32").get<std::string>())
      fail("tensor file ", tensor_path, " has CRC-32 ", crc, ", the checkpoint recorded ",
           field("tensors_crc32").get<std::string>(),
           " (a corrupted file or one from another save)");
    SafetensorsFile file = load_safetensors(tensor_path);

    std::map<std::string, Tensor> by_name(file.tensors.begin(), file.tensors.end());
    OptimizerState optimizer_state{.tensors = {}, .scalars = field("optimizer")};
    std::set<std::string> model_names;
    for (const auto& [name, tensor] : model) {
      model_names.insert(name);
      auto it = by_name.find(name);
      if (it == by_name.end()) fail("tensor file has no model tensor \"", name, "\"");
      if (it->second.dtype() != tensor.dtype() || it->second.shape() != tensor.shape())
        fail("model tensor \"", name, "\" is ", dtype_name(it->second.dtype()), " ",
             it->second.shape(), " in the file; the model has ", dtype_name(tensor.dtype()), " ",
             tensor.shape());
    }
    const std::string prefix = kOptimizerPrefix;
    for (const auto& [name, tensor] : file.tensors) {
      if (name.rfind(prefix, 0) == 0) {
        optimizer_state.tensors.emplace_back(name.substr(prefix.size()), tensor);
      } else if (!model_names.count(name)) {
        fail("tensor file holds \"", name, "\", which the model does not have");
      }
    }
    LossScaler restored_scaler;
    if (scaler) {
      if (field("loss_scaler").is_null()) fail("has no loss scaler state");
      try {
        restored_scaler.load_state(field("loss_scaler"));
      } catch (const Error& e) {
        fail(e.what());
      }
    }
    try {
      optimizer.load_state(optimizer_state);  // validates fully before changing anything
    } catch (const Error& e) {
      fail(e.what());
    }
    // Nothing below can fail.
    for (const auto& [name, tensor] : model) tensor.copy_(by_name.at(name));
    if (scaler) *scaler = restored_scaler;
    set_default_random_state(
        RandomState{.seed = rng["seed"].get<uint64_t>(),
                    .next_subsequence = rng["next_subsequence"].get<uint64_t>()});
    TrainingState state;
    state.step = step.get<int64_t>();
    state.schedule = schedule["spec"].get<std::string>();
    state.data_loader = field("data_loader");
    state.extra = json.value("extra", nlohmann::json::object());
    return state;
  } catch (const nlohmann::json::exception& e) {
    // A check above missed a malformed field: still one line naming the file.
    throw Error(concat("[checkpoint] ", json_path, ": malformed field: ", e.what()));
  }
}

}  // namespace lattice::optim
