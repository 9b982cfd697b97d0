// Checkpoints: a safetensors file of named tensors (model parameters and optimizer state) and
// a JSON file of everything else a resumed run needs (step, schedule, loss scaler, RNG, data
// loader position, precision stack). Writes are atomic; reads validate before using a byte.
// The safetensors format and the atomic writes live in the tensor layer (tensor/safetensors.h);
// tests inject I/O faults with lattice::detail::set_write_fault_hook.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "optim/loss_scaler.h"
#include "optim/optimizer.h"
#include "tensor/safetensors.h"

namespace lattice::optim {

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

/// The step of the checkpoint at <path>.json, read before the run that loads it is set up (its
/// precision-stack schedule picks the stack of that step). Throws a one-line lattice::Error
/// naming the file when it cannot be read or has no valid step.
int64_t checkpoint_step(const std::string& path);

/// The caller's `extra` of the checkpoint at <path>.json (an empty object when it has none),
/// read before the run that loads it is set up (which tensors it holds may depend on it).
/// Throws a one-line lattice::Error naming the file when it cannot be read.
nlohmann::json checkpoint_extra(const std::string& path);

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

}  // namespace lattice::optim
