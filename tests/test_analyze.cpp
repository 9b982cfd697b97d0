// `lattice analyze`: each statistic against a textbook formula on hand-made data (ties, an exact
// line, a shifted copy, an enumerated permutation test, hand-placed spikes), and the three
// experiments on fake run folders, as library calls and through the tool.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "process_support.h"
#include "tools/analyze.h"
#include "tools/plot.h"

namespace {

using namespace lattice::tools;
namespace fs = std::filesystem;

/// Pearson from the raw sums: (n Σxy - Σx Σy) / sqrt((n Σx² - (Σx)²)(n Σy² - (Σy)²)).
double pearson_from_sums(const std::vector<double>& x, const std::vector<double>& y) {
  double n = double(x.size()), sx = 0, sy = 0, sxx = 0, syy = 0, sxy = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    sx += x[i], sy += y[i], sxx += x[i] * x[i], syy += y[i] * y[i], sxy += x[i] * y[i];
  }
  return (n * sxy - sx * sy) / std::sqrt((n * sxx - sx * sx) * (n * syy - sy * sy));
}

/// A rank by counting: 1 + #smaller + (#equal - 1) / 2.
std::vector<double> ranks_by_counting(const std::vector<double>& x) {
  std::vector<double> r;
  for (double v : x) {
    double smaller = 0, equal = 0;
    for (double w : x) smaller += w < v, equal += w == v;
    r.push_back(1 + smaller + (equal - 1) / 2);
  }
  return r;
}

/// Uniform values in [0, 1) from a 64-bit LCG (Knuth's MMIX constants).
std::vector<double> uniform_series(size_t n, uint64_t state) {
  std::vector<double> x;
  for (size_t i = 0; i < n; ++i) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    x.push_back(double(state >> 11) * 0x1p-53);
  }
  return x;
}

/// The rolling z-score at t from its definition: the window x[t-w+1..t], sample deviation.
double rolling_z_at(const std::vector<double>& x, size_t t, size_t w) {
  double mean = 0, squares = 0;
  for (size_t i = t + 1 - w; i <= t; ++i) mean += x[i] / double(w);
  for (size_t i = t + 1 - w; i <= t; ++i) squares += (x[i] - mean) * (x[i] - mean);
  return (x[t] - mean) / std::sqrt(squares / double(w - 1));
}

}  // namespace

TEST_CASE(
    "pearson matches the raw-sums formula; a perfect inverse relation is -1, a constant NaN") {
  const std::vector<double> x = {1, 2, 3, 4, 5}, y = {2, 4, 5, 4, 5};
  CHECK(pearson(x, y) == doctest::Approx(pearson_from_sums(x, y)).epsilon(1e-14));
  CHECK(pearson(x, y) == doctest::Approx(0.7745966692414834));  // 6 / sqrt(10 * 6): hand sums
  CHECK(pearson(x, std::vector<double>{10, 8, 6, 4, 2}) == doctest::Approx(-1.0));
  CHECK(std::isnan(pearson(x, std::vector<double>{3, 3, 3, 3, 3})));
  CHECK_THROWS_AS(pearson(x, std::vector<double>{1, 2}), lattice::Error);
}

TEST_CASE(
    "spearman uses average ranks for ties: ranks (1, 2.5, 2.5, 4) vs (1, 3, 2, 4) give "
    "3/sqrt(10)") {
  const std::vector<double> x = {1, 2, 2, 3}, y = {1, 3, 2, 4};
  CHECK(average_ranks(x) == std::vector<double>{1, 2.5, 2.5, 4});
  CHECK(spearman(x, y) == doctest::Approx(3 / std::sqrt(10.0)));
  const std::vector<double> tied = {3, 1, 3, 2, 3, 0.5};
  CHECK(average_ranks(tied) == ranks_by_counting(tied));
  // Any increasing map of x keeps its ranks: rho = 1 for (x, exp x) though Pearson is below 1.
  const std::vector<double> u = uniform_series(20, 3);
  std::vector<double> e;
  for (double v : u) e.push_back(std::exp(8 * v));
  CHECK(spearman(u, e) == doctest::Approx(1.0));
  CHECK(pearson(u, e) < 0.99);
  const std::vector<double> v = uniform_series(20, 4);
  CHECK(spearman(u, v) ==
        doctest::Approx(pearson_from_sums(ranks_by_counting(u), ranks_by_counting(v))));
}

