// The shared training loop and its outputs (see trainer.h).
#include "examples/trainer.h"

#include <omp.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <optional>
#include <span>

#include "autograd/autograd.h"
#include "core/version.h"
#include "diagnostics/diagnostics.h"
#include "diagnostics/stability_instrument.h"
#include "distributed/communicator.h"
#include "distributed/gradient_sum.h"
#include "kernels/device_memory.h"
#include "ops/ops.h"
#include "ops/quantized_gemm.h"
#include "optim/checkpoint.h"
#include "optim/loss_scaler.h"
#include "optim/optimizer.h"
#include "optim/schedule.h"
#include "tensor/design_space.h"
#include "tensor/precision_stack.h"
#include "tensor/random.h"
#include "tensor/safetensors.h"

namespace lattice::examples {

namespace {

using Clock = std::chrono::steady_clock;

// A run has diverged (it stops, "status": "diverged") when its loss is non-finite, or above
// kExplodedLoss x its first finite loss, for kDivergedSteps steps in a row. A loss that has
// grown 10^4-fold without overflowing (Adam at lr 1e6: 6e21) is as dead as a NaN, and no
// recoverable spike of a cross entropy or MSE gets that far; a run of steps, not one, so that a
// single bad batch does not end a run. A first loss <= 0 disables the growth test.
constexpr int64_t kDivergedSteps = 10;
constexpr double kExplodedLoss = 1e4;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

/// The optimizer of --optimizer over the model's parameters; a parameter of a module that
/// --override gives its own stack lives on that stack's Λw (the innermost such module's).
std::unique_ptr<optim::Optimizer> make_optimizer(const TrainerFlags& flags,
                                                 nn::Module& model,
                                                 const PrecisionStack& stack) {
  auto groups = optim::one_group(model.named_parameters(), flags.lr, flags.weight_decay);
  std::vector<std::pair<std::string, Quantizer>> overridden;  // module prefix, its Λw
  for (const auto& [name, module] : model.named_modules())
    if (module->precision())
      overridden.emplace_back(name.empty() ? "" : name + ".", module->precision()->weights);
  for (optim::NamedParameter& p : groups[0].params) {
    size_t longest = 0;
    for (const auto& [prefix, weights] : overridden)
      if (p.name.starts_with(prefix) && prefix.size() >= longest) {
        longest = prefix.size();
        p.weights = weights;
      }
  }
  if (flags.optimizer == "adam")
    return std::make_unique<optim::Adam>(groups, optim::AdamOptions{}, stack);
  if (flags.optimizer == "adamw")
    return std::make_unique<optim::AdamW>(groups, optim::AdamOptions{}, stack);
  if (flags.optimizer == "sgd")
    return std::make_unique<optim::Sgd>(groups, optim::SgdOptions{.momentum = 0.9}, stack);
  if (flags.optimizer == "stablespam")
    return std::make_unique<optim::StableSpam>(groups, optim::StableSpamOptions{}, stack);
  throw Error(concat("[trainer] --optimizer \"", flags.optimizer,
                     "\": expected adam, adamw, sgd or stablespam"));
}

optim::LossScaler make_loss_scaler(const std::string& spec) {
  if (spec == "none") return optim::LossScaler();
  if (spec == "dynamic") return optim::LossScaler::dynamic();
  char* end = nullptr;
  const double scale = std::strtod(spec.c_str(), &end);
  LATTICE_CHECK(
      !spec.empty() && end == spec.c_str() + spec.size() && std::isfinite(scale) && scale > 0,
      "[trainer] --loss-scale \"", spec, "\": expected none, dynamic or a positive number");
  return optim::LossScaler::constant(scale);
}

/// "runs/x/checkpoint.json" or "runs/x/checkpoint.safetensors" -> "runs/x/checkpoint".
std::string checkpoint_stem(std::string path) {
  for (const std::string suffix : {".json", ".safetensors"})
    if (path.size() > suffix.size() && path.ends_with(suffix))
      return path.substr(0, path.size() - suffix.size());
  return path;
}

/// JSON cannot hold NaN or inf: such values are written as null.
nlohmann::json number_or_null(double value) {
  return std::isfinite(value) ? nlohmann::json(value) : nlohmann::json(nullptr);
}

/// `dir`, created with its parents first.
std::filesystem::path create_directories_for(const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  return dir;
}

std::string clock_text(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const int64_t s = int64_t(seconds + 0.5);
  return s >= 3600
             ? concat(s / 3600, ":", (s / 60 % 60) / 10, s / 60 % 10, ":", (s % 60) / 10, s % 10)
             : concat(s / 60, ":", (s % 60) / 10, s % 10);
}

}  // namespace

std::vector<std::pair<int64_t, PrecisionStack>> parse_stack_schedule(const std::string& text) {
  if (text.empty()) return {};
  // Split where a separator is followed by digits and a colon: the next item's STEP.
  std::vector<std::string> items;
  size_t start = 0;
  for (size_t i = 0; i <= text.size(); ++i) {
    if (i < text.size() && text[i] != ';' && text[i] != ',') continue;
    size_t digits = i + 1;
    while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) ++digits;
    const bool next_item = i == text.size() || text[i] == ';' ||
                           (digits > i + 1 && digits < text.size() && text[digits] == ':');
    if (!next_item) continue;
    items.push_back(text.substr(start, i - start));
    start = i + 1;
  }
  std::vector<std::pair<int64_t, PrecisionStack>> out;
  for (const std::string& item : items) {
    const size_t colon = item.find(':');
    int64_t step = -1;
    const char* end = item.data() + (colon == std::string::npos ? 0 : colon);
    const bool numeric = colon != std::string::npos && colon > 0 &&
                         std::from_chars(item.data(), end, step).ptr == end;
    LATTICE_CHECK(numeric && step >= 0, "[trainer] --stack-schedule \"", text, "\": item \"", item,
                  "\": expected STEP:SPEC with STEP a step count, e.g. 0:bf16,2000:fp16");
    LATTICE_CHECK(out.empty() || step > out.back().first, "[trainer] --stack-schedule \"", text,
                  "\": step ", step, " does not come after step ", out.back().first);
    try {
      out.emplace_back(step, parse_precision_stack(item.substr(colon + 1)));
    } catch (const Error& e) {
      throw Error(concat("[trainer] --stack-schedule item \"", item, "\": ", e.what()));
    }
  }
  return out;
}

