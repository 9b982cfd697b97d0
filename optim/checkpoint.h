// Checkpoints: a safetensors file of named tensors (model parameters and optimizer state) and
// a JSON file of everything else a resumed run needs (step, schedule, loss scaler, RNG, data
// loader position, precision stack). Writes are atomic; reads validate before using a byte.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <span>
#include <string>

#include "optim/loss_scaler.h"
#include "optim/optimizer.h"

namespace lattice::optim {

/// Writes `tensors` (F32, F64, I64, I32, U8, BOOL; any layout) as a safetensors file readable
/// by any safetensors reader: 8-byte little-endian header length, JSON header padded to 8
/// bytes, data in the given order. The header's __metadata__ holds `metadata` plus a CRC-32 of
/// the data ("lattice.data_crc32"). Atomic: temporary file in the same directory, fsync,
/// rename, fsync of the directory. Throws lattice::Error on a repeated name or an I/O failure.
void save_safetensors(const std::string& path,
                      const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata = {});

/// Replaces `path` with `bytes` so that a crash leaves the old file or the new one, never a
/// mix: a temporary file in the same directory, fsync, rename, fsync of the directory. Throws a
/// one-line lattice::Error "[op] <path>: <step> failed: <errno text>" and leaves the old file.
void write_file_atomically(const std::string& path,
                           std::span<const uint8_t> bytes,
                           const std::string& op = "checkpoint");

struct SafetensorsFile {
  NamedTensors tensors;  // in data order
  std::map<std::string, std::string> metadata;
};

/// Reads a safetensors file after checking the header length, JSON, dtypes, shapes against
/// data_offsets, offsets within the file without holes or overlaps, the file size and (when
/// present) the data CRC. Throws a one-line lattice::Error naming the file and the first
/// problem.
SafetensorsFile load_safetensors(const std::string& path);

/// What a trainer stores beside the tensors. The data loader position is opaque JSON the
/// caller supplies and gets back.
struct TrainingState {
  int64_t step = 0;
  std::string schedule = "constant";  // parse_schedule spec; its position is `step`
  nlohmann::json data_loader = nlohmann::json::object();
  nlohmann::json extra = nlohmann::json::object();  // anything else the caller wants back
};

/// Writes the tensors (model tensors under their own names, optimizer tensors under
/// "optimizer.<param>.<buffer>") to a new file <path>.<generation>.safetensors, then replaces
/// <path>.json (state, optimizer scalars, loss scaler, default RNG state, precision stack spec,
/// the tensor file's name and CRC-32). That rename commits the checkpoint: until it happens, a
/// crash or an I/O error (thrown as lattice::Error) leaves the previous checkpoint loadable.
/// Afterwards the older tensor files and temporary files of interrupted saves are removed.
void save_checkpoint(const std::string& path,
                     const NamedTensors& model,
                     const Optimizer& optimizer,
                     const TrainingState& state,
                     const LossScaler* scaler = nullptr);

/// Restores a checkpoint written by save_checkpoint from <path>.json and the tensor file it
/// names (checkpoints from before generations name <path>.safetensors and load too): copies the
/// model tensors into `model` (names, dtypes and shapes must match), loads the optimizer state, the
/// loss scaler (when given) and the default RNG state, and returns the training state. Everything
/// is validated before anything is changed; throws a one-line lattice::Error naming the file and
/// problem.
TrainingState load_checkpoint(const std::string& path,
                              const NamedTensors& model,
                              Optimizer& optimizer,
                              LossScaler* scaler = nullptr);

namespace detail {
/// Fault injection for tests: when set, called before each I/O step of an atomic write with the
/// step's name ("tensors.create", ".write", ".fsync", ".rename"; "json.*" for the checkpoint
/// JSON; "file.*" for write_file_atomically) and before save_checkpoint's "cleanup". A nonzero
/// return fails that step with that errno (the real error path runs); an exception thrown from
/// the hook stands for the process dying there (nothing is cleaned up). Empty: no faults.
using CheckpointFaultHook = std::function<int(const std::string& step)>;
void set_checkpoint_fault_hook(CheckpointFaultHook hook);
}  // namespace detail

}  // namespace lattice::optim
