// The forward-stability paper's experiments (§4) on run folders, and their statistics (see
// analyze.h). Where §4 leaves a choice open, the choice is named at the code that makes it.
#include "tools/analyze.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <set>

#include "core/error.h"
#include "core/format.h"
#include "tensor/precision_stack.h"
#include "tools/plot.h"

namespace lattice::tools {

namespace fs = std::filesystem;

std::string markdown_cell(double value, const char* format) {
  if (!std::isfinite(value)) return "-";
  char text[64];
  std::snprintf(text, sizeof text, format, value);
  return text;
}

namespace {

double mean_of(std::span<const double> x) {
  return std::accumulate(x.begin(), x.end(), 0.0) / double(x.size());
}

/// The sample standard deviation (n - 1), NaN below two values.
double sample_deviation(std::span<const double> x) {
  if (x.size() < 2) return NAN;
  const double m = mean_of(x);
  double squares = 0;
  for (double v : x) squares += (v - m) * (v - m);
  return std::sqrt(squares / double(x.size() - 1));
}

std::vector<double> finite_values(const std::vector<double>& x) {
  std::vector<double> out;
  for (double v : x)
    if (std::isfinite(v)) out.push_back(v);
  return out;
}

/// The tail of the finite values; NaN when there are none.
double tail_of(const std::vector<double>& x, double q) {
  const std::vector<double> finite = finite_values(x);
  return finite.empty() ? NAN : quantile(finite, q);
}

double value_or_nan(const std::map<std::string, double>& line, const std::string& key) {
  const auto it = line.find(key);
  return it == line.end() ? NAN : it->second;
}

/// The line's step; -1 where it has none.
int64_t step_of(const std::map<std::string, double>& line) {
  const double step = value_or_nan(line, "step");
  return std::isfinite(step) ? int64_t(step) : -1;
}

/// A run label as a file-name part: letters, digits, '-' and '.' kept, the rest '_'.
std::string file_part(const std::string& label) {
  std::string out = label;
  for (char& c : out)
    if (!std::isalnum((unsigned char)c) && c != '-' && c != '.') c = '_';
  return out;
}

}  // namespace

// ---- Statistics ----

namespace {

/// The means of two equally long series and their centred sums of products.
struct CoMoments {
  double mean_x = 0, mean_y = 0, sxy = 0, sxx = 0, syy = 0;
};

CoMoments co_moments(const char* op, std::span<const double> x, std::span<const double> y) {
  LATTICE_CHECK(x.size() == y.size(), "[", op, "] series of ", x.size(), " and ", y.size(),
                " values; expected equal lengths");
  CoMoments m{.mean_x = mean_of(x), .mean_y = mean_of(y)};
  for (size_t i = 0; i < x.size(); ++i) {
    m.sxy += (x[i] - m.mean_x) * (y[i] - m.mean_y);
    m.sxx += (x[i] - m.mean_x) * (x[i] - m.mean_x);
    m.syy += (y[i] - m.mean_y) * (y[i] - m.mean_y);
  }
  return m;
}

}  // namespace

double pearson(std::span<const double> x, std::span<const double> y) {
  const CoMoments m = co_moments("pearson", x, y);
  if (x.size() < 2) return NAN;
  return (m.sxx > 0 && m.syy > 0) ? m.sxy / std::sqrt(m.sxx * m.syy) : NAN;
}

std::vector<double> average_ranks(std::span<const double> x) {
  std::vector<size_t> order(x.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return x[a] < x[b]; });
  std::vector<double> ranks(x.size());
  for (size_t first = 0; first < order.size();) {
    size_t last = first;
    while (last + 1 < order.size() && x[order[last + 1]] == x[order[first]]) ++last;
    const double rank = 0.5 * double(first + last) + 1.0;  // the tie group's average rank
    for (size_t i = first; i <= last; ++i) ranks[order[i]] = rank;
    first = last + 1;
  }
  return ranks;
}

double spearman(std::span<const double> x, std::span<const double> y) {
  return pearson(average_ranks(x), average_ranks(y));
}

LineFit fit_line(std::span<const double> x, std::span<const double> y) {
  const CoMoments m = co_moments("fit_line", x, y);
  if (x.size() < 2 || m.sxx <= 0) return {NAN, NAN, NAN};
  const double syy = m.syy;
  LineFit fit;
  fit.slope = m.sxy / m.sxx;
  fit.intercept = m.mean_y - fit.slope * m.mean_x;
  double residual = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double r = y[i] - (fit.intercept + fit.slope * x[i]);
    residual += r * r;
  }
  fit.r_squared = syy > 0 ? 1.0 - residual / syy : NAN;
  return fit;
}