TEST_CASE("fit_line recovers an exact line with R^2 = 1, and on noisy data the normal equations") {
  const std::vector<double> x = {-2, 0, 1, 3, 7};
  std::vector<double> y;
  for (double v : x) y.push_back(2 - 0.5 * v);
  LineFit fit = fit_line(x, y);
  CHECK(fit.slope == doctest::Approx(-0.5));
  CHECK(fit.intercept == doctest::Approx(2.0));
  CHECK(fit.r_squared == doctest::Approx(1.0));
  const std::vector<double> u = uniform_series(30, 7), noise = uniform_series(30, 8);
  std::vector<double> w;
  for (size_t i = 0; i < u.size(); ++i) w.push_back(3 * u[i] + noise[i]);
  // Normal equations [n Σx; Σx Σx²] [a; b] = [Σy; Σxy] solved by Cramer's rule.
  double n = double(u.size()), sx = 0, sxx = 0, sy = 0, sxy = 0;
  for (size_t i = 0; i < u.size(); ++i)
    sx += u[i], sxx += u[i] * u[i], sy += w[i], sxy += u[i] * w[i];
  const double det = n * sxx - sx * sx;
  fit = fit_line(u, w);
  CHECK(fit.slope == doctest::Approx((n * sxy - sx * sy) / det).epsilon(1e-12));
  CHECK(fit.intercept == doctest::Approx((sxx * sy - sx * sxy) / det).epsilon(1e-12));
  // For a least-squares line, R^2 is the squared Pearson correlation.
  CHECK(fit.r_squared == doctest::Approx(std::pow(pearson_from_sums(u, w), 2)).epsilon(1e-12));
}

TEST_CASE("quantile interpolates linearly between order statistics as numpy does") {
  CHECK(quantile({4, 1, 3, 2}, 0.95) == doctest::Approx(3.85));  // 3 + 0.85 * (4 - 3)
  CHECK(quantile({5, 1, 3}, 0.5) == 3);
  CHECK(quantile({7}, 0.95) == 7);
  CHECK(quantile({1, 2}, 1.0) == 2);
  CHECK_THROWS_AS(quantile({}, 0.5), lattice::Error);
}

TEST_CASE("cross-correlation of a series and its copy delayed by 7 peaks at lag +7 with r = 1") {
  const size_t n = 80;
  const std::vector<double> x = uniform_series(n, 11);
  std::vector<double> y = uniform_series(n, 12);  // y[t] = x[t - 7] from t = 7 on
  for (size_t t = 7; t < n; ++t) y[t] = x[t - 7];
  const std::vector<double> c = lagged_cross_correlation(x, y, 20);
  REQUIRE(c.size() == 41);
  // c(lag) from its definition: Pearson of x[t] and y[t + lag] over the overlap.
  for (int lag : {-5, 0, 7, 12}) {
    std::vector<double> a, b;
    for (int t = 0; t < int(n); ++t)
      if (t + lag >= 0 && t + lag < int(n))
        a.push_back(x[size_t(t)]), b.push_back(y[size_t(t + lag)]);
    CHECK(c[size_t(lag + 20)] == doctest::Approx(pearson_from_sums(a, b)).epsilon(1e-12));
  }
  const LeadLag found = lead_lag(x, y, 20, 999, 1);
  CHECK(found.best_lag == 7);
  CHECK(found.best_correlation == doctest::Approx(1.0));
  // No shuffle of 80 values correlates perfectly at any lag: p is its floor 1 / (1 + 999).
  CHECK(found.p_value == doctest::Approx(0.001));
  CHECK(lead_lag(y, x, 20, 0, 1).best_lag == -7);  // the other way round, y lags
}