void add_trainer_flags(CLI::App& app, TrainerFlags& flags) {
  app.set_version_flag("--version",
                       concat("lattice ", version(), " (git commit ", git_commit(), ")"));
  app.add_option("--stack", flags.stack, "precision stack spec (see README), e.g. gemm=mxfp4")
      ->capture_default_str();
  app.add_option("--stack-schedule", flags.stack_schedule,
                 "STEP:SPEC items switching the whole stack (Λw and Γopt included) from STEP on, "
                 "e.g. 0:bf16,2000:fp16,4000:bf16 (';' between specs that hold commas)");
  app.add_option("--override", flags.overrides,
                 "PATTERN:SPEC (repeatable): modules whose dotted name matches the glob run under "
                 "SPEC, e.g. '0:gemm=bf16' for the first layer of a Sequential");
  app.add_option("--epochs", flags.epochs, "epochs to train")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--steps", flags.steps, "optimizer steps to train (overrides --epochs)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--batch", flags.batch, "batch size")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--lr", flags.lr, "learning rate")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--weight-decay", flags.weight_decay, "weight decay")->capture_default_str();
  app.add_option("--optimizer", flags.optimizer, "adam, adamw, sgd (momentum 0.9) or stablespam")
      ->capture_default_str()
      ->check(CLI::IsMember({"adam", "adamw", "sgd", "stablespam"}));
  app.add_option("--schedule", flags.schedule,
                 "learning-rate schedule: constant, warmup:N, cosine[:MIN], linear[:MIN], "
                 "wsd:N:F[:MIN], comma-joined")
      ->capture_default_str();
  app.add_option("--loss-scale", flags.loss_scale, "none, dynamic or a constant")
      ->capture_default_str();
  app.add_option("--clip", flags.clip, "clip gradients to this global norm (0: off)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--seed", flags.seed, "seed of weights, shuffles and rounding")
      ->capture_default_str();
  app.add_option("--data", flags.data, "data directory")->capture_default_str();
  app.add_option("--device", flags.device, "where to train: cpu or cuda")
      ->capture_default_str()
      ->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_option("--gemm", flags.gemm,
                 "auto: GEMMs of bf16-exact operands (bf16, fp8, fp6, fp4, MX) run in bf16 on a "
                 "GPU and where the CPU has native bf16, of MXFP8/6/4 operands as the "
                 "block-scaled FP8 GEMM on a GPU; exact-fp32: always fp32; fp8-blocks: auto, "
                 "and the FP8 GEMM's golden model on the CPU too (slow)")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "exact-fp32", "fp8-blocks"}));
  app.add_option("--out", flags.out, "output directory (metrics.jsonl, summary.json, checkpoint)")
      ->capture_default_str();
  app.add_option("--threads", flags.threads, "CPU threads (0: all; at most 1024 or 4x the cores)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--resume", flags.resume, "checkpoint to continue from (path without suffix)");
  app.add_option("--checkpoint-every", flags.checkpoint_every,
                 "write a checkpoint every N steps (and always at the end)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--allreduce-format", flags.allreduce_format,
                 "data-parallel gradient compression: round each micro-batch's gradient onto "
                 "this quantizer (e.g. bf16:sr) before the ranks' sum (empty: fp32)");
  app.footer(
      concat("A run stops as \"diverged\" (in summary.json; exit status 0) when its loss is "
             "non-finite, or above ",
             kExplodedLoss, " x its first loss, for ", kDivergedSteps, " steps in a row.\n"));
  app.add_option("--log-every", flags.log_every, "progress line every N steps")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--accumulate", flags.accumulate,
                 "micro-batches of --batch per optimizer step (gradient accumulation)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20));
  app.add_option("--eval-every", flags.eval_every,
                 "evaluate every N optimizer steps instead of at each epoch's end (and always at "
                 "the end)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--diagnostics", flags.diagnostics,
                 "lattice instruments on observed steps, into metrics.jsonl (comma-separated): "
                 "beta, churn, saturation, cast:FORMAT, attention, snr, stability, default "
                 "(beta, attention), all");
  app.add_option("--diagnostics-every", flags.diagnostics_every,
                 "observe every N-th step with the --diagnostics instruments")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--trace-step", flags.trace_step,
                 "write every op of step N (forward and backward: operand, accumulator and "
                 "output lattices) to op_trace.jsonl")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--ln-eps-policy", flags.ln_eps_policy,
                 "raise the ε of ε-dominated LayerNorm/RMSNorm layers toward ρ_LN = ρ* every N "
                 "steps, never lowering it, restored at the end (forward-stability Algorithm 1): "
                 "rho=0.6,cap=1e-2,every=5[,floor=1e-6][,sample=16]");
  app.add_option("--ema", flags.ema,
                 "keep an exponential moving average of the weights with this decay (e.g. "
                 "0.999; step n uses min(DECAY, (1 + n) / (10 + n))): evaluations and the "
                 "trained model use the average; 0: off")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--eval-batches", flags.eval_batches,
                 "evaluate on the first N validation batches only (0: all; for trainers whose "
                 "validation runs in batches)")
      ->check(CLI::NonNegativeNumber);
}