double quantile(std::vector<double> values, double q) {
  LATTICE_CHECK(!values.empty(), "[quantile] no values; expected at least one");
  LATTICE_CHECK(q >= 0 && q <= 1, "[quantile] q = ", q, "; expected 0 <= q <= 1");
  std::sort(values.begin(), values.end());
  const double position = q * double(values.size() - 1);
  const size_t below = size_t(std::floor(position));
  const size_t above = std::min(below + 1, values.size() - 1);
  return values[below] + (position - double(below)) * (values[above] - values[below]);
}

std::vector<double> z_scores(std::span<const double> x) {
  std::vector<double> z(x.size(), NAN);
  if (x.empty()) return z;
  const double m = mean_of(x);
  double squares = 0;
  for (double v : x) squares += (v - m) * (v - m);
  const double deviation = std::sqrt(squares / double(x.size()));
  if (deviation > 0)
    for (size_t i = 0; i < x.size(); ++i) z[i] = (x[i] - m) / deviation;
  return z;
}

std::vector<double> lagged_cross_correlation(std::span<const double> x,
                                             std::span<const double> y,
                                             int max_lag) {
  LATTICE_CHECK(x.size() == y.size(), "[cross_correlation] series of ", x.size(), " and ", y.size(),
                " values; expected equal lengths");
  LATTICE_CHECK(max_lag >= 0 && size_t(max_lag) + 2 <= x.size(), "[cross_correlation] max lag ",
                max_lag, " for ", x.size(), " values; expected 0 <= max lag < length");
  // Pearson over the overlap, not the mean of products of the whole series' z-scores: the
  // latter exceeds 1 where the overlap's own spread differs from the series'.
  const size_t n = x.size();
  std::vector<double> c;
  for (int lag = -max_lag; lag <= max_lag; ++lag) {
    const size_t shift = size_t(std::abs(lag)), overlap = n - shift;
    const size_t x_first = lag < 0 ? shift : 0, y_first = lag > 0 ? shift : 0;
    c.push_back(pearson(x.subspan(x_first, overlap), y.subspan(y_first, overlap)));
  }
  return c;
}

LeadLag lead_lag(std::span<const double> x,
                 std::span<const double> y,
                 int max_lag,
                 int permutations,
                 uint64_t seed) {
  LATTICE_CHECK(permutations >= 0, "[lead_lag] ", permutations,
                " permutations; expected a count >= 0");
  // The index of the largest finite c(lag); -1 when none is finite (a constant series).
  const auto best_of = [](const std::vector<double>& c) {
    int best = -1;
    for (size_t i = 0; i < c.size(); ++i)
      if (std::isfinite(c[i]) && (best < 0 || c[i] > c[size_t(best)])) best = int(i);
    return best;
  };
  // §4.3 z-scores both series first; the Pearson correlation per lag does that implicitly.
  LeadLag result;
  result.correlations = lagged_cross_correlation(x, y, max_lag);
  const int best = best_of(result.correlations);
  if (best < 0) {
    result.best_correlation = result.p_value = NAN;
    return result;
  }
  result.best_lag = best - max_lag;
  result.best_correlation = result.correlations[size_t(best)];
  // §4.3 "re-select the best lag per permutation": the statistic is the maximum over lags, so
  // the test accounts for the scan. mt19937_64 and the modulo draw are the same on every
  // platform, so a seed gives the same p everywhere.
  std::mt19937_64 random(seed);
  std::vector<double> shuffled(y.begin(), y.end());
  int at_least_as_large = 0;
  for (int p = 0; p < permutations; ++p) {
    for (size_t i = shuffled.size() - 1; i > 0; --i)
      std::swap(shuffled[i], shuffled[random() % (i + 1)]);
    const std::vector<double> c = lagged_cross_correlation(x, shuffled, max_lag);
    const int permuted_best = best_of(c);
    if (permuted_best >= 0 && c[size_t(permuted_best)] >= result.best_correlation)
      ++at_least_as_large;
  }
  result.p_value = double(1 + at_least_as_large) / double(1 + permutations);
  return result;
}

std::vector<double> rolling_z_scores(std::span<const double> x, int window) {
  LATTICE_CHECK(window >= 2, "[rolling_z_scores] window ", window, "; expected >= 2");
  std::vector<double> z(x.size(), NAN);
  for (size_t t = size_t(window) - 1; t < x.size(); ++t) {
    const std::span<const double> recent = x.subspan(t + 1 - size_t(window), size_t(window));
    const double deviation = sample_deviation(recent);
    if (deviation > 0) z[t] = (x[t] - mean_of(recent)) / deviation;
  }
  return z;
}

