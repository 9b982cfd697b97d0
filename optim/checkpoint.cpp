// safetensors writer and validating reader, atomic file replacement, and the training
// checkpoint (tensors + JSON state) built on them.
#include "optim/checkpoint.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <set>
#include <span>
#include <sstream>
#include <vector>

#include "tensor/precision_stack.h"
#include "tensor/random.h"

namespace lattice::optim {
namespace {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; a big-endian host needs byte swaps here");

constexpr const char* kCrcKey = "lattice.data_crc32";
constexpr uint64_t kMaxHeaderBytes = uint64_t(100) << 20;  // safetensors' own limit
// Elements of one tensor: far beyond any real file, and x16 bytes still fits an int64.
constexpr uint64_t kMaxElements = uint64_t(1) << 56;

struct DTypeName {
  DType dtype;
  const char* name;
};
constexpr DTypeName kDTypeNames[] = {{DType::float32, "F32"}, {DType::float64, "F64"},
                                     {DType::int64, "I64"},   {DType::int32, "I32"},
                                     {DType::uint8, "U8"},    {DType::boolean, "BOOL"}};

const char* safetensors_dtype(DType dtype) {
  for (const DTypeName& d : kDTypeNames)
    if (d.dtype == dtype) return d.name;
  throw Error(concat("[safetensors] dtype ", dtype_name(dtype), " has no safetensors name"));
}

std::string crc_hex(const uint8_t* data, size_t size) {
  const unsigned long crc = crc32_z(crc32_z(0L, Z_NULL, 0), data, size);
  char text[9];
  std::snprintf(text, sizeof text, "%08lx", crc & 0xFFFFFFFFul);
  return text;
}

/// Best effort: some file systems refuse fsync on directories, and the rename has happened.
void sync_directory(const std::string& directory) {
  const int fd = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

detail::CheckpointFaultHook& fault_hook() {
  static detail::CheckpointFaultHook hook;
  return hook;
}

/// Runs the system call `call` unless the fault hook fails `step`: then returns -1 with errno set
/// to the hook's value, so the caller's real error path runs.
template <typename Call>
auto io_step(const std::string& step, Call call) -> decltype(call()) {
  if (fault_hook())
    if (const int error = fault_hook()(step); error != 0) {
      errno = error;
      return -1;
    }
  return call();
}

/// Replaces `path` with `bytes` so that a crash leaves either the old or the new file: write a
/// temporary file in the same directory, fsync it, rename it over `path`, fsync the directory.
/// `step` names the steps for the fault hook ("<step>.create", ".write", ".fsync", ".rename").
void write_atomically(const std::string& path,
                      std::span<const uint8_t> bytes,
                      const std::string& op,
                      const std::string& step) {
  const std::filesystem::path target(path);
  std::filesystem::path directory = target.parent_path();
  if (directory.empty()) directory = ".";
  const std::string temporary =
      (directory / concat(".", target.filename().string(), ".tmp.", ::getpid())).string();
  // errno is read before anything else can change it.
  auto fail = [&](const char* what) {
    const std::string message = concat("[", op, "] ", path, ": ", what, ": ", std::strerror(errno),
                                       " (via ", temporary, ")");
    ::unlink(temporary.c_str());
    throw Error(message);
  };
  const int fd = io_step(step + ".create", [&] {
    return ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  });
  if (fd < 0) fail("cannot create temporary file");
  size_t written = 0;
  while (written < bytes.size()) {
    const ssize_t n = io_step(step + ".write", [&] {
      return ::write(fd, bytes.data() + written, bytes.size() - written);
    });
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0) errno = ENOSPC;  // a write that makes no progress: the device is full
      const int error = errno;
      ::close(fd);
      errno = error;
      fail("write failed");
    }
    written += size_t(n);
  }
  if (io_step(step + ".fsync", [&] { return ::fsync(fd); }) != 0) {
    const int error = errno;
    ::close(fd);
    errno = error;
    fail("fsync failed");
  }
  if (::close(fd) != 0) fail("close failed");
  if (io_step(step + ".rename", [&] { return std::rename(temporary.c_str(), path.c_str()); }) != 0)
    fail("rename failed");
  sync_directory(directory.string());
}

std::vector<uint8_t> read_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  LATTICE_CHECK(fd >= 0, "[checkpoint] ", path, ": cannot open: ", std::strerror(errno));
  struct FdCloser {
    int fd;
    ~FdCloser() {
      ::close(fd);
    }
  } closer{fd};
  struct stat info {};
  LATTICE_CHECK(::fstat(fd, &info) == 0, "[checkpoint] ", path,
                ": cannot stat: ", std::strerror(errno));
  // A directory "opens" fine and reports a nonsense size; refuse anything but a regular file.
  LATTICE_CHECK(S_ISREG(info.st_mode), "[checkpoint] ", path, ": is ",
                S_ISDIR(info.st_mode) ? "a directory" : "not a regular file",
                "; expected a checkpoint file");
  std::vector<uint8_t> bytes(static_cast<size_t>(info.st_size));
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::read(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    LATTICE_CHECK(n >= 0, "[checkpoint] ", path, ": read failed: ", std::strerror(errno));
    if (n == 0) break;  // shrank while reading: the size check of whoever parses it reports it
    done += size_t(n);
  }
  bytes.resize(done);
  return bytes;
}

