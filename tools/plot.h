// `lattice plot` and the sweep's figures: curves from run folders' metrics.jsonl, a scatter
// with its Pareto frontier, general x-y panels (`lattice analyze`), drawn by gnuplot; and a
// Markdown table of run summaries.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace lattice::tools {

/// A run folder and the label its curve gets.
struct PlotRun {
  std::string dir = {};
  std::string label = {};
};

struct CurvesRequest {
  std::vector<PlotRun> runs = {};
  // One panel each: any key of metrics.jsonl (loss, val_loss, val_accuracy, a diagnostic)
  std::vector<std::string> metrics = {"loss"};
  std::string x = "step";  // step | epoch | seconds
  std::string title = {};
  std::string out = "curves.png";  // .png (pngcairo, else png) or .svg
  std::string script = {};         // where to keep the gnuplot script ("" = a removed temp file)
  // Throw when no run logs a metric (the command line's check for a misspelled key); else its
  // panel says that it has no finite values.
  bool require_logged = false;
};

/// Labels for run folders: each folder's name, or parent/name where names repeat.
std::vector<PlotRun> label_runs(const std::vector<std::string>& dirs);

/// Draws one line per run and panel; null (NaN) values leave gaps, and a loss panel spanning
/// more than two decades gets a log scale. Throws lattice::Error on a missing metrics.jsonl,
/// a metric no run logs (with require_logged), an unknown axis, or a gnuplot failure (its
/// message in the error).
void plot_curves(const CurvesRequest& request);

/// One run's histogram of |Δθ|/ULP(θ) over all parameters at one observed step, from the beta
/// instrument's lines in diagnostics.jsonl.
struct UlpHistogram {
  int64_t step = 0;
  int lowest_octave = 0;  // counts[k] holds ratios in [2^(k+lowest), 2^(k+lowest+1))
  std::vector<int64_t> counts;
  int64_t below = 0, above = 0;  // ratios below the lowest octave (zero steps too), above all
  /// Every ratio counted: below, the octaves and above.
  int64_t total() const;
  /// The fraction of ratios >= ½: the mass that crosses a cell boundary (β_t).
  double mass_above_half() const;
};
/// The histogram at `step` of a run folder (0: its last observed step). Throws lattice::Error
/// when diagnostics.jsonl is missing or has no histogram at that step (run with
/// --diagnostics beta on an elementwise Λw).
UlpHistogram read_ulp_histogram(const std::string& dir, int64_t step);
/// Draws each run's histogram as the fraction of parameters per octave of |Δθ|/ULP, with the
/// ½-ULP boundary marked.
void plot_ulp_histograms(const std::vector<PlotRun>& runs,
                         const std::vector<UlpHistogram>& histograms,
                         const std::string& out,
                         const std::string& script);

/// A scatter of points grouped by series, and the staircase of the Pareto frontier.
struct ScatterPoint {
  double x = 0, y = 0;
  std::string series = {};
};
void plot_pareto(const std::vector<ScatterPoint>& points,
                 const std::vector<size_t>& frontier,
                 const std::string& title,
                 const std::string& out,
                 const std::string& script);

/// Indices of the points no other point beats: none with x <= and y >= (one strictly), in
/// increasing x. Points with non-finite coordinates take no part.
std::vector<size_t> pareto_frontier(const std::vector<ScatterPoint>& points);

/// Markdown: run, trainer, stack, status, steps, train loss, val loss, val accuracy, seconds,
/// from each folder's summary.json ("-" where a run has none yet).
std::string summaries_markdown(const std::vector<PlotRun>& runs);

/// One series of a panel: points, a line or a dashed line through (x, y).
struct PlotSeries {
  std::string title = {};
  std::vector<double> x = {}, y = {};
  std::string style = "points";  // points | lines | dashed
};
struct PlotPanel {
  std::string title = {}, x_label = {}, y_label = {};
  bool log_x = false, log_y = false;
  std::vector<PlotSeries> series = {};
};
/// Panels side by side in one figure. Non-finite points, and non-positive ones on a log axis,
/// are left out. Throws lattice::Error on a gnuplot failure.
void plot_panels(const std::vector<PlotPanel>& panels,
                 const std::string& title,
                 const std::string& out,
                 const std::string& script = {});

/// Whether a gnuplot executable can be run.
bool gnuplot_available();

}  // namespace lattice::tools