SpikePrecision spike_precision_at_k(std::span<const double> leader,
                                    std::span<const double> target,
                                    int k,
                                    int horizon,
                                    int window,
                                    double threshold) {
  LATTICE_CHECK(leader.size() == target.size(), "[precision_at_k] series of ", leader.size(),
                " and ", target.size(), " values; expected equal lengths");
  LATTICE_CHECK(k >= 1 && horizon >= 1, "[precision_at_k] k = ", k, ", horizon = ", horizon,
                "; expected both >= 1");
  const std::vector<double> leader_z = rolling_z_scores(leader, window);
  const std::vector<double> target_z = rolling_z_scores(target, window);
  std::vector<size_t> spikes;
  for (size_t t = 0; t < leader_z.size(); ++t)
    if (leader_z[t] > threshold) spikes.push_back(t);
  std::stable_sort(spikes.begin(), spikes.end(),
                   [&](size_t a, size_t b) { return leader_z[a] > leader_z[b]; });
  if (spikes.size() > size_t(k)) spikes.resize(size_t(k));
  SpikePrecision result;
  result.selected = int(spikes.size());
  for (size_t t : spikes) {
    const size_t end = std::min(target_z.size(), t + size_t(horizon) + 1);
    for (size_t s = t + 1; s < end; ++s)
      if (target_z[s] > threshold) {
        ++result.hits;
        break;
      }
  }
  result.precision = spikes.empty() ? NAN : double(result.hits) / double(result.selected);
  return result;
}

// ---- Run folders ----

std::vector<RunMetrics> read_runs(const std::vector<std::string>& dirs) {
  LATTICE_CHECK(!dirs.empty(),
                "[analyze] no run folders given; expected folders with "
                "metrics.jsonl and summary.json");
  std::vector<RunMetrics> runs;
  for (const PlotRun& labelled : label_runs(dirs)) {
    RunMetrics run{.dir = labelled.dir, .label = labelled.label};
    LATTICE_CHECK(fs::is_directory(run.dir), "[analyze] ", run.dir,
                  ": no such folder (expected a run folder with metrics.jsonl and summary.json)");
    const fs::path metrics = fs::path(run.dir) / "metrics.jsonl";
    std::ifstream in(metrics);
    LATTICE_CHECK(in.good(), "[analyze] ", metrics.string(),
                  ": no such file (expected the run's metrics, one JSON object per line)");
    std::string text;
    for (int number = 1; std::getline(in, text); ++number) {
      if (text.empty()) continue;
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(text);
      } catch (const std::exception&) {
        // The last line of a run killed mid-write may be cut short; any other is an error.
        if (in.peek() == EOF) break;
        throw Error(concat("[analyze] ", metrics.string(), ":", number, ": not a JSON object"));
      }
      LATTICE_CHECK(j.is_object(), "[analyze] ", metrics.string(), ":", number,
                    ": not a JSON object");
      std::map<std::string, double> line;
      for (const auto& [key, value] : j.items())
        if (value.is_number())
          line[key] = value.get<double>();
        else if (value.is_null())
          line[key] = NAN;
      run.lines.push_back(std::move(line));
    }
    const fs::path summary_path = fs::path(run.dir) / "summary.json";
    std::ifstream summary_file(summary_path);
    LATTICE_CHECK(summary_file.good(), "[analyze] ", summary_path.string(),
                  ": no such file (expected the run's summary with \"stack\" and \"seed\")");
    nlohmann::json summary;
    try {
      summary = nlohmann::json::parse(summary_file);
    } catch (const std::exception&) {
      throw Error(concat("[analyze] ", summary_path.string(), ": not a JSON object"));
    }
    LATTICE_CHECK(summary.is_object() && summary.contains("stack") && summary["stack"].is_string(),
                  "[analyze] ", summary_path.string(),
                  ": no \"stack\" (expected the run's precision-stack spec)");
    run.stack = summary["stack"].get<std::string>();
    if (summary.contains("seed") && summary["seed"].is_number_integer())
      run.seed = summary["seed"].get<int64_t>();
    try {
      run.activation_epsilon = parse_precision_stack(run.stack).activations.element.epsilon();
    } catch (const Error& e) {
      throw Error(concat("[analyze] ", summary_path.string(), ": ", e.what()));
    }
    runs.push_back(std::move(run));
  }
  return runs;
}

// ---- Exp-1 ----