Device trainer_device(const TrainerFlags& flags) {
  if (flags.device == "cpu") return Device::cpu;
  LATTICE_CHECK(flags.device == "cuda", "[trainer] --device \"", flags.device,
                "\": expected cpu or cuda");
  LATTICE_CHECK(cuda_available(),
                "[trainer] --device cuda: no usable CUDA device (no GPU, no "
                "driver, or a build without CUDA)");
  // Ranks on one machine take its GPUs in turn, before the first allocation picks device 0.
  const distributed::Communicator& world = distributed::Communicator::world();
  if (world.size() > 1) cuda_set_device(world.local_rank() % cuda_device_count());
  return Device::cuda;
}

data::Batch on_device(data::Batch batch, Device device) {
  batch.input = batch.input.to(device);
  batch.target = batch.target.to(device);
  return batch;
}

void for_each_validation_batch(data::DataLoader& loader,
                               int64_t max_batches,
                               Device device,
                               const std::function<void(const data::Batch&)>& visit) {
  // From the start of an epoch every time, whatever an earlier pass with max_batches left.
  loader.set_position({.epoch = loader.epoch(), .batch = 0});
  const int64_t batches = max_batches > 0 ? std::min(max_batches, loader.batches_per_epoch())
                                          : loader.batches_per_epoch();
  int64_t visited = 0;
  for (; visited < batches; ++visited) {
    const std::optional<data::Batch> batch = loader.next();
    if (!batch) break;
    visit(on_device(std::move(*batch), device));
  }
  LATTICE_CHECK(visited > 0, "[evaluate] the validation loader has no batches");
}

Evaluation evaluate_classifier(nn::Module& model, data::DataLoader& loader, int64_t max_batches) {
  NoGradGuard no_grad;
  double total_loss = 0.0;
  int64_t correct = 0, count = 0;
  const std::vector<Tensor> parameters = model.parameters();
  const Device device = parameters.empty() ? Device::cpu : parameters.front().device();
  for_each_validation_batch(loader, max_batches, device, [&](const data::Batch& batch) {
    const Tensor logits = model(batch.input);
    // Each example's loss as the stack computes it, summed here in double: a sum over the batch
    // is an op output on Λa, which keeps 8 bits of it on bf16 and overflows e4m3 (448) to NaN.
    for (const double loss :
         cross_entropy(logits, batch.target, -100, Reduction::none).to_vector<double>())
      total_loss += loss;
    const std::vector<float> scores = logits.to_vector<float>();
    const std::vector<int64_t> labels = batch.target.to_vector<int64_t>();
    const size_t classes = size_t(logits.shape(1));
    for (size_t i = 0; i < labels.size(); ++i) {
      const auto row = scores.begin() + std::ptrdiff_t(i * classes);
      // The first maximal logit is the prediction, as argmax.
      correct += std::max_element(row, row + std::ptrdiff_t(classes)) - row == labels[i];
    }
    count += batch.size();
  });
  return {total_loss / double(count), double(correct) / double(count)};
}

namespace {

/// One run of the shared loop, in the order a reader meets it: setup (stack, overrides,
/// optimizer, schedule), resume, then steps — each one or more micro-batches, forward and
/// backward under the stack, then the optimizer — with evaluation, logging, divergence and
/// checkpoints around them, and the summary at the end.
class TrainingRun {
 public:
  TrainingRun(const TrainerFlags& flags, TrainingJob& job)
      : flags_(flags),
        job_(job),
        model_(*job.model),
        loader_(*job.train),
        base_stack_(parse_precision_stack(flags.stack)),
        stack_(base_stack_),
        stack_schedule_(parse_stack_schedule(flags.stack_schedule)),
        device_(trainer_device(flags)),
        world_(distributed::Communicator::world()),
        micro_batches_(flags.accumulate * world_.size()),
        out_(flags.out.empty() ? "runs/" + job.name : flags.out),
        metrics_path_(out_ / "metrics.jsonl"),
        diagnostics_(diagnostics::make_instruments(flags.diagnostics),
                     flags.diagnostics_every,
                     create_directories_for(out_) / "diagnostics.jsonl",
                     !flags.resume.empty()) {
    for (const std::string& item : flags.overrides) {
      const size_t colon = item.find(':');
      LATTICE_CHECK(colon != std::string::npos, "[trainer] --override \"", item,
                    "\": expected PATTERN:SPEC, e.g. 0:gemm=bf16");
      model_.override_precision(item.substr(0, colon),
                                parse_precision_stack(item.substr(colon + 1)));
    }
    const int64_t batches_per_epoch = loader_.batches_per_epoch();
    LATTICE_CHECK(batches_per_epoch > 0, "[trainer] ", job.name,
                  ": the training set gives no batch of size ", flags.batch);
    // An epoch is batches_per_epoch micro-batches, so accumulation (and ranks) make it fewer
    // steps.
    steps_per_epoch_ = double(batches_per_epoch) / double(micro_batches_);
    total_steps_ = flags.steps;
    if (total_steps_ == 0) {
      int64_t micro_batches = 0;
      LATTICE_CHECK(!__builtin_mul_overflow(flags.epochs, batches_per_epoch, &micro_batches),
                    "[trainer] --epochs ", flags.epochs, " x ", batches_per_epoch,
                    " batches per epoch overflows the step count; expected at most ",
                    std::numeric_limits<int64_t>::max() / batches_per_epoch, " epochs");
      total_steps_ = std::max<int64_t>(1, micro_batches / micro_batches_);
    }
    schedule_ = optim::parse_schedule(flags.schedule, total_steps_);
    stack_ = scheduled_stack(0);
    if (!flags.ln_eps_policy.empty()) {
      // ε_mach comes from each observed step's stack (its Λa), so it follows a schedule.
      ln_eps_ = std::make_unique<diagnostics::LayerNormEpsilonController>(
          diagnostics::LayerNormEpsilonPolicy::parse(flags.ln_eps_policy));
      for (auto& [name, module] : model_.named_modules())
        if (const double* eps = diagnostics::norm_epsilon(*module)) initial_eps_[name] = *eps;
    }
    model_.to(device_);
    LATTICE_CHECK(flags.ema >= 0 && flags.ema < 1, "[trainer] --ema ", flags.ema,
                  ": expected a decay in [0, 1)");
    if (flags.ema > 0) {
      NoGradGuard no_grad;
      for (const auto& [name, parameter] : model_.named_parameters())
        ema_.push_back({name, parameter, parameter.clone()});
    }
    optimizer_ = make_optimizer(flags, model_, stack_);
    scaler_ = make_loss_scaler(flags.loss_scale);
    set_up_data_parallel();
  }

