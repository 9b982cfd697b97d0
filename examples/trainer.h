// What every trainer shares: the common flags, the training loop (precision stack, optimizer,
// schedule, loss scaling, clipping, evaluation, checkpoints and resume) and its outputs — a
// progress line on stderr, metrics.jsonl, summary.json and checkpoints under --out.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "nn/module.h"
#include "tensor/precision_stack.h"

namespace lattice::examples {

struct TrainerFlags {
  std::string stack = "fp32";
  // STEP:SPEC items: from STEP on (steps taken so far), the run's stack is SPEC (Λw and Γopt
  // included); before the first item, `stack`
  std::string stack_schedule = {};
  // PATTERN:SPEC items: modules whose dotted name matches the glob run under SPEC instead
  std::vector<std::string> overrides = {};
  int64_t epochs = 1;
  int64_t steps = 0;  // when > 0, the run's length in optimizer steps (epochs is then ignored)
  int64_t batch = 64;
  double lr = 1e-3;
  double weight_decay = 0.0;
  std::string optimizer = "adam";
  std::string schedule = "constant";
  std::string loss_scale = "none";  // none | dynamic | a constant scale
  double clip = 0.0;                // global gradient-norm bound; 0: no clipping
  uint64_t seed = 0;
  std::string data = {};
  std::string out = {};
  int threads = 0;             // 0: OpenMP's default
  std::string device = "cpu";  // cpu or cuda: where the model, batches and updates live
  std::string gemm = "auto";   // auto | exact-fp32 | fp8-blocks (ops/quantized_gemm.h, GemmPath)
  std::string resume = {};
  int64_t checkpoint_every = 0;
  int64_t log_every = 50;
  int64_t accumulate = 1;  // micro-batches of `batch` per optimizer step (and rank)
  // QUANTIZER: the lattice each micro-batch's gradient is rounded onto before the ranks' sum
  // (data-parallel gradient compression, e.g. bf16:sr); empty: fp32, no rounding
  std::string allreduce_format = {};
  int64_t eval_every = 0;          // evaluate every N steps; 0: at each epoch's end
  int64_t eval_batches = 0;        // validation batches per evaluation; 0: all
  std::string diagnostics = {};    // instruments (diagnostics/diagnostics.h); empty: none
  int64_t diagnostics_every = 10;  // observe every N-th step
  int64_t trace_step = 0;          // log every op of this step, forward and backward; 0: none
  std::string ln_eps_policy = {};  // the LayerNorm-ε bump (forward-stability Algorithm 1)
  double ema = 0.0;                // decay of an exponential moving average of the weights; 0: none
};

/// A --stack-schedule: (first step, stack) items in increasing steps. Items are separated by
/// ';', or by ',' when a comma is followed by STEP: ("0:bf16,2000:fp16,4000:bf16"; specs with
/// commas of their own: "0:gemm=mxfp4,w=bf16;500:fp32"). Throws lattice::Error naming the item.
std::vector<std::pair<int64_t, PrecisionStack>> parse_stack_schedule(const std::string& text);

/// Registers the common flags on `app`; the values already in `flags` are the trainer's
/// defaults and show in --help.
void add_trainer_flags(CLI::App& app, TrainerFlags& flags);

struct Evaluation {
  double loss = 0.0;
  std::optional<double> accuracy = {};
  /// Further numbers of the task ({"perplexity": 41.2}), logged and summarised as val_<name>.
  std::map<std::string, double> extra = {};
};

struct TrainingJob {
  std::string name;  // "mnist": the progress prefix and summary's trainer
  nn::Module* model = nullptr;
  data::DataLoader* train = nullptr;
  /// The training loss of one batch (the loop runs it under the stack, in training mode).
  std::function<Tensor(const data::Batch&)> loss;
  /// Validation, run in eval mode without gradients after each epoch (or every --eval-every
  /// steps) and at the end; may be empty.
  std::function<Evaluation()> evaluate;
  /// Trainer-specific settings copied into summary.json ("model": "cnn", sizes, ...).
  nlohmann::json config = nlohmann::json::object();
  /// What throughput counts ("images", "tokens", ...; in the progress line and summary.json as
  /// <unit>_per_second) and how many of them a batch holds (default: its samples).
  std::string unit = "samples";
  std::function<int64_t(const data::Batch&)> items = {};
};

/// Trains `job` as `flags` say and writes its outputs. Returns the process exit status: 0 when
/// the run finished (a run whose loss diverged to NaN/inf also finishes, recorded as
/// "status": "diverged"). Throws lattice::Error on bad flags, files or data. With --ema the
/// evaluations use the averaged weights, and the model holds them when this returns (the
/// checkpoint keeps both).
int run_training(const TrainerFlags& flags, TrainingJob& job);

/// The device --device names. With cuda in a run of several ranks it also makes GPU (local rank
/// mod the machine's device count) this process's device.
Device trainer_device(const TrainerFlags& flags);

/// The batch's input and target moved to `device`.
data::Batch on_device(data::Batch batch, Device device);

/// Calls `visit` with the first `max_batches` batches (0: all) of an epoch of `loader`, from the
/// epoch's start every time, so that every evaluation sees the same batches, each moved to
/// `device`. Throws when the loader gives none.
void for_each_validation_batch(data::DataLoader& loader,
                               int64_t max_batches,
                               Device device,
                               const std::function<void(const data::Batch&)>& visit);

/// Mean cross entropy and accuracy of a classifier over the first `max_batches` batches of
/// an epoch of `loader` (0: every batch), on the device of the model's parameters.
Evaluation evaluate_classifier(nn::Module& model,
                               data::DataLoader& loader,
                               int64_t max_batches = 0);

/// Runs a trainer's main: parses argv with `app`, then `body`; --help and parse errors exit as
/// CLI11 does, a lattice::Error or other exception prints "<name>: <message>" and returns 1.
int trainer_main(const std::string& name,
                 CLI::App& app,
                 int argc,
                 char** argv,
                 const std::function<int()>& body);

}  // namespace lattice::examples