namespace {

constexpr const char* kProxyCombined = "combined";
constexpr const char* kProxyScaled = "combined * ε_mach";
constexpr const char* kProxyRescaledError = "combined (r_block / ε_mach)";

/// Each block's (predictor, r_block, single terms) at each logged step of one run.
std::vector<Exp1Point> step_points(const RunMetrics& run) {
  std::vector<Exp1Point> points;
  for (const auto& line : run.lines)
    for (const auto& [key, r_block] : line) {
      if (!key.starts_with("r_block/")) continue;
      const std::string block = key.substr(std::string("r_block/").size());
      const auto predictor = line.find("predictor/" + block);
      if (predictor == line.end()) continue;
      points.push_back({.run = run.label,
                        .block = block,
                        .step = step_of(line),
                        .epsilon = run.activation_epsilon,
                        .r_block = r_block,
                        .predictor = predictor->second,
                        .kappa_softmax = value_or_nan(line, "kappa_softmax/" + block),
                        .kappa_score = value_or_nan(line, "kappa_score/" + block),
                        .kappa_v = value_or_nan(line, "kappa_v/" + block)});
    }
  return points;
}

/// One point of q-quantile tails (each quantity's own, over its finite values) of `points`.
Exp1Point tail_point(const std::vector<Exp1Point>& points, const std::string& block, double q) {
  const auto tail = [&](double Exp1Point::*field) {
    std::vector<double> values;
    for (const Exp1Point& p : points) values.push_back(p.*field);
    return tail_of(values, q);
  };
  return {.run = points.front().run,
          .block = block,
          .step = -1,
          .epsilon = points.front().epsilon,
          .r_block = tail(&Exp1Point::r_block),
          .predictor = tail(&Exp1Point::predictor),
          .kappa_softmax = tail(&Exp1Point::kappa_softmax),
          .kappa_score = tail(&Exp1Point::kappa_score),
          .kappa_v = tail(&Exp1Point::kappa_v)};
}

/// The regression of log10 y on log10 x over the points where both are positive and finite.
Exp1Row regress(const std::string& proxy, const std::vector<std::pair<double, double>>& xy) {
  std::vector<double> log_x, log_y, x, y;
  for (const auto& [a, b] : xy)
    if (std::isfinite(a) && std::isfinite(b) && a > 0 && b > 0) {
      x.push_back(a), y.push_back(b);
      log_x.push_back(std::log10(a)), log_y.push_back(std::log10(b));
    }
  Exp1Row row{.proxy = proxy, .points = int(x.size())};
  if (x.size() < 3) {
    row.pearson_log = row.spearman = row.r_squared = row.slope = NAN;
    return row;
  }
  const LineFit fit = fit_line(log_x, log_y);
  row.pearson_log = pearson(log_x, log_y);
  row.spearman = spearman(x, y);
  row.r_squared = fit.r_squared;
  row.slope = fit.slope;
  return row;
}

}  // namespace

Exp1Result analyze_exp1(const std::vector<RunMetrics>& runs, const Exp1Options& options) {
  LATTICE_CHECK(options.points == "run" || options.points == "block" || options.points == "step",
                "[analyze exp1] --points ", options.points, ": expected run, block or step");
  LATTICE_CHECK(options.tail > 0 && options.tail <= 1, "[analyze exp1] --tail ", options.tail,
                ": expected a quantile in (0, 1]");
  Exp1Result result;
  for (const RunMetrics& run : runs) {
    const std::vector<Exp1Point> steps = step_points(run);
    LATTICE_CHECK(!steps.empty(), "[analyze exp1] ", run.dir,
                  "/metrics.jsonl: no line with predictor/<block> and r_block/<block> (expected "
                  "the forward-stability diagnostics, e.g. predictor/blocks.0)");
    if (options.points == "step") {
      result.points.insert(result.points.end(), steps.begin(), steps.end());
    } else if (options.points == "run") {
      result.points.push_back(tail_point(steps, "all", options.tail));
    } else {
      std::set<std::string> blocks;
      for (const Exp1Point& p : steps) blocks.insert(p.block);
      for (const std::string& block : blocks) {
        std::vector<Exp1Point> of_block;
        for (const Exp1Point& p : steps)
          if (p.block == block) of_block.push_back(p);
        result.points.push_back(tail_point(of_block, block, options.tail));
      }
    }
  }
  const auto pairs = [&](auto&& x_of, auto&& y_of) {
    std::vector<std::pair<double, double>> xy;
    for (const Exp1Point& p : result.points) xy.emplace_back(x_of(p), y_of(p));
    return xy;
  };
  const auto r_block = [](const Exp1Point& p) { return p.r_block; };
  result.rows.push_back(
      regress(kProxyCombined, pairs([](auto& p) { return p.predictor; }, r_block)));
  LATTICE_CHECK(result.rows[0].points >= 3, "[analyze exp1] ", result.rows[0].points,
                " points with positive, finite predictor and r_block from ", runs.size(),
                " runs (--points ", options.points,
                "); expected at least 3 for a fit (fp32 runs have r_block = 0; --points block or "
                "step gives more points)");
  // §4.2 multiplies the predictor by ε_mach; the bound r <= c ε_mach predictor (Theorem 3)
  // reads the same as r / ε_mach against the predictor, which the last row fits.
  result.rows.push_back(
      regress(kProxyScaled, pairs([](auto& p) { return p.predictor * p.epsilon; }, r_block)));
  result.rows.push_back(regress(
      kProxyRescaledError,
      pairs([](auto& p) { return p.predictor; }, [](auto& p) { return p.r_block / p.epsilon; })));
  const std::pair<const char*, double Exp1Point::*> terms[] = {
      {"κ_softmax", &Exp1Point::kappa_softmax},
      {"κ_score", &Exp1Point::kappa_score},
      {"κ(V)", &Exp1Point::kappa_v}};
  for (const auto& term : terms) {
    const auto field = term.second;  // a copy: clang 14 lambdas cannot capture bindings
    Exp1Row row = regress(term.first, pairs([field](auto& p) { return p.*field; }, r_block));
    if (row.points > 0) result.rows.push_back(row);
  }
  return result;
}