TEST_CASE("the permutation p-value is large for independent noise and matches full enumeration") {
  // Independent uniform series (seed 0 for the shuffles): no lag carries a relation.
  const LeadLag noise = lead_lag(uniform_series(100, 21), uniform_series(100, 22), 10, 999, 0);
  CHECK(noise.p_value > 0.05);
  // Six values, lags -1..1: all 720 orders of y give the exact p; 999 seeded shuffles estimate
  // it with standard error <= sqrt(0.25 / 999) = 0.016; the bound is 4 of those.
  const std::vector<double> x = {0.3, 1.2, -0.4, 2.0, 0.9, -1.1},
                            y = {0.5, -0.2, 1.4, 0.1, 1.9, 0.7};
  const auto max_lagged = [&](const std::vector<double>& b) {
    double best = -INFINITY;
    for (int lag = -1; lag <= 1; ++lag) {
      std::vector<double> xs, ys;
      for (int t = 0; t < 6; ++t)
        if (t + lag >= 0 && t + lag < 6)
          xs.push_back(x[size_t(t)]), ys.push_back(b[size_t(t + lag)]);
      best = std::max(best, pearson_from_sums(xs, ys));
    }
    return best;
  };
  const double observed = max_lagged(y);
  std::vector<size_t> order(6);
  std::iota(order.begin(), order.end(), size_t{0});
  int at_least = 0, total = 0;
  do {
    std::vector<double> b;
    for (size_t i : order) b.push_back(y[i]);
    at_least += max_lagged(b) >= observed - 1e-12;
    ++total;
  } while (std::next_permutation(order.begin(), order.end()));
  REQUIRE(total == 720);
  const double exact = double(at_least) / double(total);
  const LeadLag sampled = lead_lag(x, y, 1, 999, 5);
  CHECK(sampled.best_correlation == doctest::Approx(observed));
  CHECK(std::abs(sampled.p_value - exact) < 0.064);
}

TEST_CASE("rolling z-scores and spike Precision@K on hand-placed spikes") {
  // Baselines alternate 0, 1 (a clean window's z of a 1 is 0.97 < 1.5); the leader spikes at 30,
  // 50, 70 (heights 10, 8, 6), the target at 35 and 80 (height 10).
  const size_t n = 100;
  std::vector<double> leader(n), target(n);
  for (size_t t = 0; t < n; ++t) leader[t] = target[t] = double(t % 2);
  leader[30] = 10, leader[50] = 8, leader[70] = 6;
  target[35] = 10, target[80] = 10;
  const std::vector<double> z = rolling_z_scores(leader, 20);
  for (size_t t = 0; t < 19; ++t) CHECK(std::isnan(z[t]));
  std::vector<size_t> leader_spikes, target_spikes;
  for (size_t t = 19; t < n; ++t) {
    CHECK(z[t] == doctest::Approx(rolling_z_at(leader, t, 20)).epsilon(1e-12));
    if (rolling_z_at(leader, t, 20) > 1.5) leader_spikes.push_back(t);
    if (rolling_z_at(target, t, 20) > 1.5) target_spikes.push_back(t);
  }
  REQUIRE(leader_spikes == std::vector<size_t>{30, 50, 70});
  REQUIRE(target_spikes == std::vector<size_t>{35, 80});
  REQUIRE(rolling_z_at(leader, 30, 20) > rolling_z_at(leader, 50, 20));
  // Horizon 8: only 30 is followed (35); 70 -> 80 is 10 steps away.
  SpikePrecision p = spike_precision_at_k(leader, target, 3, 8, 20, 1.5);
  CHECK(p.selected == 3);
  CHECK(p.hits == 1);
  CHECK(p.precision == doctest::Approx(1.0 / 3));
  CHECK(spike_precision_at_k(leader, target, 1, 8, 20, 1.5).precision == 1.0);  // the top: 30
  CHECK(spike_precision_at_k(leader, target, 3, 10, 20, 1.5).precision == doctest::Approx(2.0 / 3));
  // A target spike at the leader's own step is no forecast; one 5 steps later is.
  std::vector<double> lone(n), echo(n);
  for (size_t t = 0; t < n; ++t) lone[t] = echo[t] = double(t % 2);
  lone[40] = echo[40] = 10;
  CHECK(spike_precision_at_k(lone, echo, 3, 40, 20, 1.5).hits == 0);
  echo[45] = 10;
  CHECK(spike_precision_at_k(lone, echo, 3, 40, 20, 1.5).hits == 1);
  CHECK(std::isnan(
      spike_precision_at_k(std::vector<double>(n, 1.0), target, 3, 8, 20, 1.5).precision));
}