  int run() {
    if (!flags_.resume.empty()) resume();
    if (world_.root()) {  // rank 0 writes every output; the other ranks write nothing
      metrics_.open(metrics_path_, flags_.resume.empty() ? std::ios::trunc : std::ios::app);
      LATTICE_CHECK(metrics_.good(), "[trainer] ", metrics_path_.string(),
                    ": cannot open for writing: ", std::strerror(errno));
    }
    run_start_ = Clock::now();
    model_.train();
    // Whole epochs are timed from their first step: a resumed run's partial epoch is not one.
    epoch_timed_ = std::fmod(double(step_), steps_per_epoch_) == 0.0;
    while (step_ < total_steps_) {
      const Clock::time_point step_start = Clock::now();
      const double evaluated_before = evaluation_seconds_;
      train_step();
      time_epoch(seconds_since(step_start) - (evaluation_seconds_ - evaluated_before));
      if (flags_.eval_every > 0 && step_ % flags_.eval_every == 0) evaluate();
      // Saved after the step's divergence bookkeeping, which the checkpoint carries.
      if (flags_.checkpoint_every > 0 && step_ % flags_.checkpoint_every == 0) save();
      if (bad_steps_ >= kDivergedSteps) {  // a result, not a crash: record it and stop
        status_ = "diverged";
        std::fprintf(stderr,
                     "%s  loss non-finite or above %g x the first loss (%g) for %lld steps: "
                     "stopping (diverged)\n",
                     job_.name.c_str(), kExplodedLoss, first_loss_.value_or(std::nan("")),
                     (long long)kDivergedSteps);
        break;
      }
    }
    restore_layer_norm_eps();
    evaluate();
    save();
    write_summary();
    swap_ema_weights();  // the caller gets the averaged model (samples, exports)
    return 0;
  }

 private:
  void resume() {
    const std::string stem = checkpoint_stem(flags_.resume);
    if (!stack_schedule_.empty()) follow_stack_schedule(optim::checkpoint_step(stem));
    const bool saved_ema = optim::checkpoint_extra(stem).contains("ema_decay");
    LATTICE_CHECK(!saved_ema || !ema_.empty(), "[trainer] --resume ", stem,
                  ": the checkpoint keeps an average of the weights; expected --ema to go on "
                  "with it");
    const optim::TrainingState state = optim::load_checkpoint(
        stem, saved_ema ? tensors_to_save() : model_.state_dict(), *optimizer_, &scaler_);
    if (!saved_ema && !ema_.empty()) {
      NoGradGuard no_grad;
      for (EmaEntry& entry : ema_) entry.average.copy_(entry.parameter);
      if (world_.root())
        std::fprintf(stderr, "%s  --ema: the average starts from the checkpoint's weights\n",
                     job_.name.c_str());
    }
    try {
      loader_.load_state(state.data_loader);
    } catch (const std::exception& e) {
      throw Error(concat("[checkpoint] ", stem, ".json: data_loader: ", e.what()));
    }
    step_ = state.step;
    const nlohmann::json& extra = state.extra;
    if (extra.contains("first_loss") && extra["first_loss"].is_number())
      first_loss_ = extra["first_loss"].get<double>();
    if (extra.contains("bad_steps") && extra["bad_steps"].is_number_unsigned())
      bad_steps_ = std::min<int64_t>(extra["bad_steps"].get<int64_t>(), kDivergedSteps);
    if (ln_eps_ && extra.contains("layer_norm_eps") && extra["layer_norm_eps"].is_object())
      for (auto& [name, module] : model_.named_modules()) {
        double* eps = diagnostics::norm_epsilon(*module);
        const nlohmann::json& saved = extra["layer_norm_eps"];
        if (eps && saved.contains(name) && saved[name].is_number())
          *eps = saved[name].get<double>();
      }
    // Lines logged after the checkpoint was written come again once the resumed run reaches
    // their steps: cut metrics.jsonl back to its length at the save (when it is this run's).
    std::error_code error;
    std::filesystem::path checkpoint_dir = std::filesystem::path(stem).parent_path();
    if (checkpoint_dir.empty()) checkpoint_dir = ".";
    const bool same_run = std::filesystem::equivalent(checkpoint_dir, out_, error);
    if (world_.root() && same_run && extra.contains("metrics_bytes") &&
        extra["metrics_bytes"].is_number_unsigned() &&
        std::filesystem::is_regular_file(metrics_path_, error)) {
      const uintmax_t saved = extra["metrics_bytes"].get<uint64_t>();
      if (std::filesystem::file_size(metrics_path_) > saved)
        std::filesystem::resize_file(metrics_path_, saved);
    }
  }