std::string exp1_markdown(const Exp1Result& result, const Exp1Options& options) {
  std::set<std::string> runs;
  for (const Exp1Point& p : result.points) runs.insert(p.run);
  const std::string points =
      options.points == "step" ? "one per block and logged step"
      : options.points == "block"
          ? concat("one per run and block: ", options.tail, " quantile over logged steps")
          : concat("one per run: ", options.tail, " quantile over blocks and logged steps");
  std::string md =
      concat("## Exp-1: combined predictor vs r_block\n\n", runs.size(), " runs, points ", points,
             ". Fits of log10 r_block on log10 proxy over the points where both are "
             "positive.\n\n| proxy | points | Pearson (log) | Spearman | R² | slope |\n"
             "|---|--:|--:|--:|--:|--:|\n");
  for (const Exp1Row& row : result.rows)
    md += concat("| ", row.proxy, " | ", row.points, " | ", markdown_cell(row.pearson_log), " | ",
                 markdown_cell(row.spearman), " | ", markdown_cell(row.r_squared), " | ",
                 markdown_cell(row.slope), " |\n");
  if (options.points == "step") return md;  // one row per block and step is too many to read
  md +=
      "\n| run | block | ε_mach | predictor tail | r_block tail |\n"
      "|---|---|--:|--:|--:|\n";
  for (const Exp1Point& p : result.points)
    md +=
        concat("| ", p.run, " | ", p.block, " | ", markdown_cell(p.epsilon, "%.3g"), " | ",
               markdown_cell(p.predictor, "%.4g"), " | ", markdown_cell(p.r_block, "%.4g"), " |\n");
  return md;
}

void plot_exp1(const Exp1Result& result, const std::string& out_dir) {
  std::vector<std::string> runs;
  for (const Exp1Point& p : result.points)
    if (std::find(runs.begin(), runs.end(), p.run) == runs.end()) runs.push_back(p.run);
  std::vector<PlotPanel> panels(2);
  panels[0] = {.title = "raw",
               .x_label = "combined predictor",
               .y_label = "r_block",
               .log_x = true,
               .log_y = true};
  panels[1] = {.title = "scaled by ε_mach (§4.2)",
               .x_label = "combined predictor * ε_mach",
               .y_label = "r_block",
               .log_x = true,
               .log_y = true};
  for (const std::string& run : runs) {
    PlotSeries raw{.title = run}, scaled{.title = run};
    for (const Exp1Point& p : result.points)
      if (p.run == run) {
        raw.x.push_back(p.predictor), raw.y.push_back(p.r_block);
        scaled.x.push_back(p.predictor * p.epsilon), scaled.y.push_back(p.r_block);
      }
    panels[0].series.push_back(raw);
    panels[1].series.push_back(scaled);
  }
  // The least-squares line of each panel, straight on log axes: y = 10^(a + b log10 x).
  const auto add_fit = [](PlotPanel& panel, const std::string& proxy, const Exp1Row& row) {
    std::vector<double> log_x, log_y;
    for (const PlotSeries& s : panel.series)
      for (size_t i = 0; i < s.x.size(); ++i)
        if (std::isfinite(s.x[i]) && std::isfinite(s.y[i]) && s.x[i] > 0 && s.y[i] > 0)
          log_x.push_back(std::log10(s.x[i])), log_y.push_back(std::log10(s.y[i]));
    const LineFit fit = fit_line(log_x, log_y);
    if (!std::isfinite(fit.slope)) return;
    const auto [low, high] = std::minmax_element(log_x.begin(), log_x.end());
    PlotSeries line{.title = concat(proxy, " fit: slope ", markdown_cell(row.slope, "%.3f"),
                                    ", R² ", markdown_cell(row.r_squared, "%.3f")),
                    .style = "dashed"};
    for (double lx : {*low, *high}) {
      line.x.push_back(std::pow(10.0, lx));
      line.y.push_back(std::pow(10.0, fit.intercept + fit.slope * lx));
    }
    panel.series.push_back(line);
  };
  add_fit(panels[0], "log-log", result.rows[0]);
  add_fit(panels[1], "log-log", result.rows[1]);
  plot_panels(panels, "Exp-1: forward mismatch vs predictor",
              (fs::path(out_dir) / "exp1.png").string());
}