// ---- The experiments on fake run folders ----

namespace {

struct FakeRuns {
  fs::path root, bf16, fp16, fp16_policy, loss_only;
  std::vector<double> kappa;                   // max κ_softmax at logged step 2i
  std::vector<std::vector<double>> predictor;  // [run][block * 4 + i], i = 0..3
  std::vector<std::vector<double>> r_block;
  std::vector<double> loss_bf16, loss_fp16, loss_policy;
};

/// Three runs logged every 2 steps (0..118): bf16 (seed 0) and fp16 (seed 1) with block
/// metrics in their first four lines, κ_max and r_max (r lags κ by 3 lines) and the loss; an
/// fp16 ε-policy twin (seed 1); and a run with a loss only.
const FakeRuns& fake_runs() {
  static const FakeRuns runs = [] {
    FakeRuns f;
    f.root = lattice::test::scratch_dir() / "analyze";
    f.bf16 = f.root / "bf16", f.fp16 = f.root / "fp16", f.fp16_policy = f.root / "fp16-policy";
    f.loss_only = f.root / "loss-only";
    f.kappa = uniform_series(60, 31);
    const std::vector<double> lag_fill = uniform_series(3, 32);
    for (int run = 0; run < 2; ++run) {
      const std::vector<double> p = uniform_series(8, 40 + run), r = uniform_series(8, 50 + run);
      std::vector<double> predictor, r_block;
      for (size_t i = 0; i < 8; ++i) predictor.push_back(1 + 100 * p[i]);
      for (size_t i = 0; i < 8; ++i) r_block.push_back(1e-4 * (1 + 50 * r[i]) * (run ? 1 : 8));
      f.predictor.push_back(predictor), f.r_block.push_back(r_block);
    }
    const std::vector<double> noise = uniform_series(60, 60);
    for (size_t i = 0; i < 60; ++i) {
      f.loss_bf16.push_back(2.0 - 0.01 * double(i));
      f.loss_fp16.push_back(2.1 - 0.01 * double(i) + 0.1 * noise[i]);
      f.loss_policy.push_back(2.1 - 0.012 * double(i));
    }
    const auto write_run = [&](const fs::path& dir, const char* stack, int seed, int blocks_of,
                               const std::vector<double>& loss, bool diagnostics) {
      fs::create_directories(dir);
      std::ofstream metrics(dir / "metrics.jsonl");
      metrics << std::setprecision(17);
      for (size_t i = 0; i < 60; ++i) {
        metrics << "{\"step\": " << 2 * i << ", \"loss\": " << loss[i];
        if (diagnostics) {
          const double r = i >= 3 ? f.kappa[i - 3] : lag_fill[i];
          metrics << ", \"kappa_softmax_max\": " << f.kappa[i] << ", \"r_block_max\": " << r;
        }
        if (blocks_of >= 0 && i < 4)
          for (int b = 0; b < 2; ++b)
            metrics << ", \"predictor/blocks." << b
                    << "\": " << f.predictor[size_t(blocks_of)][size_t(b * 4) + i]
                    << ", \"r_block/blocks." << b
                    << "\": " << f.r_block[size_t(blocks_of)][size_t(b * 4) + i]
                    << ", \"kappa_v/blocks." << b << "\": null";
        metrics << "}\n";
      }
      if (blocks_of >= 0)  // a line whose block metrics are null: no point
        metrics << "{\"step\": 200, \"r_block/blocks.0\": null, \"predictor/blocks.0\": null}\n";
      std::ofstream(dir / "summary.json")
          << "{\"stack\": \"" << stack << "\", \"seed\": " << seed << ", \"status\": \"finished\"}";
    };
    write_run(f.bf16, "bf16", 0, 0, f.loss_bf16, true);
    write_run(f.fp16, "w=fp16,a=fp16,g=fp16", 1, 1, f.loss_fp16, true);
    write_run(f.fp16_policy, "fp16", 1, -1, f.loss_policy, false);
    write_run(f.loss_only, "fp32", 2, -1, f.loss_bf16, false);
    return f;
  }();
  return runs;
}

/// The numbers in the Markdown row that starts with `first_cell`.
std::vector<std::string> row_cells(const std::string& markdown, const std::string& first_cell) {
  std::istringstream lines(markdown);
  for (std::string line; std::getline(lines, line);)
    if (line.starts_with("| " + first_cell + " |")) {
      std::vector<std::string> cells;
      std::istringstream parts(line.substr(1));
      for (std::string part; std::getline(parts, part, '|');) {
        const size_t a = part.find_first_not_of(' '), b = part.find_last_not_of(' ');
        cells.push_back(a == std::string::npos ? "" : part.substr(a, b - a + 1));
      }
      return cells;
    }
  return {};
}

/// The independent Exp-1 regression of log10 r on log10 x: Pearson, R^2 (its square), slope.
struct Regression {
  double pearson = 0, r_squared = 0, slope = 0;
};
Regression log_regression(const std::vector<double>& x, const std::vector<double>& y) {
  std::vector<double> lx, ly;
  for (size_t i = 0; i < x.size(); ++i)
    lx.push_back(std::log10(x[i])), ly.push_back(std::log10(y[i]));
  const double r = pearson_from_sums(lx, ly);
  double mx = 0, my = 0;
  for (size_t i = 0; i < lx.size(); ++i)
    mx += lx[i] / double(lx.size()), my += ly[i] / double(ly.size());
  double sxy = 0, sxx = 0;
  for (size_t i = 0; i < lx.size(); ++i)
    sxy += (lx[i] - mx) * (ly[i] - my), sxx += (lx[i] - mx) * (lx[i] - mx);
  return {r, r * r, sxy / sxx};
}

/// numpy's 95th percentile of four values: v[2] + 0.85 (v[3] - v[2]).
double tail_of_four(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[2] + 0.85 * (v[3] - v[2]);
}

}  // namespace

