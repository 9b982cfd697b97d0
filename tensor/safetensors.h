// safetensors files of named tensors (a validating reader and an atomic writer), and the
// whole-file primitives they share with training checkpoints (optim/checkpoint.h): atomic
// replacement, a checked read of a regular file, CRC-32 and fault injection for tests.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "core/error.h"
#include "tensor/tensor.h"

namespace lattice {

/// Writes `tensors` (F32, F64, I64, I32, U8, BOOL; float32 tensors whose format is bf16 or fp16
/// as BF16 or F16; any layout) as a safetensors file readable by any safetensors reader: 8-byte
/// little-endian header length, JSON header padded to 8 bytes, data in the given order. The
/// header's __metadata__ holds `metadata` plus a CRC-32 of the data ("lattice.data_crc32"). Atomic:
/// temporary file in the same directory, fsync, rename, fsync of the directory. Throws
/// lattice::Error on a repeated name, an I/O failure or a bf16/fp16-labelled tensor holding a value
/// off that lattice.
void save_safetensors(const std::string& path,
                      const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata = {});

/// The bytes save_safetensors writes, for callers that write them themselves (a checkpoint
/// records their CRC-32); `path` only names the file in errors.
std::vector<uint8_t> encode_safetensors(const std::string& path,
                                        const NamedTensors& tensors,
                                        const std::map<std::string, std::string>& metadata);

struct SafetensorsFile {
  NamedTensors tensors;  // in data order
  std::map<std::string, std::string> metadata;
};

/// Reads a safetensors file after checking the header length, JSON, dtypes, shapes against
/// data_offsets, offsets within the file without holes or overlaps, the file size and (when
/// present) the data CRC. Each tensor keeps the file's dtype; BF16 and F16 become float32
/// tensors of those values with format bf16 or fp16 (exact). Throws a one-line lattice::Error
/// naming the file and the first problem.
SafetensorsFile load_safetensors(const std::string& path);

/// Replaces `path` with `bytes` so that a crash leaves the old file or the new one, never a
/// mix: a temporary file in the same directory, fsync, rename, fsync of the directory. Throws a
/// one-line lattice::Error "[op] <path>: <step> failed: <errno text>" and leaves the old file.
/// `fault_step` names the steps for the fault hook ("<fault_step>.create", ".write", ...).
void write_file_atomically(const std::string& path,
                           std::span<const uint8_t> bytes,
                           const std::string& op = "checkpoint",
                           const std::string& fault_step = "file");

/// The bytes of the regular file `path`. Throws "[<op>] <path>: cannot open: ..." (or stat,
/// read, "is a directory; expected a <op> file").
std::vector<uint8_t> read_regular_file(const std::string& path,
                                       const std::string& op = "checkpoint");

/// The most elements one tensor of a file may declare (safetensors, .npy): far beyond any real
/// file, and x16 bytes still fits an int64.
constexpr uint64_t kMaxFileElements = uint64_t(1) << 56;

/// Throws the one-line error of a bad tensor file: "[<op>] <path>: <parts...>".
struct FileProblem {
  const char* op;
  const std::string& path;
  template <typename... Parts>
  [[noreturn]] void operator()(const Parts&... parts) const {
    throw Error(concat("[", op, "] ", path, ": ", parts...));
  }
};

/// The CRC-32 of `size` bytes as 8 lowercase hex digits.
std::string crc32_hex(const uint8_t* data, size_t size);

/// fsync of a directory, best effort: some file systems refuse it, and a rename has happened.
void sync_directory(const std::string& directory);

namespace detail {
/// Fault injection for tests: when set, called before each I/O step of an atomic write with the
/// step's name ("tensors.create", ".write", ".fsync", ".rename"; "json.*" for the checkpoint
/// JSON; "file.*" for write_file_atomically) and before save_checkpoint's "cleanup". A nonzero
/// return fails that step with that errno (the real error path runs); an exception thrown from
/// the hook stands for the process dying there (nothing is cleaned up). Empty: no faults.
using WriteFaultHook = std::function<int(const std::string& step)>;
void set_write_fault_hook(WriteFaultHook hook);
/// The hook's verdict on `step`: 0 (go on, also when no hook is set) or the errno to fail with.
int injected_fault(const std::string& step);
}  // namespace detail

}  // namespace lattice