// ---- Exp-2 ----

namespace {

/// The logged steps where both keys are finite, in file order.
void paired_series(const RunMetrics& run,
                   const std::string& leader_key,
                   const std::string& target_key,
                   Exp2Row& row) {
  for (const auto& line : run.lines) {
    const double leader = value_or_nan(line, leader_key);
    const double target = value_or_nan(line, target_key);
    if (!std::isfinite(leader) || !std::isfinite(target)) continue;
    row.steps.push_back(step_of(line));
    row.leader.push_back(leader);
    row.target_values.push_back(target);
  }
}

int64_t most_common_gap(const std::vector<int64_t>& steps) {
  std::map<int64_t, int> count;
  for (size_t i = 1; i < steps.size(); ++i)
    if (steps[i] > steps[i - 1]) ++count[steps[i] - steps[i - 1]];
  if (count.empty()) return 1;
  return std::max_element(count.begin(), count.end(),
                          [](auto& a, auto& b) { return a.second < b.second; })
      ->first;
}

}  // namespace

Exp2Result analyze_exp2(const std::vector<RunMetrics>& runs, const Exp2Options& options) {
  LATTICE_CHECK(options.max_lag >= 1 && options.window >= 2 && options.horizon >= 1 &&
                    options.permutations >= 0 && options.k_fraction > 0,
                "[analyze exp2] lags ", options.max_lag, ", window ", options.window, ", horizon ",
                options.horizon, ", permutations ", options.permutations,
                ": expected lags, horizon >= 1, window >= 2, permutations >= 0");
  Exp2Result result;
  for (const RunMetrics& run : runs)
    for (const auto& [target, key] :
         {std::pair<std::string, std::string>{"fwd error", "r_block_max"}, {"loss", "loss"}}) {
      Exp2Row row{.run = run.label, .target = target};
      paired_series(run, "kappa_softmax_max", key, row);
      row.length = int(row.leader.size());
      if (row.length < options.window + 2) {
        LATTICE_CHECK(target == "loss", "[analyze exp2] ", run.dir, "/metrics.jsonl: ", row.length,
                      " lines with both kappa_softmax_max and ", key, "; expected at least ",
                      options.window + 2, " (the spike window + 2)");
        continue;  // the loss is a secondary target (§4.3: it shows no consistent lead)
      }
      // A lag near the series length correlates a handful of points; half the length keeps
      // at least T/2 products in every c(lag) (§4.3 scans ±60 of T = 195).
      row.max_lag = std::min(options.max_lag, row.length / 2);
      row.k = int(std::ceil(options.k_fraction * row.length));
      row.step_stride = most_common_gap(row.steps);
      row.lead_lag =
          lead_lag(row.leader, row.target_values, row.max_lag, options.permutations, options.seed);
      row.precision = spike_precision_at_k(row.leader, row.target_values, row.k, options.horizon,
                                           options.window, options.threshold);
      result.rows.push_back(std::move(row));
    }
  return result;
}

std::string exp2_markdown(const Exp2Result& result, const Exp2Options& options) {
  std::string md = concat(
      "## Exp-2: max κ_softmax leads the forward error\n\nPearson correlation per lag, lags ±",
      options.max_lag, " logged steps (at most T/2), ", options.permutations,
      " permutations (seed ", options.seed, ", best lag re-selected each), spikes: rolling z over ",
      options.window, " > ", options.threshold, ", horizon ", options.horizon, ", K = ceil(",
      options.k_fraction,
      " T). Lags count logged steps; a positive lag means κ_softmax leads.\n\n"
      "| run | target | T | best lag | lag (steps) | best corr | p-value | K | Prec@K | hits |\n"
      "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|\n");
  for (const Exp2Row& row : result.rows)
    md += concat("| ", row.run, " | ", row.target, " | ", row.length, " | ", row.lead_lag.best_lag,
                 " | ", row.lead_lag.best_lag * row.step_stride, " | ",
                 markdown_cell(row.lead_lag.best_correlation), " | ",
                 markdown_cell(row.lead_lag.p_value), " | ", row.k, " | ",
                 markdown_cell(row.precision.precision), " | ", row.precision.hits, "/",
                 row.precision.selected, " |\n");
  for (const std::string target : {"fwd error", "loss"}) {
    std::vector<double> lags, correlations, precisions;
    for (const Exp2Row& row : result.rows)
      if (row.target == target) {
        lags.push_back(double(row.lead_lag.best_lag * row.step_stride));
        correlations.push_back(row.lead_lag.best_correlation);
        precisions.push_back(row.precision.precision);
      }
    if (lags.empty()) continue;
    const auto mean_finite = [](const std::vector<double>& x) {
      const std::vector<double> finite = finite_values(x);
      return finite.empty() ? NAN : mean_of(finite);
    };
    md += concat("| mean | ", target, " | | | ", markdown_cell(mean_finite(lags), "%.1f"), " | ",
                 markdown_cell(mean_finite(correlations)), " | | | ",
                 markdown_cell(mean_finite(precisions)), " | |\n");
  }
  return md;
}