  /// The model's state dict and, with --ema, each average as "ema.<parameter>".
  NamedTensors tensors_to_save() const {
    NamedTensors tensors = model_.state_dict();
    for (const EmaEntry& entry : ema_) tensors.emplace_back("ema." + entry.name, entry.average);
    return tensors;
  }

  /// average <- d average + (1 - d) parameter after the optimizer's n-th step, with
  /// d = min(--ema, (1 + n) / (10 + n)): early averages forget the random initialisation fast.
  void update_ema() {
    if (ema_.empty()) return;
    const double n = double(step_);
    const double decay = std::min(flags_.ema, (1.0 + n) / (10.0 + n));
    NoGradGuard no_grad;
    for (EmaEntry& entry : ema_)
      entry.average.copy_(add(scale(entry.average, decay), scale(entry.parameter, 1.0 - decay)));
  }

  /// Exchanges the model's weights and their averages (bit for bit; twice restores both).
  void swap_ema_weights() {
    NoGradGuard no_grad;
    for (EmaEntry& entry : ema_) {
      const Tensor weights = entry.parameter.clone();
      entry.parameter.copy_(entry.average);
      entry.average.copy_(weights);
    }
  }

  /// The ε-policy's end of run: every norm back at the ε it was built with (logged).
  void restore_layer_norm_eps() {
    if (!ln_eps_) return;
    for (auto& [name, module] : model_.named_modules()) {
      double* eps = diagnostics::norm_epsilon(*module);
      if (!eps || *eps == initial_eps_.at(name)) continue;
      std::fprintf(stderr, "%s  end: %s eps %g -> %g (restored)\n", job_.name.c_str(), name.c_str(),
                   *eps, initial_eps_.at(name));
      *eps = initial_eps_.at(name);
    }
  }

  /// The stack of the schedule's last item at or before `step` (--stack before the first).
  PrecisionStack scheduled_stack(int64_t step) const {
    PrecisionStack stack = base_stack_;
    for (const auto& [first_step, scheduled] : stack_schedule_)
      if (first_step <= step) stack = scheduled;
    return stack;
  }

  /// Switches the run (its scope and the optimizer) to the scheduled stack of `step`.
  void follow_stack_schedule(int64_t step) {
    PrecisionStack stack = scheduled_stack(step);
    if (stack == stack_) return;
    if (world_.root())
      std::fprintf(stderr, "%s  step %lld: precision stack %s -> %s\n", job_.name.c_str(),
                   (long long)step, to_string(stack_).c_str(), to_string(stack).c_str());
    stack_ = std::move(stack);
    optimizer_->set_precision(stack_);
  }

  /// Data-parallel training (mpirun -np N): global micro-batch k of a step is rank
  /// k / --accumulate's, each rank's loader builds only its own, and with several micro-batches
  /// (or --allreduce-format) gradients meet in the fixed-order sum.
  void set_up_data_parallel() {
    if (world_.size() > 1) {
      LATTICE_CHECK(flags_.diagnostics.empty() && flags_.ln_eps_policy.empty(), "[trainer] ",
                    world_.size(),
                    " ranks: --diagnostics and --ln-eps-policy observe one process's batches; "
                    "expected a single-process run for them");
      loader_.set_shard({.period = micro_batches_,
                         .first = world_.rank() * flags_.accumulate,
                         .count = flags_.accumulate});
    }
    Quantizer carry;
    try {
      if (!flags_.allreduce_format.empty()) carry = parse_quantizer_spec(flags_.allreduce_format);
    } catch (const Error& e) {
      throw Error(
          concat("[trainer] --allreduce-format \"", flags_.allreduce_format, "\": ", e.what()));
    }
    if (micro_batches_ > 1 || !(carry == Quantizer{}))
      gradient_sum_ = std::make_unique<distributed::OrderedGradientSum>(
          world_, optimizer_->parameters(), carry);
  }

