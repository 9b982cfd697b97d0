// safetensors writer and validating reader, atomic file replacement and checked reads.
#include "tensor/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <vector>

#include "core/error.h"

namespace lattice {
namespace {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; a big-endian host needs byte swaps here");

constexpr const char* kCrcKey = "lattice.data_crc32";
constexpr uint64_t kMaxHeaderBytes = uint64_t(100) << 20;  // safetensors' own limit

/// A safetensors dtype and how a Tensor holds it: in a dtype of its own, or (BF16, F16) as
/// float32 values labelled with that lattice, which the file stores as 16-bit codes.
struct FileDType {
  const char* name;
  DType dtype;
  const Format* lattice;  // BF16, F16: the float32 values' format; null for the others
  uint64_t file_bytes() const {
    return lattice ? 2 : uint64_t(element_size(dtype));
  }
};
const FileDType kFileDTypes[] = {
    {"F32", DType::float32, nullptr}, {"F64", DType::float64, nullptr},
    {"I64", DType::int64, nullptr},   {"I32", DType::int32, nullptr},
    {"U8", DType::uint8, nullptr},    {"BOOL", DType::boolean, nullptr},
    {"BF16", DType::float32, &bf16},  {"F16", DType::float32, &fp16}};

/// The file dtype of `t`: BF16/F16 for float32 tensors labelled bf16/fp16, else its dtype's.
const FileDType& file_dtype_of(const Tensor& t) {
  for (const FileDType& d : kFileDTypes)
    if (d.lattice && t.dtype() == DType::float32 && t.format() == *d.lattice) return d;
  for (const FileDType& d : kFileDTypes)
    if (!d.lattice && d.dtype == t.dtype()) return d;
  throw Error(concat("[safetensors] dtype ", dtype_name(t.dtype()), " has no safetensors name"));
}

detail::WriteFaultHook& fault_hook() {
  static detail::WriteFaultHook hook;
  return hook;
}

/// Runs the system call `call` unless the fault hook fails `step`: then returns -1 with errno set
/// to the hook's value, so the caller's real error path runs.
template <typename Call>
auto io_step(const std::string& step, Call call) -> decltype(call()) {
  if (const int error = detail::injected_fault(step); error != 0) {
    errno = error;
    return -1;
  }
  return call();
}

struct Entry {
  std::string name;
  const FileDType* dtype;
  Shape shape;
  uint64_t begin, end;
};

}  // namespace

std::string crc32_hex(const uint8_t* data, size_t size) {
  const unsigned long crc = crc32_z(crc32_z(0L, Z_NULL, 0), data, size);
  char text[9];
  std::snprintf(text, sizeof text, "%08lx", crc & 0xFFFFFFFFul);
  return text;
}

void sync_directory(const std::string& directory) {
  const int fd = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

int detail::injected_fault(const std::string& step) {
  return fault_hook() ? fault_hook()(step) : 0;
}

void detail::set_write_fault_hook(WriteFaultHook hook) {
  fault_hook() = std::move(hook);
}

void write_file_atomically(const std::string& path,
                           std::span<const uint8_t> bytes,
                           const std::string& op,
                           const std::string& fault_step) {
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
  const int fd = io_step(fault_step + ".create", [&] {
    return ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  });
  if (fd < 0) fail("cannot create temporary file");
  size_t written = 0;
  while (written < bytes.size()) {
    const ssize_t n = io_step(fault_step + ".write", [&] {
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
  if (io_step(fault_step + ".fsync", [&] { return ::fsync(fd); }) != 0) {
    const int error = errno;
    ::close(fd);
    errno = error;
    fail("fsync failed");
  }
  if (::close(fd) != 0) fail("close failed");
  if (io_step(fault_step + ".rename",
              [&] { return std::rename(temporary.c_str(), path.c_str()); }) != 0)
    fail("rename failed");
  sync_directory(directory.string());
}

std::vector<uint8_t> read_regular_file(const std::string& path, const std::string& op) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  LATTICE_CHECK(fd >= 0, "[", op, "] ", path, ": cannot open: ", std::strerror(errno));
  struct FdCloser {
    int fd;
    ~FdCloser() {
      ::close(fd);
    }
  } closer{fd};
  struct stat info {};
  LATTICE_CHECK(::fstat(fd, &info) == 0, "[", op, "] ", path,
                ": cannot stat: ", std::strerror(errno));
  // A directory "opens" fine and reports a nonsense size; refuse anything but a regular file.
  LATTICE_CHECK(S_ISREG(info.st_mode), "[", op, "] ", path, ": is ",
                S_ISDIR(info.st_mode) ? "a directory" : "not a regular file", "; expected a ", op,
                " file");
  std::vector<uint8_t> bytes(static_cast<size_t>(info.st_size));
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::read(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    LATTICE_CHECK(n >= 0, "[", op, "] ", path, ": read failed: ", std::strerror(errno));
    if (n == 0) break;  // shrank while reading: the size check of whoever parses it reports it
    done += size_t(n);
  }
  bytes.resize(done);
  return bytes;
}

std::vector<uint8_t> encode_safetensors(const std::string& path,
                                        const NamedTensors& tensors,
                                        const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  std::vector<uint8_t> data;
  for (const auto& [name, tensor] : tensors) {
    LATTICE_CHECK(tensor.defined(), "[safetensors] ", path, ": tensor \"", name, "\" is undefined");
    LATTICE_CHECK(name != "__metadata__" && !header.contains(name), "[safetensors] ", path,
                  ": tensor name \"", name, "\" repeats or is reserved");
    const Tensor t = tensor.contiguous().to(Device::cpu);
    const FileDType& dtype = file_dtype_of(t);
    const uint64_t offset = data.size();
    if (dtype.lattice) {
      // The format is a label its producer asserts: a value off the lattice would be rounded
      // by the 16-bit code, so it is refused instead.
      const float* values = t.data<float>();
      for (int64_t i = 0; i < t.numel(); ++i) {
        const uint32_t code = encode(*dtype.lattice, values[i]);
        const float back = decode(*dtype.lattice, code);
        LATTICE_CHECK(std::bit_cast<uint32_t>(back) == std::bit_cast<uint32_t>(values[i]) ||
                          (std::isnan(back) && std::isnan(values[i])),
                      "[safetensors] ", path, ": tensor \"", name, "\" is labelled ",
                      format_name(*dtype.lattice), " but element ", i, " (", values[i],
                      ") is not a ", format_name(*dtype.lattice), " value");
        data.push_back(uint8_t(code));
        data.push_back(uint8_t(code >> 8));
      }
    } else {
      const auto* begin = static_cast<const uint8_t*>(t.data_ptr());
      data.insert(data.end(), begin, begin + t.numel() * element_size(t.dtype()));
    }
    header[name] = {{"dtype", dtype.name},
                    {"shape", std::vector<int64_t>(t.shape().begin(), t.shape().end())},
                    {"data_offsets", {offset, uint64_t(data.size())}}};
  }
  nlohmann::json meta = nlohmann::json::object();
  for (const auto& [key, value] : metadata) meta[key] = value;
  meta[kCrcKey] = crc32_hex(data.data(), data.size());
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

void save_safetensors(const std::string& path,
                      const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata) {
  write_file_atomically(path, encode_safetensors(path, tensors, metadata), "safetensors",
                        "tensors");
}

SafetensorsFile load_safetensors(const std::string& path) {
  const FileProblem fail{"safetensors", path};
  const std::vector<uint8_t> file = read_regular_file(path, "safetensors");
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
    const FileDType* dtype = nullptr;
    for (const FileDType& d : kFileDTypes)
      if (dtype_text == d.name) dtype = &d;
    if (!dtype)
      fail("tensor \"", name, "\" has dtype \"", dtype_text,
           "\"; expected F32, F64, I64, I32, U8, BOOL, BF16 or F16");
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
      if (std::max<uint64_t>(s, 1) > kMaxFileElements / stride_span)
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
    const uint64_t expected = numel * dtype->file_bytes();
    if (end < begin || end - begin != expected)
      fail("tensor \"", name, "\" has data_offsets [", begin, ", ", end, "] (", end - begin,
           " bytes); shape ", value["shape"].dump(), " ", dtype_text, " needs ", expected);
    if (end > data_size)
      fail("tensor \"", name, "\" ends at byte ", end, " of a ", data_size,
           "-byte data section (truncated file?)");
    entries.push_back({name, dtype, shape, begin, end});
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
    const std::string actual = crc32_hex(data, data_size);
    if (actual != crc->second)
      fail("data CRC-32 is ", actual, ", header says ", crc->second, " (corrupted file)");
  }
  for (const Entry& e : entries) {
    Tensor t = empty(e.shape, e.dtype->dtype);
    if (e.dtype->lattice) {
      // Every 16-bit code is a bf16/fp16 value (NaN and inf included): decoding is exact.
      float* values = t.data<float>();
      for (int64_t i = 0; i < t.numel(); ++i) {
        const uint8_t* code = data + e.begin + 2 * uint64_t(i);
        values[i] = decode(*e.dtype->lattice, uint32_t(code[0]) | uint32_t(code[1]) << 8);
      }
      t = t.with_format(*e.dtype->lattice);
    } else if (e.end > e.begin) {
      std::memcpy(t.data_ptr(), data + e.begin, e.end - e.begin);
    }
    if (e.dtype->dtype == DType::boolean) {
      const auto* bytes = data + e.begin;
      for (uint64_t i = 0; i < e.end - e.begin; ++i)
        if (bytes[i] > 1) fail("BOOL tensor \"", e.name, "\" holds byte ", int(bytes[i]));
    }
    out.tensors.emplace_back(e.name, t);
  }
  return out;
}

}  // namespace lattice