void plot_exp2(const Exp2Result& result, const std::string& out_dir) {
  std::vector<std::string> runs;
  for (const Exp2Row& row : result.rows)
    if (std::find(runs.begin(), runs.end(), row.run) == runs.end()) runs.push_back(row.run);
  for (const std::string& run : runs) {
    PlotPanel lags{.title = "cross-correlation",
                   .x_label = "lag (logged steps; > 0: κ leads)",
                   .y_label = "c(lag)"};
    PlotPanel series{.title = "z-scored series", .x_label = "step", .y_label = "z"};
    for (const Exp2Row& row : result.rows) {
      if (row.run != run) continue;
      PlotSeries c{.title = row.target, .style = "lines"};
      for (int lag = -row.max_lag; lag <= row.max_lag; ++lag) {
        c.x.push_back(lag);
        c.y.push_back(row.lead_lag.correlations[size_t(lag + row.max_lag)]);
      }
      lags.series.push_back(c);
      const std::vector<double> target_z = z_scores(row.target_values);
      PlotSeries target{.title = row.target, .style = "lines"};
      for (size_t i = 0; i < row.steps.size(); ++i)
        target.x.push_back(double(row.steps[i])), target.y.push_back(target_z[i]);
      if (row.target == "fwd error") {
        const std::vector<double> leader_z = z_scores(row.leader);
        PlotSeries leader{.title = "max κ_softmax", .style = "lines"};
        for (size_t i = 0; i < row.steps.size(); ++i)
          leader.x.push_back(double(row.steps[i])), leader.y.push_back(leader_z[i]);
        series.series.insert(series.series.begin(), leader);
      }
      series.series.push_back(target);
    }
    plot_panels({lags, series}, concat("Exp-2: ", run),
                (fs::path(out_dir) / concat("exp2_", file_part(run), ".png")).string());
  }
}

// ---- Exp-3 ----

namespace {

Exp3Tail tail_of_run(const RunMetrics& run, int64_t tail_steps) {
  double last = -INFINITY;
  for (const auto& line : run.lines)
    if (std::isfinite(value_or_nan(line, "loss")) && std::isfinite(value_or_nan(line, "step")))
      last = std::max(last, value_or_nan(line, "step"));
  LATTICE_CHECK(std::isfinite(last), "[analyze exp3] ", run.dir,
                "/metrics.jsonl: no line with a step and a finite loss (expected \"loss\" per "
                "logged step)");
  // §4.4 "the last 50 steps": steps in (last - 50, last], however often they were logged.
  Exp3Tail tail;
  std::vector<double> r_values;
  for (const auto& line : run.lines) {
    const double step = value_or_nan(line, "step");
    if (!(step > last - double(tail_steps))) continue;
    const double loss = value_or_nan(line, "loss"), r = value_or_nan(line, "r_block_max");
    if (std::isfinite(loss)) tail.steps.push_back(int64_t(step)), tail.losses.push_back(loss);
    if (std::isfinite(r)) r_values.push_back(r);
  }
  tail.loss_mean = mean_of(tail.losses);
  tail.loss_median = quantile(tail.losses, 0.5);
  tail.loss_p95 = quantile(tail.losses, 0.95);
  tail.r_mean = r_values.empty() ? NAN : mean_of(r_values);
  return tail;
}

std::map<int64_t, const RunMetrics*> by_seed(const std::vector<RunMetrics>& runs,
                                             const char* group) {
  LATTICE_CHECK(!runs.empty(), "[analyze exp3] no ", group,
                " runs; expected --control DIR... "
                "and --intervention DIR...");
  std::map<int64_t, const RunMetrics*> seeds;
  for (const RunMetrics& run : runs) {
    LATTICE_CHECK(run.seed >= 0, "[analyze exp3] ", run.dir,
                  "/summary.json: no \"seed\" (expected one to pair control and intervention)");
    const auto [it, fresh] = seeds.emplace(run.seed, &run);
    LATTICE_CHECK(fresh, "[analyze exp3] ", group, " runs ", it->second->dir, " and ", run.dir,
                  " share seed ", run.seed, "; expected one run per seed");
  }
  return seeds;
}

}  // namespace