  /// One optimizer step over M = --accumulate x ranks micro-batches: each one's loss, divided
  /// by M, is backpropagated; with M > 1 each micro-batch draws random streams of its own and
  /// its gradient joins the fixed-order sum (distributed/gradient_sum.h), so that N ranks give
  /// the bits of one process with --accumulate M. Then clipping and the step.
  void train_step() {
    const Clock::time_point start = Clock::now();
    follow_stack_schedule(step_);
    optim::apply_schedule(schedule_, *optimizer_, step_);
    optimizer_->zero_grad();
    // An observed step: the instruments watch its forward, backward and update (the batch is
    // the last micro-batch's).
    diagnostics::StepView view{.step = step_ + 1,
                               .model = &model_,
                               .optimizer = optimizer_.get(),
                               .stack = &stack_,
                               .loss = job_.loss};
    const bool observed = diagnostics_.observes(view.step);
    if (observed) diagnostics_.begin_step(view);
    const bool tracing = flags_.trace_step == view.step;
    if (tracing) {
      clear_op_trace();
      set_op_trace(true, /*backward=*/true);
    }
    std::vector<double> totals;  // this rank's micro-batches' loss, items and samples
    double waiting = 0.0;        // for batches (and an epoch end's evaluation): not step time
    data::Batch batch;
    const RandomState step_random = default_random_state();
    for (int64_t micro = 0; micro < micro_batches_; ++micro) {
      const bool mine = micro / flags_.accumulate == world_.rank();
      const Clock::time_point wait_start = Clock::now();
      std::optional<data::Batch> next = next_batch(mine);
      waiting += seconds_since(wait_start);
      if (!mine) continue;
      batch = std::move(*next);
      if (micro_batches_ > 1)
        set_default_random_state(distributed::micro_batch_random_state(step_random, micro));
      PrecisionScope scope(stack_);
      const Tensor loss = job_.loss(batch);
      // With one micro-batch the loss goes back as it is (no extra rounding on Λa).
      const Tensor share = micro_batches_ == 1 ? loss : scale(loss, 1.0 / double(micro_batches_));
      backward(scaler_.scale_loss(share));
      if (gradient_sum_) gradient_sum_->take_micro_batch();
      totals.insert(totals.end(),
                    {loss.item<double>(), double(job_.items ? job_.items(batch) : batch.size()),
                     double(batch.size())});
    }
    // The step's own generator moves on by one stream, whatever the micro-batches drew.
    if (micro_batches_ > 1)
      set_default_random_state({step_random.seed, step_random.next_subsequence + 1});
    if (gradient_sum_) gradient_sum_->reduce();
    std::vector<double> all_totals(totals.size() * size_t(world_.size()));
    world_.all_gather(totals, all_totals);
    double loss_sum = 0.0;  // in global micro-batch order, as one process adds them
    int64_t items = 0, samples = 0;
    for (size_t i = 0; i < all_totals.size(); i += 3) {
      loss_sum += all_totals[i];
      items += int64_t(all_totals[i + 1]);
      samples += int64_t(all_totals[i + 2]);
    }
    if (tracing && world_.root()) write_op_trace(view.step);
    view.batch = &batch;
    if (observed) diagnostics_.before_update(view);
    if (flags_.clip > 0) {
      scaler_.unscale(*optimizer_);
      optim::clip_grad_norm(optimizer_->parameters(), flags_.clip);
    }
    const bool stepped = scaler_.step(*optimizer_);
    nlohmann::json observations = nlohmann::json::object();
    if (observed) diagnostics_.end_step(view, observations);
    if (ln_eps_)
      for (const diagnostics::EpsilonChange& change :
           diagnostics::apply_layer_norm_epsilon_policy(*ln_eps_, view)) {
        observations["ln_eps_raised/" + change.module] = change.new_eps;
        std::fprintf(stderr, "%s  step %lld: %s eps %g -> %g (rho_LN %.3g)\n", job_.name.c_str(),
                     (long long)view.step, change.module.c_str(), change.old_eps, change.new_eps,
                     change.rho_ln);
      }
    const double elapsed = seconds_since(start) - waiting;
    train_seconds_ += elapsed;
    step_ms_.push_back(1e3 * elapsed);
    items_ += items;
    samples_ += samples;
    ++step_, ++steps_this_session_;
    if (stepped) update_ema();
    record_step(loss_sum / double(micro_batches_), stepped, observations);
  }

  /// The traced step's ops, one JSON line each, to op_trace.jsonl (replacing an earlier one).
  void write_op_trace(int64_t step) {
    set_op_trace(false);
    std::string text;
    for (const OpTrace& entry : op_trace())
      text += nlohmann::json{{"step", step},
                             {"op", entry.op},
                             {"backward", entry.backward},
                             {"inputs", entry.inputs},
                             {"output", entry.output},
                             {"accumulator", entry.accumulator}}
                  .dump() +
              "\n";
    clear_op_trace();
    write_file_atomically((out_ / "op_trace.jsonl").string(),
                          std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()),
                          "trainer");
  }

  /// The next training micro-batch, or nullopt for one another rank trains on (passed without
  /// building it); an epoch's end evaluates first unless --eval-every sets the cadence.
  std::optional<data::Batch> next_batch(bool mine) {
    for (;;) {
      if (!mine) {
        if (loader_.skip()) return std::nullopt;
      } else if (std::optional<data::Batch> batch = loader_.next()) {
        return on_device(std::move(*batch), device_);
      }
      if (flags_.eval_every == 0) evaluate();
    }
  }

  /// The step's metrics line, the progress line every --log-every steps, and divergence.
  void record_step(double loss, bool stepped, const nlohmann::json& observations) {
    recent_losses_.push_back(loss);
    if (int64_t(recent_losses_.size()) > flags_.log_every) recent_losses_.pop_front();
    nlohmann::json line{{"step", step_},
                        {"epoch", epoch()},
                        {"loss", number_or_null(loss)},
                        {"lr", optimizer_->lr()},
                        {"loss_scale", scaler_.scale()},
                        {"skipped", !stepped},
                        {"seconds", seconds_since(run_start_)}};
    line.update(observations);
    log(line);
    if (world_.root() && (step_ % flags_.log_every == 0 || step_ == total_steps_)) {
      const double eta =
          double(total_steps_ - step_) * train_seconds_ / double(steps_this_session_);
      std::fprintf(stderr,
                   "%s  epoch %.2f  step %lld/%lld  loss %.4f  lr %.2e  %.0f %s/s  ETA %s\n",
                   job_.name.c_str(), epoch(), (long long)step_, (long long)total_steps_, loss,
                   optimizer_->lr(), throughput(), job_.unit.c_str(), clock_text(eta).c_str());
    }
    if (!first_loss_ && std::isfinite(loss)) first_loss_ = loss;
    const bool exploded = first_loss_ && *first_loss_ > 0 && loss > kExplodedLoss * *first_loss_;
    bad_steps_ = !std::isfinite(loss) || exploded ? bad_steps_ + 1 : 0;
  }

