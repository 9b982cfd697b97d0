// The shared training loop and its outputs (see trainer.h).
#include "examples/trainer.h"

#include <omp.h>

#include <algorithm>
#include <cerrno>
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
#include "optim/checkpoint.h"
#include "optim/loss_scaler.h"
#include "optim/optimizer.h"
#include "optim/schedule.h"
#include "tensor/design_space.h"
#include "tensor/ops.h"
#include "tensor/precision_stack.h"
#include "tensor/random.h"

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

std::unique_ptr<optim::Optimizer> make_optimizer(const TrainerFlags& flags,
                                                 const nn::Module& model,
                                                 const PrecisionStack& stack) {
  auto groups = optim::one_group(model.named_parameters(), flags.lr, flags.weight_decay);
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

std::string clock_text(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const int64_t s = int64_t(seconds + 0.5);
  return s >= 3600
             ? concat(s / 3600, ":", (s / 60 % 60) / 10, s / 60 % 10, ":", (s % 60) / 10, s % 10)
             : concat(s / 60, ":", (s % 60) / 10, s % 10);
}

}  // namespace

void add_trainer_flags(CLI::App& app, TrainerFlags& flags) {
  app.add_option("--stack", flags.stack, "precision stack spec (see README), e.g. gemm=mxfp4")
      ->capture_default_str();
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
  app.add_option("--out", flags.out, "output directory (metrics.jsonl, summary.json, checkpoint)")
      ->capture_default_str();
  app.add_option("--threads", flags.threads, "CPU threads (0: all; at most 1024 or 4x the cores)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--resume", flags.resume, "checkpoint to continue from (path without suffix)");
  app.add_option("--checkpoint-every", flags.checkpoint_every,
                 "write a checkpoint every N steps (and always at the end)")
      ->check(CLI::NonNegativeNumber);
  app.footer(
      concat("A run stops as \"diverged\" (in summary.json; exit status 0) when its loss is "
             "non-finite, or above ",
             kExplodedLoss, " x its first loss, for ", kDivergedSteps, " steps in a row.\n"));
  app.add_option("--log-every", flags.log_every, "progress line every N steps")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
}

Evaluation evaluate_classifier(nn::Module& model, data::DataLoader& loader) {
  NoGradGuard no_grad;
  double total_loss = 0.0;
  int64_t correct = 0, count = 0;
  while (auto batch = loader.next()) {
    const Tensor logits = model(batch->input);
    total_loss += cross_entropy(logits, batch->target, -100, Reduction::sum).item<double>();
    const std::vector<float> scores = logits.to_vector<float>();
    const std::vector<int64_t> labels = batch->target.to_vector<int64_t>();
    const size_t classes = size_t(logits.shape(1));
    for (size_t i = 0; i < labels.size(); ++i) {
      const auto row = scores.begin() + std::ptrdiff_t(i * classes);
      // The first maximal logit is the prediction, as argmax.
      correct += std::max_element(row, row + std::ptrdiff_t(classes)) - row == labels[i];
    }
    count += batch->size();
  }
  LATTICE_CHECK(count > 0, "[evaluate] the validation loader has no batches");
  return {total_loss / double(count), double(correct) / double(count)};
}

