// The reports of a sweep, written into its output root: runs.csv (every run), table.md (the FP4
// appendix's Table 3 layout), pareto.png (complexity points vs score) and curves.png (loss
// curves of the table's rows).
#pragma once

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "tools/sweep.h"

namespace lattice::tools {

/// One run's outcome, from its folder.
struct RunResult {
  std::string id = {}, role = {}, baseline = {}, dataset = {}, dir = {};
  std::map<std::string, std::string> values = {};  // axis -> effective value
  std::string stack = {};                          // canonical spec
  std::string status = "missing";                  // finished | diverged | failed | missing
  std::string optimizer = "adam", loss_scale = "none";
  std::string error = {};  // failed runs: the first line of error.txt
  double val_loss = NAN, train_loss = NAN, val_accuracy = NAN, complexity_points = NAN, score = NAN,
         seconds = NAN, step_ms_median = NAN;
};

/// Reads root/config.id: summary.json (finished, or diverged when its status says so or its
/// val loss is null), else error.txt (failed), else missing.
RunResult load_run(const RunConfig& config, const std::string& root, const std::string& dataset);

/// Sets each non-baseline run's Score against ref = the lowest finite val loss of the dataset's
/// bf16 baselines (stack "bf16"; any baseline when there is none). Returns ref per dataset.
std::map<std::string, double> score_runs(std::vector<RunResult>& runs);

/// A row of table.md: its Source label and the run.
struct TableRow {
  std::string source = {};
  const RunResult* run = nullptr;
};

/// Table 3's rows for one dataset: Baseline (the best run of each baseline stack and optimiser;
/// the ref marked), then per scale format Best Score (Neg) (the highest negative score), Best
/// Score (Pos) (the highest score >= 0), Best loss <SCALE>, and Pure FP4 (the best run whose
/// stack is a pure-fp4-* stack with Adam and no loss scaling: 0 complexity points; a diverged
/// one when no such run has a finite loss). Block-scaled GEMM runs only, besides baselines.
std::vector<TableRow> select_table_rows(const std::vector<RunResult>& runs,
                                        const std::string& dataset);

/// runs.csv: id, role, every axis, stack, status, val_loss, train_loss, val_accuracy,
/// complexity_points, score, seconds, step_ms_median, error.
std::string runs_csv(const std::vector<RunResult>& runs, const std::vector<std::string>& axes);

/// table.md: the Table 3 columns, rows per dataset, and a line on the reference and counts.
std::string table_markdown(const std::vector<RunResult>& runs,
                           const std::map<std::string, double>& refs);

/// Loads every run of the expansion, writes runs.csv and table.md, and (when gnuplot runs)
/// pareto.png and curves.png with their gnuplot scripts. Prints the table on stdout.
void write_reports(const SweepSpec& spec, const Expansion& expansion, const std::string& root);

}  // namespace lattice::tools
