// `lattice experiment`: each experiment's trainer commands (flags per run), its table builder on
// fake run folders checked against sums written out in the test, and the one-line error for an
// unknown name. No trainer runs here.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "process_support.h"
#include "tools/experiment.h"
#include "tools/plot.h"
#include "tools/process.h"

namespace {

using namespace lattice::tools;
namespace fs = std::filesystem;
using nlohmann::json;

/// The value following `flag` in a run's trainer arguments ("" when absent).
std::string flag_value(const RunConfig& run, const std::string& flag) {
  const auto it = std::find(run.flags.begin(), run.flags.end(), flag);
  return it == run.flags.end() || it + 1 == run.flags.end() ? "" : *(it + 1);
}

bool has_flag(const RunConfig& run, const std::string& flag) {
  return std::find(run.flags.begin(), run.flags.end(), flag) != run.flags.end();
}

fs::path fresh_dir(const std::string& name) {
  const fs::path dir = lattice::test::scratch_dir() / "experiment" / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

/// A fake run folder: metrics.jsonl lines, diagnostics.jsonl lines and summary.json.
void write_run(const fs::path& dir,
               const std::vector<json>& lines,
               const json& summary,
               const std::vector<json>& details = {}) {
  fs::create_directories(dir);
  std::ofstream metrics(dir / "metrics.jsonl");
  for (const json& line : lines) metrics << line.dump() << "\n";
  std::ofstream detail(dir / "diagnostics.jsonl");
  for (const json& line : details) detail << line.dump() << "\n";
  std::ofstream(dir / "summary.json") << summary.dump(2);
}

ExperimentPlan plan_in(const std::string& name, ExperimentOptions options = {}) {
  options.out = fresh_dir(name).string();
  return plan_experiment(name, options);
}

}  // namespace

TEST_CASE("each experiment's runs carry the flags of its sweep and the precision's stack") {
  const ExperimentPlan temperature = plan_experiment("temperature", {});
  CHECK(temperature.root == "runs/experiment-temperature");
  REQUIRE(temperature.runs.size() == 5);
  const std::vector<std::string> stacks = {"bf16,gemm=e4m3:b32", "bf16,gemm=e5m2:b32", "fp16",
                                           "bf16", "fp32"};
  for (size_t i = 0; i < 5; ++i) {
    const RunConfig& run = temperature.runs[i];
    CHECK(run.stack == stacks[i]);
    CHECK(has_flag(run, "--learned-temperature"));
    CHECK(flag_value(run, "--diagnostics") == "attention");
    // d_k = 32: heads = d_model / 32.
    CHECK(std::stoi(flag_value(run, "--dim")) == 32 * std::stoi(flag_value(run, "--heads")));
    CHECK(flag_value(run, "--steps") == "200");
  }

  const ExperimentPlan head_dim = plan_experiment("head-dim", {.dim = 192});
  REQUIRE(head_dim.runs.size() == 3 * 4);  // d_k 80 and 128 do not divide 192
  REQUIRE(head_dim.notes.size() == 1);
  CHECK(head_dim.notes[0].starts_with("d_k = 80, 128 do not divide d_model = 192"));
  for (const RunConfig& run : head_dim.runs) {
    const int head_dim_value = std::stoi(run.values.at("d_k"));
    CHECK(std::stoi(flag_value(run, "--heads")) * head_dim_value == 192);
    CHECK(flag_value(run, "--diagnostics") == "attention,cast:e4m3");
  }
  CHECK(head_dim.runs[3].values.at("d_k") == "96");
  CHECK(head_dim.runs[4].stack == "bf16");

  const ExperimentPlan ffn = plan_experiment("ffn-width", {.precisions = "fp16", .seeds = 2});
  REQUIRE(ffn.runs.size() == 5 * 2);
  const std::vector<int> factors = {2, 3, 4, 6, 8};
  for (size_t i = 0; i < ffn.runs.size(); ++i) {
    CHECK(flag_value(ffn.runs[i], "--hidden") == std::to_string(64 * factors[i / 2]));
    CHECK(flag_value(ffn.runs[i], "--seed") == std::to_string(i % 2));
    CHECK(flag_value(ffn.runs[i], "--diagnostics") == "beta");
  }

  const ExperimentPlan order = plan_experiment("precision-order", {.steps = 40, .seeds = 1});
  REQUIRE(order.runs.size() == 10);
  for (size_t i = 0; i < order.runs.size(); ++i) {
    CHECK(order.runs[i].stack == (i % 2 == 0 ? "fp16" : "bf16"));
    CHECK(flag_value(order.runs[i], "--lr") == order.runs[i].values.at("lr"));
    CHECK(flag_value(order.runs[i], "--steps") == "40");
  }
  CHECK(flag_value(order.runs[6], "--lr") == "0.1");
  CHECK(plan_experiment("precision-order", {}).runs.size() == 5 * 3 * 2);  // 3 seeds by default

  const ExperimentPlan hysteresis = plan_experiment("hysteresis", {.precisions = "bf16,fp16"});
  REQUIRE(hysteresis.runs.size() == 3);
  CHECK(!has_flag(hysteresis.runs[0], "--stack-schedule"));
  CHECK(flag_value(hysteresis.runs[1], "--stack-schedule") == "0:bf16;200:fp16;400:bf16");
  CHECK(hysteresis.runs[0].stack == "bf16");
  CHECK(flag_value(hysteresis.runs[0], "--seed") == flag_value(hysteresis.runs[1], "--seed"));
  CHECK(flag_value(hysteresis.runs[2], "--seed") == "1000");  // the seed gap's run
  CHECK(!has_flag(hysteresis.runs[2], "--stack-schedule"));
  CHECK_THROWS_WITH_AS(plan_experiment("hysteresis", {.precisions = "bf16"}),
                       doctest::Contains("--precisions names P_A,P_B"), lattice::Error);

  const ExperimentPlan crossing = plan_experiment("crossing", {});
  REQUIRE(crossing.runs.size() == 2);
  CHECK(crossing.runs[0].stack == "w=bf16,master=bf16");
  CHECK(!has_flag(crossing.runs[0], "--schedule"));  // the trainer's cosine decay
  CHECK(crossing.runs[1].stack == "w=e4m3,master=e4m3");
  CHECK(flag_value(crossing.runs[1], "--schedule") == "constant");
  for (const RunConfig& run : crossing.runs) CHECK(flag_value(run, "--diagnostics-every") == "5");

  const ExperimentPlan rounding = plan_experiment("stochastic-rounding", {});
  std::vector<std::string> rounding_stacks;
  for (const RunConfig& run : rounding.runs) rounding_stacks.push_back(run.stack);
  CHECK(rounding_stacks == std::vector<std::string>{"w=bf16,master=bf16", "w=bf16", "w=bf16:sr",
                                                    "w=bf16:sr,master=bf16:sr",
                                                    "w=e4m3,master=e4m3", "w=e4m3", "w=e4m3:sr",
                                                    "w=e4m3:sr,master=e4m3:sr"});

  CHECK_THROWS_WITH_AS(plan_experiment("temperature", {.precisions = "fp8"}),
                       doctest::Contains("unknown precision \"fp8\""), lattice::Error);
}

TEST_CASE("lattice experiment --dry-run prints each run's trainer command; a bad NAME, one line") {
  const std::string tool = LATTICE_TOOL;
  const fs::path out = fresh_dir("dry-run");
  auto result = lattice::test::run_program(tool, "experiment ffn-width --dry-run --trainer " +
                                                     std::string(LATTICE_TOOL) +
                                                     " --steps 30 --out " + out.string());
  CAPTURE(result.err);
  REQUIRE(result.status == 0);
  const ExperimentPlan plan = plan_experiment("ffn-width", {.out = out.string(), .steps = 30});
  std::string expected;
  for (const RunConfig& run : plan.runs)
    expected += shell_line(run_command(run, LATTICE_TOOL, (out / run.id).string())) + "\n";
  CHECK(result.out == expected);
  CHECK(fs::is_empty(out));  // nothing ran

  result = lattice::test::run_program(tool, "experiment tempreature --dry-run");
  CHECK(result.status == 2);
  CHECK(result.err ==
        "lattice: [experiment] unknown experiment \"tempreature\" (known: temperature, head-dim, "
        "ffn-width, precision-order, hysteresis, crossing, stochastic-rounding, "
        "stability-predictor, stability-lead-lag, stability-epsilon)\n");
}

TEST_CASE("the stability experiments train vit runs observed by the stability instrument") {
  const ExperimentPlan predictor = plan_in("stability-predictor", {.seeds = 2});
  CHECK(predictor.trainer == "vit");
  REQUIRE(predictor.runs.size() == 3 * 2 * 2);  // fp32, bf16, fp16 x dims 32, 48 x seeds
  std::set<std::string> stacks, dims;
  for (const RunConfig& run : predictor.runs) {
    CHECK(flag_value(run, "--diagnostics") == "stability");
    CHECK(flag_value(run, "--diagnostics-every") == "2");
    CHECK(flag_value(run, "--steps") == "240");
    CHECK(!has_flag(run, "--ln-eps-policy"));
    stacks.insert(run.stack);
    dims.insert(flag_value(run, "--dim"));
  }
  CHECK(stacks == std::set<std::string>{"fp32", "bf16", "fp16"});
  CHECK(dims == std::set<std::string>{"32", "48"});
  CHECK(plan_in("stability-lead-lag", {.dim = 64}).runs.size() == 2);  // bf16, fp16 at dim 64

  // Exp-3: control and policy runs in pairs of the same seed, so the same data order.
  const ExperimentPlan epsilon = plan_in("stability-epsilon");
  REQUIRE(epsilon.runs.size() == 4);
  for (size_t i = 0; i < epsilon.runs.size(); i += 2) {
    CHECK(!has_flag(epsilon.runs[i], "--ln-eps-policy"));
    CHECK(flag_value(epsilon.runs[i + 1], "--ln-eps-policy") == "rho=0.6,cap=1e-2,every=5");
    CHECK(flag_value(epsilon.runs[i], "--seed") == flag_value(epsilon.runs[i + 1], "--seed"));
    CHECK(epsilon.runs[i].stack == "fp16");
  }
}

TEST_CASE("temperature: final mean and spread of τ_h over heads per precision, against √d_k") {
  const ExperimentPlan plan = plan_in("temperature", {.precisions = "e4m3,fp32"});
  // Two blocks of two heads; the last observed step (20) counts, step 10 must not.
  const std::vector<std::vector<double>> final_tau = {{5.0, 6.0, 7.0, 10.0}, {5.5, 5.5, 6.0, 6.0}};
  for (size_t r = 0; r < 2; ++r) {
    std::vector<json> lines;
    for (int step : {10, 20}) {
      json line{{"step", step}, {"loss", 3.0}};
      for (int i = 0; i < 4; ++i)
        line[lattice::concat("temperature/blocks.", i / 2, ".attention.head", i % 2)] =
            step == 20 ? final_tau[r][size_t(i)] : 100.0;
      lines.push_back(line);
      lines.push_back({{"step", step + 1}, {"loss", 2.9}});  // a line without diagnostics
    }
    write_run(fs::path(plan.root) / plan.runs[r].id, lines,
              {{"status", "finished"}, {"val_loss", 2.5 + double(r)}});
  }
  const ExperimentReport report = report_experiment(plan);
  // e4m3: mean (5+6+7+10)/4 = 7, population variance (4+1+0+9)/4 = 3.5.
  CHECK(report.values.at("e4m3-s0/tau_mean") == doctest::Approx(7.0));
  CHECK(report.values.at("e4m3-s0/tau_std") == doctest::Approx(std::sqrt(3.5)));
  CHECK(report.values.at("fp32-s0/tau_mean") == doctest::Approx(5.75));
  CHECK(report.values.at("fp32-s0/tau_std") == doctest::Approx(0.25));
  CHECK(report.values.at("fp32-s0/val_loss") == 3.5);
  if (gnuplot_available()) {
    const std::vector<std::string> figures = plot_experiment(plan);
    REQUIRE(figures.size() == 2);  // τ_h trajectories, loss curves
    for (const std::string& figure : figures) CHECK(fs::file_size(figure) > 1000);
  }
  CHECK(report.markdown.find(
            "| e4m3 | `bf16,gemm=e4m3:b32` | 0 | 4 | 5.657 | 7 | 1.871 | 5 | 10 |") !=
        std::string::npos);
}

TEST_CASE("head-dim: logit std, entropy, cast change per (precision, d_k) and the optimum d_k") {
  const ExperimentPlan plan = plan_in("head-dim", {.precisions = "e4m3,fp32"});
  REQUIRE(plan.runs.size() == 6);  // d_model 96: d_k 32, 48, 96
  // Val losses: e4m3 best at d_k 32, fp32 best at d_k 96.
  const std::map<std::string, double> val_loss = {{"e4m3-dk32-s0", 2.0}, {"e4m3-dk48-s0", 2.1},
                                                  {"e4m3-dk96-s0", 2.3}, {"fp32-dk32-s0", 2.2},
                                                  {"fp32-dk48-s0", 2.1}, {"fp32-dk96-s0", 1.9}};
  for (const RunConfig& run : plan.runs) {
    const int heads = std::stoi(run.values.at("heads"));
    std::vector<json> lines;
    for (int step : {10, 20}) {
      json line{{"step", step}, {"loss", 3.0}, {"cast_change.e4m3", step == 10 ? 0.5 : 0.7}};
      for (int h = 0; h < heads; ++h) {
        const std::string where = lattice::concat("/blocks.0.attention.head", h);
        line["logit_std" + where] = 4.0 + h;         // mean over heads: 4 + (heads - 1) / 2
        line["logit_std_scaled" + where] = 1.0 * h;  // (heads - 1) / 2
        line["entropy" + where] = step == 20 ? 2.0 : 9.0;
      }
      lines.push_back(line);
    }
    write_run(fs::path(plan.root) / run.id, lines,
              {{"status", "finished"}, {"val_loss", val_loss.at(run.id)}});
  }
  const ExperimentReport report = report_experiment(plan);
  CHECK(report.values.at("e4m3-dk32-s0/logit_std") == doctest::Approx(5.0));         // 3 heads
  CHECK(report.values.at("e4m3-dk48-s0/logit_std_scaled") == doctest::Approx(0.5));  // 2 heads
  CHECK(report.values.at("fp32-dk96-s0/entropy") == doctest::Approx(2.0));
  CHECK(report.values.at("fp32-dk96-s0/cast_change") == doctest::Approx(0.6));
  CHECK(report.values.at("e4m3/best_d_k") == 32);
  CHECK(report.values.at("fp32/best_d_k") == 96);
  CHECK(report.markdown.find("d_k = 64, 80, 128 do not divide d_model = 96") != std::string::npos);
  CHECK(report.markdown.find("| fp32 | 96 | 1.9 |") != std::string::npos);
}

TEST_CASE("ffn-width: mean β_t and the ULP histogram's mass at |Δθ|/ULP ≥ ½, summed over steps") {
  const ExperimentPlan plan = plan_in("ffn-width", {.precisions = "bf16"});
  REQUIRE(plan.runs.size() == 5);
  // Octave k holds [2^(k-20), 2^(k-19)): k = 18 is [1/4, 1/2) (below ½), k = 19 is [½, 1).
  std::vector<double> counts(40, 0.0);
  counts[18] = 3, counts[19] = 5, counts[25] = 1;
  const json histogram{{"lowest_octave", -20},
                       {"tensors",
                        {{"all", {{"below", 10}, {"counts", counts}, {"above", 2}}},
                         {"blocks.0.w", {{"below", 99}, {"counts", counts}, {"above", 99}}}}}};
  const std::vector<json> details = {{{"step", 10}, {"detail", {{"ulp_histogram", histogram}}}},
                                     {{"step", 20}, {"detail", {{"ulp_histogram", histogram}}}}};
  for (size_t r = 0; r < plan.runs.size(); ++r)
    write_run(fs::path(plan.root) / plan.runs[r].id,
              {{{"step", 10}, {"beta", 0.2}},
               {{"step", 20}, {"beta", nullptr}},  // NaN: left out of the mean
               {{"step", 30}, {"beta", 0.4}}},
              {{"status", "finished"}, {"val_loss", 3.0 - 0.1 * double(r == 2)}}, details);
  const ExperimentReport report = report_experiment(plan);
  // Per step: total 10 + 3 + 5 + 1 + 2 = 21, at or above ½: 5 + 1 + 2 = 8.
  CHECK(report.values.at("bf16-k4-s0/mass_above_half") == doctest::Approx(8.0 / 21.0));
  CHECK(report.values.at("bf16-k4-s0/beta_mean") == doctest::Approx(0.3));
  CHECK(report.values.at("bf16/best_k") == 4);
}

TEST_CASE("precision-order: status and val loss per (lr, seed) and the cells where one diverged") {
  const ExperimentPlan plan = plan_in("precision-order", {.seeds = 1});
  for (const RunConfig& run : plan.runs) {
    const bool diverged = run.values.at("precision") == "fp16" && run.values.at("lr") == "0.1";
    const bool both = run.values.at("lr") == "0.03";
    write_run(fs::path(plan.root) / run.id, {{{"step", 1}, {"loss", 3.0}}},
              {{"status", diverged || both ? "diverged" : "finished"},
               {"val_loss", diverged || both ? json(nullptr) : json(2.0)}});
  }
  const ExperimentReport report = report_experiment(plan);
  CHECK(report.values.at("disagreements") == 1);
  CHECK(report.values.at("fp16-lr0.1-s0/diverged") == 1);
  CHECK(report.values.at("bf16-lr0.1-s0/diverged") == 0);
  CHECK(report.markdown.find("| 0.1 | 0 | diverged | - | finished | 2 | yes |") !=
        std::string::npos);
  CHECK(report.markdown.find("| 0.03 | 0 | diverged | - | diverged | - | no |") !=
        std::string::npos);
}

TEST_CASE("hysteresis: the loss gap between A→B→A and A throughout, in 10-step windows") {
  const ExperimentPlan plan = plan_in("hysteresis", {.steps = 300});
  REQUIRE(plan.runs.size() == 3);
  // Same loss until the swap (P_B from logged step 101 on); then the swapped run is worse by
  // 0.5 decaying as 0.5 * 0.99^(t - 100).
  const auto throughout = [](int t) { return 3.0 - 0.002 * t; };
  const auto swapped = [&](int t) {
    return throughout(t) + (t > 100 ? 0.5 * std::pow(0.99, t - 100) : 0.0);
  };
  std::vector<json> a, b, reseeded;
  for (int t = 1; t <= 300; ++t) {
    a.push_back({{"step", t}, {"loss", throughout(t)}});
    b.push_back({{"step", t}, {"loss", swapped(t)}});
    reseeded.push_back({{"step", t}, {"loss", throughout(t) + 0.125}});
  }
  write_run(fs::path(plan.root) / plan.runs[2].id, reseeded,
            {{"status", "finished"}, {"val_loss", 2.5}});
  write_run(fs::path(plan.root) / plan.runs[0].id, a, {{"status", "finished"}, {"val_loss", 2.0}});
  write_run(fs::path(plan.root) / plan.runs[1].id, b, {{"status", "finished"}, {"val_loss", 2.25}});
  const ExperimentReport report = report_experiment(plan);
  const auto expected_gap = [](int start) {
    double gap = 0;
    for (int t = start; t < start + 10; ++t) gap += 0.5 * std::pow(0.99, t - 100) / 10.0;
    return gap;
  };
  CHECK(report.values.at("s0/gap@91") == doctest::Approx(0.0));  // steps 91-100: before the swap
  CHECK(report.values.at("s0/gap@201") == doctest::Approx(expected_gap(201)));
  CHECK(report.values.at("s0/gap@251") == doctest::Approx(expected_gap(251)));
  CHECK(report.values.at("s0/val_gap") == doctest::Approx(0.25));
  CHECK(report.values.at("s0/seed_gap@251") == doctest::Approx(0.125));
  CHECK(!report.values.contains("s0/gap@301"));  // past the end
}

TEST_CASE("crossing: progress per 25-step window against mean β_t, Pearson and the low-β mean") {
  const ExperimentPlan plan = plan_in("crossing", {.steps = 100});
  // β_t falls linearly, and the loss drops by β_t per step, so progress tracks β_t exactly.
  std::vector<json> lines;
  double loss = 5.0;
  for (int t = 1; t <= 100; ++t) {
    const double beta = 0.5 - 0.005 * t;
    loss -= beta;
    json line{{"step", t}, {"loss", loss}, {"lr", 1e-3}};
    if (t % 5 == 0) line["beta"] = beta;
    lines.push_back(line);
  }
  write_run(fs::path(plan.root) / plan.runs[0].id, lines, {{"status", "finished"}});
  const ExperimentReport report = report_experiment(plan);
  // Windows 26-50, 51-75, 76-100; progress = mean loss of the window before - this one's.
  const auto loss_at = [](int t) {
    double l = 5.0;
    for (int s = 1; s <= t; ++s) l -= 0.5 - 0.005 * s;
    return l;
  };
  const auto window_loss = [&](int first) {
    double total = 0;
    for (int t = first; t < first + 25; ++t) total += loss_at(t) / 25.0;
    return total;
  };
  std::vector<double> progress, beta;
  for (int first : {26, 51, 76}) {
    progress.push_back(window_loss(first - 25) - window_loss(first));
    double b = 0;
    for (int t = first + 4; t < first + 25; t += 5) b += (0.5 - 0.005 * t) / 5.0;  // logged
    beta.push_back(b);
  }
  const std::string id = plan.runs[0].id;
  CHECK(report.values.at(id + "/pearson") == doctest::Approx(1.0));
  CHECK(std::isnan(report.values.at(plan.runs[1].id + "/pearson")));  // not run: no windows
  // The median window's β is not below the median: low = the last window only.
  CHECK(report.values.at(id + "/progress_low_beta") == doctest::Approx(progress[2]));
  CHECK(report.values.at(id + "/progress_high_beta") ==
        doctest::Approx((progress[0] + progress[1]) / 2));
  CHECK(report.markdown.find("| 76-100 | 0.001 | " + [&] {
    std::ostringstream text;
    text << std::setprecision(4) << beta[2];
    return text.str();
  }()) != std::string::npos);
}

TEST_CASE("stochastic-rounding: mean β_t and Λw churn per stack; a missing run shows '-'") {
  const ExperimentPlan plan = plan_in("stochastic-rounding", {});
  write_run(fs::path(plan.root) / plan.runs[2].id,
            {{{"step", 10}, {"beta", 0.1}, {"churn/w", 0.3}},
             {{"step", 20}, {"beta", 0.2}, {"churn/w", 0.5}}},
            {{"status", "finished"}, {"val_loss", 2.5}});
  const ExperimentReport report = report_experiment(plan);
  CHECK(report.values.at("bf16-sr-s0/beta_mean") == doctest::Approx(0.15));
  CHECK(report.values.at("bf16-sr-s0/churn_mean") == doctest::Approx(0.4));
  CHECK(std::isnan(report.values.at("bf16-rne-s0/beta_mean")));
  CHECK(report.markdown.find("| `w=bf16` | RNE | fp32 | 0 | - | - | - | - |") != std::string::npos);
}

TEST_CASE("a finished run whose command.txt differs from the plan's stops the experiment") {
  const ExperimentPlan plan = plan_in("crossing", {.steps = 50});
  const fs::path dir = fs::path(plan.root) / plan.runs[0].id;
  write_run(dir, {}, {{"status", "finished"}});
  std::ofstream(dir / "command.txt") << "llama --steps 600 --threads 2\n";
  CHECK_THROWS_WITH_AS(run_experiment(plan, LATTICE_TOOL, 1, 1),
                       doctest::Contains("ran another command (its command.txt)"), lattice::Error);
}
