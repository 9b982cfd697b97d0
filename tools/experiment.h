// `lattice experiment NAME`: the fistful-of-errors paper's experiments (§7) and predictions (§8),
// and the forward-stability paper's three experiments (§4), as one command each: the trainer
// runs each needs (llama; vit for the stability ones), then its Markdown table and figures built
// from the run folders (metrics.jsonl with the diagnostics' keys, diagnostics.jsonl,
// summary.json).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "tools/sweep.h"

namespace lattice::tools {

/// temperature, head-dim, ffn-width, precision-order, hysteresis, crossing, stochastic-rounding;
/// stability-predictor, stability-lead-lag, stability-epsilon.
extern const std::vector<std::string> kExperimentNames;

/// The precisions of §7, each as the precision-stack spec a run trains under: fp32, bf16 and
/// fp16 are the named stacks (weights, activations and gradients on the format, fp32 masters);
/// e4m3 and e5m2 put every GEMM operand on the fp8 format with a power-of-two scale per block of
/// 32 along the reduction (MX scaling; unscaled e4m3 gradients underflow and the model does not
/// learn) over the bf16 stack, as fp8 training is done.
extern const std::vector<std::pair<std::string, std::string>> kExperimentPrecisions;

/// The size of an experiment's runs; zeros (and empty strings) take the experiment's defaults.
struct ExperimentOptions {
  std::string out = {};         // "" -> runs/experiment-NAME
  std::string trainer = {};     // "" -> the plan's (llama, or vit); a name or a path
  std::string precisions = {};  // comma list of kExperimentPrecisions names
  int64_t steps = 0;            // optimizer steps per run
  int64_t seeds = 0;            // seeds 0..seeds-1 per configuration
  int64_t dim = 0;              // d_model
  int64_t layers = 0;
  int64_t sequence = 0;
  int64_t batch = 0;
};

/// The runs of an experiment. Each run's `values` names its coordinates (precision, d_k, k, lr,
/// seed, stack, role...) and the table builders read them back. Throws lattice::Error on an
/// unknown NAME ("[experiment] unknown experiment \"x\" (known: temperature, ...)") or an
/// unknown precision.
struct ExperimentPlan {
  std::string name = {}, root = {};
  std::string trainer = "llama";  // the trainer its runs take
  int64_t steps = 0;
  std::vector<RunConfig> runs = {};
  std::vector<std::string> notes = {};  // e.g. head dimensions that do not divide d_model
};
ExperimentPlan plan_experiment(const std::string& name, const ExperimentOptions& options);

/// The table of an experiment over its run folders (runs without summary.json show "-"), and
/// its numbers by "<row>/<column>" for tests and the README. Throws lattice::Error on an
/// unreadable metrics.jsonl or summary.json.
struct ExperimentReport {
  std::string markdown = {};
  std::map<std::string, double> values = {};
};
ExperimentReport report_experiment(const ExperimentPlan& plan);

/// The figures §7 and §8 describe, as PNG files under the plan's root; returns their paths.
/// Throws lattice::Error on a gnuplot failure.
std::vector<std::string> plot_experiment(const ExperimentPlan& plan);

/// Runs the plan's runs that have no summary.json yet with `trainer_path`, `jobs` at a time
/// with --threads `threads` each (run_sweep); returns the number of failed runs. Throws
/// lattice::Error when a finished run's command.txt is not the plan's command (a run of another
/// size), or the trainer lacks a flag.
int run_experiment(const ExperimentPlan& plan,
                   const std::string& trainer_path,
                   int jobs,
                   int threads);

}  // namespace lattice::tools