TEST_CASE("exp1 fits log r_block on log predictor per block and step, with the ε_mach collapse") {
  const FakeRuns& f = fake_runs();
  const std::vector<RunMetrics> runs = read_runs({f.bf16.string(), f.fp16.string()});
  CHECK(runs[0].activation_epsilon == 0x1p-7);  // bf16: 7 stored mantissa bits
  CHECK(runs[1].activation_epsilon == 0x1p-10);
  const Exp1Result steps = analyze_exp1(runs, {.points = "step"});
  // 2 runs x 2 blocks x 4 steps; the last line's null r_block is no point.
  std::vector<double> x, scaled, y;
  for (int run = 0; run < 2; ++run)
    for (size_t i = 0; i < 8; ++i) {
      x.push_back(f.predictor[size_t(run)][i]);
      scaled.push_back(f.predictor[size_t(run)][i] * (run ? 0x1p-10 : 0x1p-7));
      y.push_back(f.r_block[size_t(run)][i]);
    }
  REQUIRE(steps.rows.size() == 3);  // κ(V) is logged but null everywhere: no row
  CHECK(steps.rows[0].points == 16);
  for (const auto& [row, proxy] : {std::pair{steps.rows[0], x}, {steps.rows[1], scaled}}) {
    const Regression expected = log_regression(proxy, y);
    CHECK(row.pearson_log == doctest::Approx(expected.pearson).epsilon(1e-12));
    CHECK(row.r_squared == doctest::Approx(expected.r_squared).epsilon(1e-12));
    CHECK(row.slope == doctest::Approx(expected.slope).epsilon(1e-12));
    CHECK(row.spearman ==
          doctest::Approx(pearson_from_sums(ranks_by_counting(proxy), ranks_by_counting(y))));
  }
  std::vector<double> rescaled;
  for (size_t i = 0; i < y.size(); ++i) rescaled.push_back(y[i] / (i < 8 ? 0x1p-7 : 0x1p-10));
  CHECK(steps.rows[2].slope == doctest::Approx(log_regression(x, rescaled).slope).epsilon(1e-12));

  // --points block: one point per run and block, each quantity's own 95th percentile.
  const Exp1Options by_block{.points = "block"};
  const Exp1Result blocks = analyze_exp1(runs, by_block);
  REQUIRE(blocks.points.size() == 4);
  std::vector<double> tail_x, tail_y;
  for (int run = 0; run < 2; ++run)
    for (size_t b = 0; b < 2; ++b) {
      const auto& p = f.predictor[size_t(run)];
      const auto& r = f.r_block[size_t(run)];
      tail_x.push_back(tail_of_four({p.begin() + 4 * b, p.begin() + 4 * b + 4}) *
                       (run ? 0x1p-10 : 0x1p-7));
      tail_y.push_back(tail_of_four({r.begin() + 4 * b, r.begin() + 4 * b + 4}));
    }
  const Regression expected = log_regression(tail_x, tail_y);
  CHECK(blocks.rows[1].pearson_log == doctest::Approx(expected.pearson).epsilon(1e-12));
  const std::vector<std::string> cells =
      row_cells(exp1_markdown(blocks, by_block), "combined * ε_mach");
  REQUIRE(cells.size() == 6);
  CHECK(cells[1] == "4");
  CHECK(std::stod(cells[2]) == doctest::Approx(expected.pearson).epsilon(1e-4));
  CHECK(std::stod(cells[4]) == doctest::Approx(expected.r_squared).epsilon(1e-4));
  CHECK(std::stod(cells[5]) == doctest::Approx(expected.slope).epsilon(1e-4));

  // --points run (the paper's per-config tails) gives 2 points from 2 runs: too few to fit.
  CHECK_THROWS_WITH(analyze_exp1(runs, {}), doctest::Contains("2 points with positive, finite "
                                                              "predictor and r_block from 2 runs"));
  CHECK_THROWS_WITH(analyze_exp1(read_runs({f.loss_only.string()}), {}),
                    doctest::Contains("no line with predictor/<block> and r_block/<block>"));
}