  /// An epoch's wall time adds its steps' whole iterations (batch waits, the host-to-device
  /// copy, logging) and leaves out evaluations, as an epoch loop of PyTorch without one would.
  void time_epoch(double step_seconds) {
    epoch_wall_seconds_ += step_seconds;
    const auto epoch_of = [&](int64_t step) { return std::floor(double(step) / steps_per_epoch_); };
    if (epoch_of(step_) == epoch_of(step_ - 1)) return;
    if (epoch_timed_) epoch_seconds_.push_back(epoch_wall_seconds_);
    epoch_wall_seconds_ = 0.0;
    epoch_timed_ = true;
  }

  /// The median whole epoch, the first left out when there are more (it pays the one-time
  /// costs: library start-up, the allocator's first requests, the loader's first batches).
  std::optional<double> epoch_seconds_median() const {
    if (epoch_seconds_.empty()) return std::nullopt;
    std::vector<double> sorted(epoch_seconds_.begin() + (epoch_seconds_.size() > 1 ? 1 : 0),
                               epoch_seconds_.end());
    std::sort(sorted.begin(), sorted.end());
    return sorted[sorted.size() / 2];
  }

  /// Rank 0's: evaluation changes no training state, so the other ranks skip it.
  void evaluate() {
    if (!job_.evaluate || last_evaluated_step_ == step_ || !world_.root()) return;
    const Clock::time_point start = Clock::now();
    model_.eval();
    {
      // Evaluation draws its own random streams (stochastic rounding in a forward quantizer)
      // and hands the training stream back where it was: a run evaluated at a step and one
      // that was not (a resumed run against a straight one) train on the same random bits.
      const RandomState training_random = default_random_state();
      PrecisionScope scope(stack_);
      swap_ema_weights();
      last_evaluation_ = job_.evaluate();
      swap_ema_weights();
      set_default_random_state(training_random);
    }
    model_.train();
    last_evaluated_step_ = step_;
    nlohmann::json line{{"step", step_},
                        {"epoch", epoch()},
                        {"val_loss", number_or_null(last_evaluation_.loss)},
                        {"seconds", seconds_since(run_start_)}};
    if (last_evaluation_.accuracy) line["val_accuracy"] = *last_evaluation_.accuracy;
    std::string more;
    for (const auto& [name, value] : last_evaluation_.extra) {
      line["val_" + name] = number_or_null(value);
      more += concat("  val ", name, " ", value);
    }
    log(line);
    std::fprintf(stderr, "%s  epoch %.2f  val loss %.4f%s%s\n", job_.name.c_str(), epoch(),
                 last_evaluation_.loss,
                 last_evaluation_.accuracy
                     ? concat("  val accuracy ", 100.0 * *last_evaluation_.accuracy, "%").c_str()
                     : "",
                 more.c_str());
    evaluation_seconds_ += seconds_since(start);
  }

  void save() {
    if (!world_.root()) return;
    std::error_code error;
    const uintmax_t metrics_bytes = std::filesystem::file_size(metrics_path_, error);
    nlohmann::json extra{
        {"bad_steps", bad_steps_},
        {"first_loss", first_loss_ ? nlohmann::json(*first_loss_) : nlohmann::json()}};
    if (ln_eps_) {  // the policy's raised ε values, which a resumed run continues from
      nlohmann::json eps = nlohmann::json::object();
      for (auto& [name, module] : model_.named_modules())
        if (const double* value = diagnostics::norm_epsilon(*module)) eps[name] = *value;
      extra["layer_norm_eps"] = eps;
    }
    if (!error) extra["metrics_bytes"] = metrics_bytes;
    if (!ema_.empty()) extra["ema_decay"] = flags_.ema;
    optim::save_checkpoint((out_ / "checkpoint").string(), tensors_to_save(), *optimizer_,
                           optim::TrainingState{.step = step_,
                                                .schedule = flags_.schedule,
                                                .data_loader = loader_.state(),
                                                .extra = extra},
                           &scaler_);
  }

  /// Every line is flushed and checked: a full disk fails the run, it does not finish silently.
  void log(const nlohmann::json& line) {
    if (!world_.root()) return;
    metrics_ << line.dump() << '\n' << std::flush;
    LATTICE_CHECK(metrics_.good(), "[trainer] ", metrics_path_.string(),
                  ": write failed: ", std::strerror(errno));
  }