/// The one-line error of a bad safetensors file.
struct FileProblem {
  const std::string& path;
  template <typename... Parts>
  [[noreturn]] void operator()(const Parts&... parts) const {
    throw Error(concat("[safetensors] ", path, ": ", parts...));
  }
};

struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin, end;
};

}  // namespace

namespace {

/// The bytes of a safetensors file (see save_safetensors); `path` only names it in errors.
std::vector<uint8_t> safetensors_file(const std::string& path,
                                      const NamedTensors& tensors,
                                      const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  std::vector<Tensor> packed;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    LATTICE_CHECK(tensor.defined(), "[safetensors] ", path, ": tensor \"", name, "\" is undefined");
    LATTICE_CHECK(name != "__metadata__" && !header.contains(name), "[safetensors] ", path,
                  ": tensor name \"", name, "\" repeats or is reserved");
    const Tensor t = tensor.contiguous();
    const uint64_t bytes = uint64_t(t.numel()) * uint64_t(element_size(t.dtype()));
    header[name] = {{"dtype", safetensors_dtype(t.dtype())},
                    {"shape", std::vector<int64_t>(t.shape().begin(), t.shape().end())},
                    {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    packed.push_back(t);
  }
  std::vector<uint8_t> data;
  data.reserve(offset);
  for (const Tensor& t : packed) {
    const auto* begin = static_cast<const uint8_t*>(t.data_ptr());
    data.insert(data.end(), begin, begin + t.numel() * element_size(t.dtype()));
  }
  nlohmann::json meta = nlohmann::json::object();
  for (const auto& [key, value] : metadata) meta[key] = value;
  meta[kCrcKey] = crc_hex(data.data(), data.size());
  header["__metadata__"] = meta;
  std::string header_text = header.dump();
  header_text.append((8 - header_text.size() % 8) % 8, ' ');  // data starts 8-byte aligned

  const uint64_t header_length = header_text.size();
  std::vector<uint8_t> file(static_cast<size_t>(8 + header_length + data.size()));
  std::memcpy(file.data(), &header_length, 8);
  std::memcpy(file.data() + 8, header_text.data(), header_length);
  if (!data.empty()) std::memcpy(file.data() + 8 + header_length, data.data(), data.size());
  return file;
}

}  // namespace

void write_file_atomically(const std::string& path,
                           std::span<const uint8_t> bytes,
                           const std::string& op) {
  write_atomically(path, bytes, op, "file");
}

void detail::set_checkpoint_fault_hook(CheckpointFaultHook hook) {
  fault_hook() = std::move(hook);
}

void save_safetensors(const std::string& path,
                      const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata) {
  write_atomically(path, safetensors_file(path, tensors, metadata), "safetensors", "tensors");
}

SafetensorsFile load_safetensors(const std::string& path) {
  const FileProblem fail{path};
  const std::vector<uint8_t> file = read_file(path);
  if (file.size() < 8) fail("file is ", file.size(), " bytes, too short for the header length");
  uint64_t header_length = 0;
  std::memcpy(&header_length, file.data(), 8);
  if (header_length == 0 || header_length > kMaxHeaderBytes || header_length > file.size() - 8)
    fail("header length ", header_length, " does not fit the file's ", file.size() - 8,
         " bytes after the length field (truncated or not a safetensors file)");
  const std::string header_text(reinterpret_cast<const char*>(file.data() + 8), header_length);
  const nlohmann::json header = nlohmann::json::parse(header_text, nullptr, false);
  if (header.is_discarded() || !header.is_object()) fail("header is not a JSON object");
  const uint8_t* data = file.data() + 8 + header_length;
  const uint64_t data_size = file.size() - 8 - header_length;

  SafetensorsFile out;
  std::vector<Entry> entries;
  for (const auto& [name, value] : header.items()) {
    if (name == "__metadata__") {
      if (!value.is_object()) fail("__metadata__ is not an object");
      for (const auto& [key, text] : value.items()) {
        if (!text.is_string()) fail("__metadata__ value \"", key, "\" is not a string");
        out.metadata[key] = text.get<std::string>();
      }
      continue;
    }
    if (!value.is_object()) fail("entry \"", name, "\" is not an object");
    if (!value.contains("dtype") || !value["dtype"].is_string())
      fail("tensor \"", name, "\" has no dtype");
    const std::string dtype_text = value["dtype"].get<std::string>();
    const DTypeName* dtype = nullptr;
    for (const DTypeName& d : kDTypeNames)
      if (dtype_text == d.name) dtype = &d;
    if (!dtype)
      fail("tensor \"", name, "\" has dtype \"", dtype_text,
           "\"; expected F32, F64, I64, I32, U8 or BOOL");
    if (!value.contains("shape") || !value["shape"].is_array())
      fail("tensor \"", name, "\" has no shape array");
    Shape shape;
    // The strides multiply the sizes with zeros counted as ones (tensor/shape.cpp), so a zero
    // size does not make the others harmless: bound that product, not just the element count.
    uint64_t numel = 1, stride_span = 1;
    for (const nlohmann::json& size : value["shape"]) {
      if (!size.is_number_unsigned() || size.get<uint64_t>() > (uint64_t(1) << 40))
        fail("tensor \"", name, "\" has shape ", value["shape"].dump(),
             "; expected sizes in [0, 2^40]");
      const uint64_t s = size.get<uint64_t>();
      if (std::max<uint64_t>(s, 1) > kMaxElements / stride_span)
        fail("tensor \"", name, "\" has shape ", value["shape"].dump(),
             ", too many elements (at most 2^56, zero sizes counted as one)");
      stride_span *= std::max<uint64_t>(s, 1);
      numel *= s;
      shape.push_back(int64_t(s));
    }
    const nlohmann::json& offsets =
        value.contains("data_offsets") ? value["data_offsets"] : nlohmann::json();
    if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
        !offsets[1].is_number_unsigned())
      fail("tensor \"", name, "\" has no data_offsets [begin, end]");
    const uint64_t begin = offsets[0].get<uint64_t>(), end = offsets[1].get<uint64_t>();
    const uint64_t expected = numel * uint64_t(element_size(dtype->dtype));
    if (end < begin || end - begin != expected)
      fail("tensor \"", name, "\" has data_offsets [", begin, ", ", end, "] (", end - begin,
           " bytes); shape ", value["shape"].dump(), " ", dtype_text, " needs ", expected);
    if (end > data_size)
      fail("tensor \"", name, "\" ends at byte ", end, " of a ", data_size,
           "-byte data section (truncated file?)");
    entries.push_back({name, dtype->dtype, shape, begin, end});
  }
  std::sort(entries.begin(), entries.end(),
            [](const Entry& a, const Entry& b) { return a.begin < b.begin; });
  uint64_t covered = 0;
  for (const Entry& e : entries) {
    if (e.begin < covered) fail("tensor \"", e.name, "\" overlaps the tensor before it");
    if (e.begin > covered) fail("bytes ", covered, " to ", e.begin, " belong to no tensor");
    covered = e.end;
  }
  if (covered != data_size)
    fail("data section is ", data_size, " bytes but the tensors cover ", covered);
  if (auto crc = out.metadata.find(kCrcKey); crc != out.metadata.end()) {
    const std::string actual = crc_hex(data, data_size);
    if (actual != crc->second)
      fail("data CRC-32 is ", actual, ", header says ", crc->second, " (corrupted file)");
  }
  for (const Entry& e : entries) {
    Tensor t = empty(e.shape, e.dtype);
    if (e.end > e.begin) std::memcpy(t.data_ptr(), data + e.begin, e.end - e.begin);
    if (e.dtype == DType::boolean) {
      const auto* bytes = data + e.begin;
      for (uint64_t i = 0; i < e.end - e.begin; ++i)
        if (bytes[i] > 1) fail("BOOL tensor \"", e.name, "\" holds byte ", int(bytes[i]));
    }
    out.tensors.emplace_back(e.name, t);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Training checkpoints
//
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
      safetensors_file(tensor_path, tensors, {{"format", "lattice"}});
  write_atomically(tensor_path, tensor_file, "checkpoint", "tensors");

  const RandomState rng = default_random_state();
  nlohmann::json json = {{"format", "lattice-checkpoint"},
                         {"version", kCheckpointVersion},
                         {"tensors", tensor_name},
                         {"tensors_crc32", crc_hex(tensor_file.data(), tensor_file.size())},
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
    write_atomically(path + ".json",
                     std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()),
                     "checkpoint", "json");
  } catch (const Error&) {
    ::unlink(tensor_path.c_str());  // never committed; the previous pair stays as it was
    throw;
  }
  // Committed. What is left of earlier saves goes; a failure here only leaves files that the
  // next save removes.
  if (io_step("cleanup", [] { return 0; }) != 0) return;
  for (const std::filesystem::path& file : stale_files(directory, stem, tensor_name))
    std::filesystem::remove(file, error);
  sync_directory(directory.string());
}

TrainingState load_checkpoint(const std::string& path,
                              const NamedTensors& model,
                              Optimizer& optimizer,
                              LossScaler* scaler) {
  const std::string json_path = path + ".json";
  auto fail = [&](const auto&... parts) {
    throw Error(concat("[checkpoint] ", json_path, ": ", parts...));
  };
  const std::vector<uint8_t> json_bytes = read_file(json_path);
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

    const std::vector<uint8_t> tensor_bytes = read_file(tensor_path);
    const std::string crc = crc_hex(tensor_bytes.data(), tensor_bytes.size());
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