Exp3Result analyze_exp3(const std::vector<RunMetrics>& control,
                        const std::vector<RunMetrics>& intervention,
                        const Exp3Options& options) {
  LATTICE_CHECK(options.tail_steps >= 1, "[analyze exp3] --tail-steps ", options.tail_steps,
                ": expected >= 1");
  const auto control_seeds = by_seed(control, "control");
  const auto intervention_seeds = by_seed(intervention, "intervention");
  for (const auto& [seed, run] : intervention_seeds)
    LATTICE_CHECK(control_seeds.contains(seed), "[analyze exp3] intervention run ", run->dir,
                  " (seed ", seed, ") has no control run with its seed");
  Exp3Result result;
  for (const auto& [seed, run] : control_seeds) {
    const auto partner = intervention_seeds.find(seed);
    LATTICE_CHECK(partner != intervention_seeds.end(), "[analyze exp3] control run ", run->dir,
                  " (seed ", seed, ") has no intervention run with its seed");
    result.pairs.push_back(
        {.seed = seed,
         .control = run->label,
         .intervention = partner->second->label,
         .control_tail = tail_of_run(*run, options.tail_steps),
         .intervention_tail = tail_of_run(*partner->second, options.tail_steps)});
  }
  return result;
}

std::string exp3_markdown(const Exp3Result& result, const Exp3Options& options) {
  std::string md = concat(
      "## Exp-3: loss tails with and without the ε policy\n\nLast ", options.tail_steps,
      " steps of each run; Δ = control - intervention (positive: the policy lowered it).\n\n"
      "| seed | control | intervention | control mean | intervention mean | Δ mean | Δ median | "
      "Δ p95 | Δ r_block_max |\n|--:|---|---|--:|--:|--:|--:|--:|--:|\n");
  std::vector<double> mean_change, median_change, p95_change, r_change;
  for (const Exp3Pair& pair : result.pairs) {
    const Exp3Tail &c = pair.control_tail, &i = pair.intervention_tail;
    mean_change.push_back(c.loss_mean - i.loss_mean);
    median_change.push_back(c.loss_median - i.loss_median);
    p95_change.push_back(c.loss_p95 - i.loss_p95);
    r_change.push_back(c.r_mean - i.r_mean);
    md += concat("| ", pair.seed, " | ", pair.control, " | ", pair.intervention, " | ",
                 markdown_cell(c.loss_mean, "%.6g"), " | ", markdown_cell(i.loss_mean, "%.6g"),
                 " | ", markdown_cell(mean_change.back(), "%.4g"), " | ",
                 markdown_cell(median_change.back(), "%.4g"), " | ",
                 markdown_cell(p95_change.back(), "%.4g"), " | ",
                 markdown_cell(r_change.back(), "%.4g"), " |\n");
  }
  // Table 4 reports the mean change and its spread over seeds (sample deviation here).
  md += "\n| over seeds | mean | std |\n|---|--:|--:|\n";
  const std::pair<const char*, const std::vector<double>*> changes[] = {
      {"Δ loss mean", &mean_change},
      {"Δ loss median", &median_change},
      {"Δ loss p95", &p95_change},
      {"Δ r_block_max", &r_change}};
  for (const auto& [name, values] : changes) {
    const std::vector<double> finite = finite_values(*values);
    md += concat("| ", name, " | ", markdown_cell(finite.empty() ? NAN : mean_of(finite), "%.4g"),
                 " | ", markdown_cell(sample_deviation(finite), "%.4g"), " |\n");
  }
  return md;
}

void plot_exp3(const Exp3Result& result, const std::string& out_dir) {
  PlotPanel tails{.title = "loss, last steps", .x_label = "step", .y_label = "training loss"};
  PlotPanel changes{
      .title = "Δ tail mean loss (control - intervention)", .x_label = "seed", .y_label = "Δ loss"};
  PlotSeries change{.title = "Δ mean"};
  for (const Exp3Pair& pair : result.pairs) {
    for (const auto& [tail, style, name] :
         {std::tuple{&pair.control_tail, "lines", "control"},
          std::tuple{&pair.intervention_tail, "dashed", "ε policy"}}) {
      PlotSeries s{.title = concat("seed ", pair.seed, " ", name), .style = style};
      for (size_t i = 0; i < tail->steps.size(); ++i)
        s.x.push_back(double(tail->steps[i])), s.y.push_back(tail->losses[i]);
      tails.series.push_back(s);
    }
    change.x.push_back(double(pair.seed));
    change.y.push_back(pair.control_tail.loss_mean - pair.intervention_tail.loss_mean);
  }
  changes.series.push_back(change);
  if (!change.x.empty()) {
    const auto [low, high] = std::minmax_element(change.x.begin(), change.x.end());
    changes.series.push_back(
        {.title = "no change", .x = {*low, *high}, .y = {0.0, 0.0}, .style = "dashed"});
  }
  plot_panels({tails, changes}, "Exp-3: loss tails",
              (fs::path(out_dir) / "exp3_loss_tails.png").string());
}

}  // namespace lattice::tools