TEST_CASE("exp2 finds the 3-line lead of max κ_softmax over r_block_max, its p and Precision@K") {
  const FakeRuns& f = fake_runs();
  const Exp2Options options;
  const Exp2Result result = analyze_exp2(read_runs({f.bf16.string()}), options);
  REQUIRE(result.rows.size() == 2);
  const Exp2Row& fwd = result.rows[0];
  CHECK(fwd.target == "fwd error");
  CHECK(fwd.length == 60);
  CHECK(fwd.max_lag == 30);  // 60 clamped to T / 2
  CHECK(fwd.k == 6);         // ceil(0.1 * 60)
  CHECK(fwd.step_stride == 2);
  CHECK(fwd.lead_lag.best_lag == 3);
  CHECK(fwd.lead_lag.best_correlation == doctest::Approx(1.0));
  CHECK(fwd.lead_lag.p_value == doctest::Approx(0.001));
  // Precision@K from the definition on the same series: the leader's top-6 rolling-z spikes
  // above 1.5, each a hit when r spikes within the next 40 lines.
  std::vector<double> r(60);
  for (size_t i = 0; i < 60; ++i) r[i] = fwd.target_values[i];
  std::vector<std::pair<double, size_t>> spikes;
  for (size_t t = 19; t < 60; ++t)
    if (rolling_z_at(f.kappa, t, 20) > 1.5) spikes.push_back({-rolling_z_at(f.kappa, t, 20), t});
  std::sort(spikes.begin(), spikes.end());
  spikes.resize(std::min<size_t>(spikes.size(), 6));
  int hits = 0;
  for (const auto& [minus_z, t] : spikes)
    for (size_t s = t + 1; s <= std::min<size_t>(59, t + 40); ++s)
      if (rolling_z_at(r, s, 20) > 1.5) {
        ++hits;
        break;
      }
  REQUIRE(!spikes.empty());
  CHECK(fwd.precision.selected == int(spikes.size()));
  CHECK(fwd.precision.hits == hits);
  const std::vector<std::string> cells = row_cells(exp2_markdown(result, options), "bf16");
  REQUIRE(cells.size() == 10);
  CHECK(cells[3] == "3");  // best lag in logged lines
  CHECK(cells[4] == "6");  // in steps: logged every 2
  CHECK(cells[6] == "0.0010");
  CHECK_THROWS_WITH(analyze_exp2(read_runs({f.loss_only.string()}), options),
                    doctest::Contains("0 lines with both kappa_softmax_max and r_block_max; "
                                      "expected at least 22"));
}