int run_training(const TrainerFlags& flags, TrainingJob& job) {
  LATTICE_CHECK(job.model && job.train && job.loss, "[trainer] ", job.name,
                ": a job needs a model, a training loader and a loss");
  // The OpenMP runtime crashes trying to start a million threads.
  const int max_threads = std::max(1024, 4 * omp_get_num_procs());
  LATTICE_CHECK(flags.threads <= max_threads, "[trainer] --threads ", flags.threads,
                ": expected at most ", max_threads, " (1024 or 4x the cores)");
  if (flags.threads > 0) omp_set_num_threads(flags.threads);
  const PrecisionStack stack = parse_precision_stack(flags.stack);
  const std::filesystem::path out = flags.out.empty() ? "runs/" + job.name : flags.out;
  std::filesystem::create_directories(out);

  nn::Module& model = *job.model;
  for (const std::string& item : flags.overrides) {
    const size_t colon = item.find(':');
    LATTICE_CHECK(colon != std::string::npos, "[trainer] --override \"", item,
                  "\": expected PATTERN:SPEC, e.g. 0:gemm=bf16");
    model.override_precision(item.substr(0, colon), parse_precision_stack(item.substr(colon + 1)));
  }
  data::DataLoader& loader = *job.train;
  const int64_t batches_per_epoch = loader.batches_per_epoch();
  LATTICE_CHECK(batches_per_epoch > 0, "[trainer] ", job.name,
                ": the training set gives no batch of size ", flags.batch);
  int64_t total_steps = flags.steps;
  if (total_steps == 0)
    LATTICE_CHECK(!__builtin_mul_overflow(flags.epochs, batches_per_epoch, &total_steps),
                  "[trainer] --epochs ", flags.epochs, " x ", batches_per_epoch,
                  " batches per epoch overflows the step count; expected at most ",
                  std::numeric_limits<int64_t>::max() / batches_per_epoch, " epochs");
  const optim::Schedule schedule = optim::parse_schedule(flags.schedule, total_steps);
  const std::unique_ptr<optim::Optimizer> optimizer = make_optimizer(flags, model, stack);
  optim::LossScaler scaler = make_loss_scaler(flags.loss_scale);

  int64_t step = 0;
  std::optional<double> first_loss;  // the divergence test's reference
  int64_t bad_steps = 0;             // steps in a row with a non-finite or exploded loss
  const std::filesystem::path metrics_path = out / "metrics.jsonl";
  if (!flags.resume.empty()) {
    const std::string stem = checkpoint_stem(flags.resume);
    const optim::TrainingState state =
        optim::load_checkpoint(stem, model.state_dict(), *optimizer, &scaler);
    try {
      loader.load_state(state.data_loader);
    } catch (const std::exception& e) {
      throw Error(concat("[checkpoint] ", stem, ".json: data_loader: ", e.what()));
    }
    step = state.step;
    const nlohmann::json& extra = state.extra;
    if (extra.contains("first_loss") && extra["first_loss"].is_number())
      first_loss = extra["first_loss"].get<double>();
    if (extra.contains("bad_steps") && extra["bad_steps"].is_number_unsigned())
      bad_steps = std::min<int64_t>(extra["bad_steps"].get<int64_t>(), kDivergedSteps);
    // Lines logged after the checkpoint was written come again once the resumed run reaches
    // their steps: cut metrics.jsonl back to its length at the save (when it is this run's).
    std::error_code error;
    std::filesystem::path checkpoint_dir = std::filesystem::path(stem).parent_path();
    if (checkpoint_dir.empty()) checkpoint_dir = ".";
    const bool same_run = std::filesystem::equivalent(checkpoint_dir, out, error);
    if (same_run && extra.contains("metrics_bytes") &&
        extra["metrics_bytes"].is_number_unsigned() &&
        std::filesystem::is_regular_file(metrics_path, error)) {
      const uintmax_t saved = extra["metrics_bytes"].get<uint64_t>();
      if (std::filesystem::file_size(metrics_path) > saved)
        std::filesystem::resize_file(metrics_path, saved);
    }
  }
  std::ofstream metrics(metrics_path, flags.resume.empty() ? std::ios::trunc : std::ios::app);
  LATTICE_CHECK(metrics.good(), "[trainer] ", metrics_path.string(),
                ": cannot open for writing: ", std::strerror(errno));
  // Every line is flushed and checked: a full disk fails the run, it does not finish silently.
  const auto log = [&](const nlohmann::json& line) {
    metrics << line.dump() << '\n' << std::flush;
    LATTICE_CHECK(metrics.good(), "[trainer] ", metrics_path.string(),
                  ": write failed: ", std::strerror(errno));
  };

  const std::string checkpoint_path = (out / "checkpoint").string();
  const auto save = [&] {
    std::error_code error;
    const uintmax_t metrics_bytes = std::filesystem::file_size(metrics_path, error);
    nlohmann::json extra{
        {"bad_steps", bad_steps},
        {"first_loss", first_loss ? nlohmann::json(*first_loss) : nlohmann::json()}};
    if (!error) extra["metrics_bytes"] = metrics_bytes;
    optim::save_checkpoint(checkpoint_path, model.state_dict(), *optimizer,
                           optim::TrainingState{.step = step,
                                                .schedule = flags.schedule,
                                                .data_loader = loader.state(),
                                                .extra = extra},
                           &scaler);
  };

  Evaluation last_evaluation{std::nan(""), std::nullopt};
  int64_t last_evaluated_step = -1;
  double train_seconds = 0.0;
  const Clock::time_point run_start = Clock::now();
  const auto evaluate = [&] {
    if (!job.evaluate || last_evaluated_step == step) return;
    model.eval();
    {
      // Evaluation draws its own random streams (stochastic rounding in a forward quantizer)
      // and hands the training stream back where it was: a run evaluated at a step and one
      // that was not (a resumed run against a straight one) train on the same random bits.
      const RandomState training_random = default_random_state();
      PrecisionScope scope(stack);
      last_evaluation = job.evaluate();
      set_default_random_state(training_random);
    }
    model.train();
    last_evaluated_step = step;
    nlohmann::json line{{"step", step},
                        {"epoch", double(step) / double(batches_per_epoch)},
                        {"val_loss", number_or_null(last_evaluation.loss)},
                        {"seconds", seconds_since(run_start)}};
    if (last_evaluation.accuracy) line["val_accuracy"] = *last_evaluation.accuracy;
    log(line);
    std::fprintf(stderr, "%s  epoch %.2f  val loss %.4f%s\n", job.name.c_str(),
                 double(step) / double(batches_per_epoch), last_evaluation.loss,
                 last_evaluation.accuracy
                     ? concat("  val accuracy ", 100.0 * *last_evaluation.accuracy, "%").c_str()
                     : "");
  };

  std::deque<double> recent_losses;  // the last log_every losses, for the summary's train loss
  std::vector<double> step_ms;
  int64_t samples = 0, steps_this_session = 0;
  std::string status = "finished";
  model.train();
  while (step < total_steps) {
    std::optional<data::Batch> batch = loader.next();
    if (!batch) {  // an epoch ended
      evaluate();
      continue;
    }
    const Clock::time_point start = Clock::now();
    optim::apply_schedule(schedule, *optimizer, step);
    optimizer->zero_grad();
    double loss_value;
    {
      PrecisionScope scope(stack);
      const Tensor loss = job.loss(*batch);
      loss_value = loss.item<double>();
      backward(scaler.scale_loss(loss));
    }
    if (flags.clip > 0) {
      scaler.unscale(*optimizer);
      optim::clip_grad_norm(optimizer->parameters(), flags.clip);
    }
    const bool stepped = scaler.step(*optimizer);
    const double elapsed = seconds_since(start);
    train_seconds += elapsed;
    step_ms.push_back(1e3 * elapsed);
    samples += batch->size();
    ++step, ++steps_this_session;
    recent_losses.push_back(loss_value);
    if (int64_t(recent_losses.size()) > flags.log_every) recent_losses.pop_front();
    log({{"step", step},
         {"epoch", double(step) / double(batches_per_epoch)},
         {"loss", number_or_null(loss_value)},
         {"lr", optimizer->lr()},
         {"loss_scale", scaler.scale()},
         {"skipped", !stepped},
         {"seconds", seconds_since(run_start)}});
    if (step % flags.log_every == 0 || step == total_steps) {
      const double rate = double(samples) / std::max(train_seconds, 1e-9);
      const double eta = double(total_steps - step) * train_seconds / double(steps_this_session);
      std::fprintf(
          stderr, "%s  epoch %.2f  step %lld/%lld  loss %.4f  lr %.2e  %.0f samples/s  ETA %s\n",
          job.name.c_str(), double(step) / double(batches_per_epoch), (long long)step,
          (long long)total_steps, loss_value, optimizer->lr(), rate, clock_text(eta).c_str());
    }
    if (!first_loss && std::isfinite(loss_value)) first_loss = loss_value;
    const bool exploded = first_loss && *first_loss > 0 && loss_value > kExplodedLoss * *first_loss;
    bad_steps = !std::isfinite(loss_value) || exploded ? bad_steps + 1 : 0;
    // Saved after this step's divergence bookkeeping, which the checkpoint carries.
    if (flags.checkpoint_every > 0 && step % flags.checkpoint_every == 0) save();
    if (bad_steps >= kDivergedSteps) {  // a result, not a crash: record it and stop
      status = "diverged";
      std::fprintf(stderr,
                   "%s  loss non-finite or above %g x the first loss (%g) for %lld steps: "
                   "stopping (diverged)\n",
                   job.name.c_str(), kExplodedLoss, first_loss.value_or(std::nan("")),
                   (long long)kDivergedSteps);
      break;
    }
  }
  evaluate();
  save();

  double train_loss = 0.0;
  for (double l : recent_losses) train_loss += l;
  train_loss /= double(std::max<size_t>(recent_losses.size(), 1));
  std::vector<double> sorted_ms = step_ms;
  std::sort(sorted_ms.begin(), sorted_ms.end());
  nlohmann::json summary{
      {"trainer", job.name},
      {"status", status},
      {"steps", step},
      {"epochs", double(step) / double(batches_per_epoch)},
      {"train_loss", number_or_null(train_loss)},
      {"val_loss", number_or_null(last_evaluation.loss)},
      {"seconds", seconds_since(run_start)},
      {"train_seconds", train_seconds},
      {"seconds_per_epoch", train_seconds * double(batches_per_epoch) /
                                double(std::max<int64_t>(steps_this_session, 1))},
      {"step_ms_median", sorted_ms.empty() ? 0.0 : sorted_ms[sorted_ms.size() / 2]},
      {"samples_per_second", double(samples) / std::max(train_seconds, 1e-9)},
      {"skipped_steps", scaler.skipped_steps()},
      {"stack", to_string(stack)},
      {"overrides", flags.overrides},
      {"complexity_points",
       complexity_points(stack, {.loss_scaling = flags.loss_scale != "none",
                                 .stable_spam = flags.optimizer == "stablespam"})},
      {"optimizer", flags.optimizer},
      {"schedule", flags.schedule},
      {"lr", flags.lr},
      {"batch", flags.batch},
      {"loss_scale", flags.loss_scale},
      {"seed", flags.seed},
      {"parameters", model.parameter_count()},
      {"config", job.config}};
  if (last_evaluation.accuracy) summary["val_accuracy"] = *last_evaluation.accuracy;
  {  // written whole, then renamed: a summary.json present means the run ended
    const std::string text = summary.dump(2) + "\n";
    optim::write_file_atomically(
        (out / "summary.json").string(),
        std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()), "trainer");
  }
  std::fprintf(stderr, "%s  %s: %lld steps in %.1f s, train loss %.4f, val loss %.4f%s -> %s\n",
               job.name.c_str(), status.c_str(), (long long)step, seconds_since(run_start),
               train_loss, last_evaluation.loss,
               last_evaluation.accuracy
                   ? concat(", val accuracy ", 100.0 * *last_evaluation.accuracy, "%").c_str()
                   : "",
               out.string().c_str());
  return 0;
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
    return 1;
  }
}

}  // namespace lattice::examples
