// `lattice analyze`: the forward-stability paper's three experiments (§4) on run folders'
// metrics.jsonl, and the statistics they use (Pearson, Spearman, least squares, percentiles,
// lagged cross-correlation with a permutation test, spike Precision@K).
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

namespace lattice::tools {

/// A number for a Markdown table cell, printf-formatted; "-" for NaN and ±inf.
std::string markdown_cell(double value, const char* format = "%.4f");

// ---- Statistics (NaN where a quantity is undefined, e.g. a constant series) ----

/// Pearson correlation of x and y (same length >= 2).
double pearson(std::span<const double> x, std::span<const double> y);
/// 1-based ranks, ties sharing their average rank.
std::vector<double> average_ranks(std::span<const double> x);
/// Spearman's rho: Pearson correlation of the average ranks (the tie-corrected form).
double spearman(std::span<const double> x, std::span<const double> y);

/// Ordinary least squares y = intercept + slope * x, with R^2 = 1 - SS_res / SS_tot.
struct LineFit {
  double slope = 0, intercept = 0, r_squared = 0;
};
LineFit fit_line(std::span<const double> x, std::span<const double> y);

/// The q-th quantile (q in [0, 1]) with linear interpolation between order statistics
/// (numpy's default): values sorted v, position q * (n - 1). Throws on an empty input.
double quantile(std::vector<double> values, double q);

/// (x - mean) / standard deviation (population, n in the denominator).
std::vector<double> z_scores(std::span<const double> x);

/// c(lag) for lag = -max_lag..max_lag (index lag + max_lag): the Pearson correlation of x[t] and
/// y[t + lag] over the t where both exist. A positive best lag means x leads y.
std::vector<double> lagged_cross_correlation(std::span<const double> x,
                                             std::span<const double> y,
                                             int max_lag);

/// The lead-lag test of §4.3: the lag of the largest c(lag), and a
/// permutation p-value that re-selects the best lag for each of `permutations` shuffles of y
/// (Fisher-Yates on mt19937_64(seed)): p = (1 + #{max c_perm >= max c}) / (1 + permutations).
struct LeadLag {
  int best_lag = 0;
  double best_correlation = 0, p_value = 1;
  std::vector<double> correlations = {};  // c(lag), lag = -max_lag..max_lag
};
LeadLag lead_lag(std::span<const double> x,
                 std::span<const double> y,
                 int max_lag,
                 int permutations,
                 uint64_t seed);

/// Rolling z-score over the `window` points ending at t (t included), with the sample standard
/// deviation; NaN for t < window - 1 and where the window is constant.
std::vector<double> rolling_z_scores(std::span<const double> x, int window);

/// Spike Precision@K (§4.3): the leader's spikes (rolling z > threshold) ranked by z, the top k
/// of them kept; the fraction followed by a target spike at some s with t < s <= t + horizon.
/// NaN when the leader has no spike.
struct SpikePrecision {
  double precision = 0;
  int selected = 0, hits = 0;
};
SpikePrecision spike_precision_at_k(std::span<const double> leader,
                                    std::span<const double> target,
                                    int k,
                                    int horizon,
                                    int window,
                                    double threshold);

// ---- The experiments ----

/// One run folder read for analysis: metrics.jsonl's numeric keys per line (null -> NaN) and
/// summary.json's stack and seed.
struct RunMetrics {
  std::string dir = {}, label = {}, stack = {};
  int64_t seed = -1;              // -1: summary.json has none
  double activation_epsilon = 0;  // ε_mach of the stack's activation lattice
  std::vector<std::map<std::string, double>> lines = {};
};
/// Reads the folders, labelled as label_runs does. Throws lattice::Error naming the folder when
/// it, its metrics.jsonl or its summary.json is missing, or the stack does not parse.
std::vector<RunMetrics> read_runs(const std::vector<std::string>& dirs);

/// Exp-1 (§4.2): the combined predictor (and its single terms) against r_block, per block.
/// Points: `run` takes one point per run, the 95th-percentile tail over blocks and logged steps
/// of each quantity separately (the paper's per-config tails); `block` one per run and block
/// (tails over steps); `step` one per block and logged step.
struct Exp1Options {
  std::string points = "run";  // run | block | step
  double tail = 0.95;
};
struct Exp1Point {
  std::string run = {}, block = {};
  int64_t step = -1;  // -1 for tails
  double epsilon = 0, r_block = 0;
  double predictor = 0, kappa_softmax = 0, kappa_score = 0, kappa_v = 0;  // NaN where not logged
};
struct Exp1Row {
  std::string proxy = {};
  int points = 0;  // points with a positive, finite proxy and r_block (the logs need both)
  double pearson_log = 0, spearman = 0, r_squared = 0, slope = 0;  // of log10 r on log10 proxy
};
struct Exp1Result {
  std::vector<Exp1Point> points = {};
  std::vector<Exp1Row> rows = {};
};
/// Throws lattice::Error when a run has no line with predictor/<block> and r_block/<block>, or
/// fewer than 3 points have positive predictor and r_block.
Exp1Result analyze_exp1(const std::vector<RunMetrics>& runs, const Exp1Options& options);
std::string exp1_markdown(const Exp1Result& result, const Exp1Options& options);
/// exp1_raw.png (predictor vs r_block) and exp1_collapse.png (predictor * ε_mach vs r_block),
/// log axes, one colour per run and the least-squares line.
void plot_exp1(const Exp1Result& result, const std::string& out_dir);

/// Exp-2 (§4.3): per run, max-κ_softmax(t) against the forward error r_block_max(t) and against
/// the loss, over the logged steps that have both. Lags, horizon and window count logged steps.
struct Exp2Options {
  int max_lag = 60, permutations = 999, horizon = 40, window = 20;
  double threshold = 1.5, k_fraction = 0.1;  // K = ceil(k_fraction * T)
  uint64_t seed = 0;
};
struct Exp2Row {
  std::string run = {}, target = {};   // target: "fwd error" or "loss"
  int length = 0, max_lag = 0, k = 0;  // max_lag: clamped to length / 2
  int64_t step_stride = 1;             // steps between logged points (the most common gap)
  LeadLag lead_lag = {};
  SpikePrecision precision = {};
  std::vector<int64_t> steps = {};
  std::vector<double> leader = {}, target_values = {};
};
struct Exp2Result {
  std::vector<Exp2Row> rows = {};
};
/// Throws lattice::Error when a run has fewer than window + 2 lines with kappa_softmax_max and
/// r_block_max. The loss row is left out where fewer lines have both.
Exp2Result analyze_exp2(const std::vector<RunMetrics>& runs, const Exp2Options& options);
std::string exp2_markdown(const Exp2Result& result, const Exp2Options& options);
/// exp2_<run>.png per run: c(lag) for each target, and the z-scored series against the step.
void plot_exp2(const Exp2Result& result, const std::string& out_dir);

/// Exp-3 (§4.4): loss (and r_block_max) over the last `tail_steps` steps of control and
/// intervention runs, paired by summary.json's seed; differences are control - intervention
/// (positive: the ε policy lowered it).
struct Exp3Options {
  int64_t tail_steps = 50;
};
struct Exp3Tail {
  double loss_mean = 0, loss_median = 0, loss_p95 = 0, r_mean = 0;  // r_mean NaN if not logged
  std::vector<int64_t> steps = {};
  std::vector<double> losses = {};
};
struct Exp3Pair {
  int64_t seed = 0;
  std::string control = {}, intervention = {};
  Exp3Tail control_tail = {}, intervention_tail = {};
};
struct Exp3Result {
  std::vector<Exp3Pair> pairs = {};
};
/// Throws lattice::Error on a run without a seed or a loss, a seed twice in a group, or a seed
/// without its partner.
Exp3Result analyze_exp3(const std::vector<RunMetrics>& control,
                        const std::vector<RunMetrics>& intervention,
                        const Exp3Options& options);
std::string exp3_markdown(const Exp3Result& result, const Exp3Options& options);
/// exp3_loss_tails.png: each pair's tail loss, control solid and intervention dashed.
void plot_exp3(const Exp3Result& result, const std::string& out_dir);

}  // namespace lattice::tools