TEST_CASE("exp3 pairs control and ε-policy runs by seed and compares their last 50 steps") {
  const FakeRuns& f = fake_runs();
  const Exp3Options options;
  const Exp3Result result =
      analyze_exp3(read_runs({f.fp16.string()}), read_runs({f.fp16_policy.string()}), options);
  REQUIRE(result.pairs.size() == 1);
  CHECK(result.pairs[0].seed == 1);
  // Steps 0, 2, ..., 118: the last 50 steps (69..118) hold lines 35..59.
  const auto tail = [](const std::vector<double>& loss) {
    return std::vector<double>(loss.begin() + 35, loss.end());
  };
  const std::vector<double> control = tail(f.loss_fp16), policy = tail(f.loss_policy);
  CHECK(result.pairs[0].control_tail.losses == control);
  const double control_mean = std::accumulate(control.begin(), control.end(), 0.0) / 25;
  const double policy_mean = std::accumulate(policy.begin(), policy.end(), 0.0) / 25;
  std::vector<double> sorted = control;
  std::sort(sorted.begin(), sorted.end());
  CHECK(result.pairs[0].control_tail.loss_mean == doctest::Approx(control_mean));
  CHECK(result.pairs[0].control_tail.loss_median == sorted[12]);
  CHECK(result.pairs[0].control_tail.loss_p95 ==
        doctest::Approx(sorted[22] + 0.8 * (sorted[23] - sorted[22])));  // position 0.95 * 24
  CHECK(std::isnan(result.pairs[0].intervention_tail.r_mean));           // not logged there
  const std::vector<std::string> cells = row_cells(exp3_markdown(result, options), "1");
  REQUIRE(cells.size() == 9);
  CHECK(std::stod(cells[5]) == doctest::Approx(control_mean - policy_mean).epsilon(1e-3));
  CHECK_THROWS_WITH(
      analyze_exp3(read_runs({f.bf16.string()}), read_runs({f.fp16_policy.string()}), options),
      doctest::Contains("has no control run with its seed"));
}

TEST_CASE("lattice analyze prints and writes the tables and figures, and fails in one line") {
  const FakeRuns& f = fake_runs();
  const fs::path out = f.root / "analysis";
  const std::string tool = LATTICE_TOOL;
  auto run =
      lattice::test::run_program(tool, "analyze exp1 " + f.bf16.string() + " " + f.fp16.string() +
                                           " --points block --out " + out.string());
  CAPTURE(run.err);
  REQUIRE(run.status == 0);
  CHECK(run.out == lattice::test::read_file(out / "exp1.md"));
  CHECK(run.out == exp1_markdown(analyze_exp1(read_runs({f.bf16.string(), f.fp16.string()}),
                                              {.points = "block"}),
                                 {.points = "block"}));
  run = lattice::test::run_program(tool, "analyze exp3 --control " + f.fp16.string() +
                                             " --intervention " + f.fp16_policy.string() +
                                             " --out " + out.string());
  REQUIRE(run.status == 0);
  CHECK(run.out.starts_with("## Exp-3"));
  if (gnuplot_available()) {
    CHECK(fs::file_size(out / "exp1.png") > 1000);
    CHECK(fs::file_size(out / "exp3_loss_tails.png") > 1000);
  } else {
    MESSAGE("gnuplot not installed: the figures are not checked");
  }
  run = lattice::test::run_program(tool, "analyze exp2 " + (f.root / "no-such-run").string());
  CHECK(run.status == 2);
  CHECK(run.err == "lattice: [analyze] " + (f.root / "no-such-run").string() +
                       ": no such folder (expected a run folder with metrics.jsonl and "
                       "summary.json)\n");
  run = lattice::test::run_program(tool, "analyze exp4 " + f.bf16.string());
  CHECK(run.status == 2);
  CHECK(std::count(run.err.begin(), run.err.end(), '\n') == 1);
}