  void write_summary() {
    if (!world_.root()) return;
    double train_loss = 0.0;
    for (double l : recent_losses_) train_loss += l;
    train_loss /= double(std::max<size_t>(recent_losses_.size(), 1));
    std::vector<double> sorted_ms = step_ms_;
    std::sort(sorted_ms.begin(), sorted_ms.end());
    nlohmann::json summary{
        {"trainer", job_.name},
        {"lattice_version", version()},
        {"git_commit", git_commit()},
        {"status", status_},
        {"steps", step_},
        {"epochs", epoch()},
        {"train_loss", number_or_null(train_loss)},
        {"val_loss", number_or_null(last_evaluation_.loss)},
        {"seconds", seconds_since(run_start_)},
        {"train_seconds", train_seconds_},
        {"seconds_per_epoch",
         train_seconds_ * steps_per_epoch_ / double(std::max<int64_t>(steps_this_session_, 1))},
        {"step_ms_median", sorted_ms.empty() ? 0.0 : sorted_ms[sorted_ms.size() / 2]},
        {"epoch_seconds", epoch_seconds_},
        {"epoch_seconds_median",
         epoch_seconds_median() ? nlohmann::json(*epoch_seconds_median()) : nlohmann::json()},
        {"samples_per_second", double(samples_) / std::max(train_seconds_, 1e-9)},
        {job_.unit + "_per_second", throughput()},
        {"throughput_unit", job_.unit},
        {"skipped_steps", scaler_.skipped_steps()},
        {"stack", to_string(stack_)},
        {"stack_schedule", flags_.stack_schedule},
        {"ln_eps_policy", ln_eps_ ? ln_eps_->policy().spec() : std::string()},
        {"ema", flags_.ema},
        {"overrides", flags_.overrides},
        {"complexity_points",
         complexity_points(stack_, {.loss_scaling = flags_.loss_scale != "none",
                                    .stable_spam = flags_.optimizer == "stablespam"})},
        {"optimizer", flags_.optimizer},
        {"schedule", flags_.schedule},
        {"lr", flags_.lr},
        {"batch", flags_.batch},
        {"accumulate", flags_.accumulate},
        {"ranks", world_.size()},
        {"allreduce_format", flags_.allreduce_format},
        {"loss_scale", flags_.loss_scale},
        {"seed", flags_.seed},
        {"device", flags_.device},
        {"gemm", describe_gemm_path(device_)},
        {"parameters", model_.parameter_count()},
        {"config", job_.config}};
    if (last_evaluation_.accuracy) summary["val_accuracy"] = *last_evaluation_.accuracy;
    if (device_ == Device::cuda)
      summary["cuda_peak_allocated_mib"] =
          double(cuda_memory_stats().peak_allocated_bytes) / (1 << 20);
    for (const auto& [name, value] : last_evaluation_.extra)
      summary["val_" + name] = number_or_null(value);
    // Written whole, then renamed: a summary.json present means the run ended.
    const std::string text = summary.dump(2) + "\n";
    write_file_atomically((out_ / "summary.json").string(),
                          std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()),
                          "trainer");
    std::fprintf(stderr, "%s  %s: %lld steps in %.1f s, train loss %.4f, val loss %.4f%s -> %s\n",
                 job_.name.c_str(), status_.c_str(), (long long)step_, seconds_since(run_start_),
                 train_loss, last_evaluation_.loss,
                 last_evaluation_.accuracy
                     ? concat(", val accuracy ", 100.0 * *last_evaluation_.accuracy, "%").c_str()
                     : "",
                 out_.string().c_str());
  }

  double epoch() const {
    return double(step_) / steps_per_epoch_;
  }
  /// Items (job_.unit: images, tokens, ...) per second of training this session.
  double throughput() const {
    return double(items_) / std::max(train_seconds_, 1e-9);
  }

  const TrainerFlags& flags_;
  TrainingJob& job_;
  nn::Module& model_;
  data::DataLoader& loader_;
  const PrecisionStack base_stack_;  // --stack
  PrecisionStack stack_;             // the current one: --stack, or the schedule's item
  const std::vector<std::pair<int64_t, PrecisionStack>> stack_schedule_;
  const Device device_;
  const distributed::Communicator& world_;
  const int64_t micro_batches_;                                    // per step: --accumulate x ranks
  std::unique_ptr<distributed::OrderedGradientSum> gradient_sum_;  // when micro-batches meet
  const std::filesystem::path out_, metrics_path_;
  int64_t total_steps_ = 0;
  double steps_per_epoch_ = 1.0;
  optim::Schedule schedule_;
  std::unique_ptr<optim::Optimizer> optimizer_;
  optim::LossScaler scaler_;
  std::ofstream metrics_;
  diagnostics::Diagnostics diagnostics_;
  std::unique_ptr<diagnostics::LayerNormEpsilonController> ln_eps_;  // --ln-eps-policy
  std::map<std::string, double> initial_eps_;  // each norm's ε as built, restored at the end
  struct EmaEntry {
    std::string name;
    Tensor parameter, average;
  };
  std::vector<EmaEntry> ema_;  // --ema: every parameter with its moving average

  int64_t step_ = 0, steps_this_session_ = 0, samples_ = 0, items_ = 0;
  std::optional<double> first_loss_;  // the divergence test's reference
  int64_t bad_steps_ = 0;             // steps in a row with a non-finite or exploded loss
  std::string status_ = "finished";
  Evaluation last_evaluation_{std::nan(""), std::nullopt};
  int64_t last_evaluated_step_ = -1;
  Clock::time_point run_start_ = Clock::now();
  double train_seconds_ = 0.0;
  double evaluation_seconds_ = 0.0;    // this session's, left out of the epochs' wall time
  double epoch_wall_seconds_ = 0.0;    // of the epoch under way
  bool epoch_timed_ = false;           // whether it began in this session
  std::vector<double> epoch_seconds_;  // this session's whole epochs
  std::deque<double> recent_losses_;   // the last log_every losses, for the summary's train loss
  std::vector<double> step_ms_;
};

}  // namespace

int run_training(const TrainerFlags& flags, TrainingJob& job) {
  LATTICE_CHECK(job.model && job.train && job.loss, "[trainer] ", job.name,
                ": a job needs a model, a training loader and a loss");
  // The OpenMP runtime crashes trying to start a million threads.
  const int max_threads = std::max(1024, 4 * omp_get_num_procs());
  LATTICE_CHECK(flags.threads <= max_threads, "[trainer] --threads ", flags.threads,
                ": expected at most ", max_threads, " (1024 or 4x the cores)");
  if (flags.threads > 0) omp_set_num_threads(flags.threads);
  set_gemm_path(parse_gemm_path(flags.gemm));
  return TrainingRun(flags, job).run();
}

int trainer_main(const std::string& name,
                 CLI::App& app,
                 int argc,
                 char** argv,
                 const std::function<int()>& body) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    return body();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", name.c_str(), e.what());
    distributed::Communicator::abort_run(1);
    return 1;
  }
}

}  // namespace lattice::examples
