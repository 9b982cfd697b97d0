// The sweep's reports (see sweep_report.h): run outcomes from their folders, Score against the
// best bf16 baseline (algorithms.md §4.11 B), Table 3's row selection, CSV, Markdown, figures.
#include "tools/sweep_report.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "tensor/design_space.h"
#include "tensor/precision_stack.h"
#include "tools/plot.h"

namespace lattice::tools {

namespace fs = std::filesystem;

namespace {

double number_or_nan(const nlohmann::json& j, const char* key) {
  return j.contains(key) && j[key].is_number() ? j[key].get<double>() : NAN;
}

std::string fixed(double v, const char* format) {
  if (std::isnan(v)) return "NaN";
  char text[32];
  std::snprintf(text, sizeof text, format, v);
  return text;
}

/// The GEMM operand quantizer that carries the run's block scaling, if any.
std::optional<Quantizer> scaled_operand(const std::string& stack_spec) {
  PrecisionStack s;
  try {
    s = parse_precision_stack(stack_spec);
  } catch (const Error&) {
    return std::nullopt;
  }
  for (const Quantizer* q : {&s.gemm.input, &s.gemm.weight, &s.gemm.output_grad,
                             &s.gemm.saved_input, &s.gemm.saved_weight})
    if (q->scaling) return *q;
  return std::nullopt;
}

/// The paper's name of a scale format: E8M0, E4M3, UE5M3, ...
std::string scale_label(const Format& f) {
  if (f == ue8m0) return "E8M0";
  std::string name = format_name(f);
  for (char& c : name) c = char(std::toupper((unsigned char)c));
  return name;
}

std::string scale_of(const RunResult& r) {
  const std::optional<Quantizer> q = scaled_operand(r.stack);
  return q ? scale_label(q->scaling->scale_format) : "";
}

bool has_tensor_scale(const BlockScaling& s) {
  return s.rule == ScaleRule::nvfp4 || (s.rule == ScaleRule::encode && s.tensor_scale);
}

const std::set<std::string>& pure_fp4_stacks() {
  static const std::set<std::string> stacks = [] {
    std::set<std::string> specs;
    for (const NamedStack& named : named_stacks())
      if (std::string(named.name).starts_with("pure-fp4-"))
        specs.insert(to_string(parse_precision_stack(named.spec)));
    return specs;
  }();
  return stacks;
}

bool is_pure_fp4(const RunResult& r) {
  return pure_fp4_stacks().contains(r.stack) && r.optimizer != "stablespam" &&
         r.loss_scale == "none";
}

bool is_bf16(const RunResult& r) {
  static const std::string bf16 = to_string(parse_precision_stack("bf16"));
  return r.stack == bf16;
}

std::string csv_field(const std::string& text) {
  if (text.find_first_of(",\"\n") == std::string::npos) return text;
  std::string out = "\"";
  for (char c : text) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

std::string csv_number(double v) {
  if (std::isnan(v)) return "";
  char text[32];
  std::snprintf(text, sizeof text, "%.9g", v);
  return text;
}

std::string title_case_optimizer(const std::string& name) {
  if (name == "adam") return "Adam";
  if (name == "adamw") return "AdamW";
  if (name == "sgd") return "SGD";
  if (name == "stablespam") return "StableSPAM";
  return name;
}

std::string estimator(const std::string& name) {
  return name == "ste" ? "STE" : name;
}

/// Table 3's columns from Val loss on, for one run.
std::vector<std::string> table_cells(const RunResult& r) {
  const std::string val =
      r.status == "finished" ? fixed(r.val_loss, "%.4g") : "NaN (" + r.status + ")";
  std::vector<std::string> cells{val, fixed(r.train_loss, "%.4g")};
  const std::optional<Quantizer> q = scaled_operand(r.stack);
  const std::string optimiser = title_case_optimizer(r.optimizer);
  const std::string loss_scaling = r.loss_scale == "none" ? "False" : "True";
  if (!q) {
    for (int i = 0; i < 7; ++i) cells.push_back("N/A");
    cells.push_back(optimiser);
    cells.push_back(loss_scaling);
    for (int i = 0; i < 6; ++i) cells.push_back("N/A");
    return cells;
  }
  const BlockScaling& s = *q->scaling;
  const GemmRecipe r0 = parse_precision_stack(r.stack).gemm.recipe;
  std::string max = estimator(to_string(r0.max_approx));
  if (r0.max_approx == MaxApprox::softsoftmax || r0.max_approx == MaxApprox::hardsoftmax)
    max += concat("(", r0.alpha, ")");
  const std::string round_mode = s.scale_rounding == RoundingMode::nearest_even ? "TiesToEven"
                                 : s.scale_rounding == RoundingMode::toward_positive
                                     ? "TowardPositive"
                                 : s.scale_rounding == RoundingMode::stochastic
                                     ? "Stochastic"
                                     : rounding_name(Rounding{.mode = s.scale_rounding});
  const std::string sr = r0.stochastic_rounding == StochasticRounding::none ? "None"
                         : r0.stochastic_rounding == StochasticRounding::intel_fp4
                             ? "IntelFP4"
                             : to_string(r0.stochastic_rounding);
  const bool ts = has_tensor_scale(s);
  cells.insert(
      cells.end(),
      {scale_label(s.scale_format), std::to_string(s.block_size), max,
       estimator(to_string(r0.step_gradient)),
       r0.hadamard == HadamardPlacement::none ? "N/A" : to_string(r0.hadamard),
       estimator(to_string(r0.scale_gradient)), sr, optimiser, loss_scaling, round_mode,
       ts ? "True" : "False", ts ? estimator(to_string(r0.tensor_scale_gradient)) : "N/A",
       fixed(r.complexity_points, "%.2f"), fixed(r.score, "%.3f"), zero_scale_name(s.zero_scale)});
  return cells;
}

}  // namespace

RunResult load_run(const RunConfig& config, const std::string& root, const std::string& dataset) {
  RunResult r{.id = config.id,
              .role = config.role,
              .baseline = config.baseline,
              .dataset = dataset,
              .dir = (fs::path(root) / config.id).string(),
              .values = config.values,
              .stack = config.stack};
  for (size_t i = 0; i + 1 < config.flags.size(); ++i) {
    if (config.flags[i] == "--optimizer") r.optimizer = config.flags[i + 1];
    if (config.flags[i] == "--loss-scale") r.loss_scale = config.flags[i + 1];
  }
  const fs::path summary_path = fs::path(r.dir) / "summary.json";
  if (fs::exists(summary_path)) {
    std::ifstream in(summary_path);
    nlohmann::json s;
    try {
      s = nlohmann::json::parse(in);
    } catch (const std::exception&) {
      r.status = "failed";
      r.error = "summary.json is not JSON";
      return r;
    }
    r.val_loss = number_or_nan(s, "val_loss");
    r.train_loss = number_or_nan(s, "train_loss");
    r.val_accuracy = number_or_nan(s, "val_accuracy");
    r.complexity_points = number_or_nan(s, "complexity_points");
    r.seconds = number_or_nan(s, "seconds");
    r.step_ms_median = number_or_nan(s, "step_ms_median");
    if (s.contains("stack") && s["stack"].is_string()) r.stack = s["stack"];
    if (s.contains("optimizer") && s["optimizer"].is_string()) r.optimizer = s["optimizer"];
    if (s.contains("loss_scale") && s["loss_scale"].is_string()) r.loss_scale = s["loss_scale"];
    // NaN is a result: a diverged run finished its process but has no finite validation loss.
    const bool diverged = s.value("status", "finished") == "diverged" || !std::isfinite(r.val_loss);
    r.status = diverged ? "diverged" : "finished";
    return r;
  }
  const fs::path error_path = fs::path(r.dir) / "error.txt";
  if (fs::exists(error_path)) {
    r.status = "failed";
    std::ifstream in(error_path);
    std::getline(in, r.error);
  }
  return r;
}

std::map<std::string, double> score_runs(std::vector<RunResult>& runs) {
  std::map<std::string, double> refs;
  const auto lowest = [&](const std::string& dataset, bool bf16_only) {
    double ref = NAN;
    for (const RunResult& r : runs)
      if (r.dataset == dataset && r.role == "baseline" && r.status == "finished" &&
          (!bf16_only || is_bf16(r)) && !(r.val_loss >= ref))
        ref = r.val_loss;
    return ref;
  };
  for (const RunResult& r : runs) {
    if (refs.contains(r.dataset)) continue;
    const double bf16 = lowest(r.dataset, true);
    const double any = lowest(r.dataset, false);
    if (!std::isnan(bf16) || !std::isnan(any)) refs[r.dataset] = std::isnan(bf16) ? any : bf16;
  }
  for (RunResult& r : runs) {
    const auto ref = refs.find(r.dataset);
    if (r.role != "baseline" && r.status == "finished" && ref != refs.end())
      r.score = design_space_score(ref->second, r.val_loss, r.complexity_points);
  }
  return refs;
}

std::vector<TableRow> select_table_rows(const std::vector<RunResult>& runs,
                                        const std::string& dataset) {
  std::vector<TableRow> rows;
  // Baselines: the best finished run of each (baseline, optimiser).
  std::map<std::pair<std::string, std::string>, const RunResult*> best_baseline;
  std::vector<std::pair<std::string, std::string>> baseline_order;
  for (const RunResult& r : runs) {
    if (r.dataset != dataset || r.role != "baseline") continue;
    const auto key = std::make_pair(r.baseline, r.optimizer);
    auto [it, inserted] = best_baseline.try_emplace(key, &r);
    if (inserted) baseline_order.push_back(key);
    const bool better = r.status == "finished" &&
                        (it->second->status != "finished" || r.val_loss < it->second->val_loss);
    if (better) it->second = &r;
  }
  for (const auto& key : baseline_order)
    rows.push_back({"Baseline " + key.first, best_baseline[key]});

  std::vector<std::string> scales;
  for (const RunResult& r : runs) {
    const std::string scale = scale_of(r);
    if (r.dataset == dataset && r.role != "baseline" && !scale.empty() &&
        std::find(scales.begin(), scales.end(), scale) == scales.end())
      scales.push_back(scale);
  }
  const auto best = [&](const std::string& scale, auto&& eligible, auto&& better) {
    const RunResult* chosen = nullptr;
    for (const RunResult& r : runs)
      if (r.dataset == dataset && r.role != "baseline" && scale_of(r) == scale && eligible(r) &&
          (!chosen || better(r, *chosen)))
        chosen = &r;
    return chosen;
  };
  const auto higher_score = [](const RunResult& a, const RunResult& b) {
    return a.score > b.score;
  };
  const auto lower_loss = [](const RunResult& a, const RunResult& b) {
    return a.val_loss < b.val_loss;
  };
  for (const std::string& scale : scales)
    if (const RunResult* r = best(
            scale, [](const RunResult& x) { return x.score < 0; }, higher_score))
      rows.push_back({"Best Score (Neg)", r});
  for (const std::string& scale : scales)
    if (const RunResult* r = best(
            scale, [](const RunResult& x) { return x.score >= 0; }, higher_score))
      rows.push_back({"Best Score (Pos)", r});
  for (const std::string& scale : scales)
    if (const RunResult* r = best(
            scale, [](const RunResult& x) { return x.status == "finished"; }, lower_loss))
      rows.push_back({"Best loss " + scale, r});
  for (const std::string& scale : scales) {
    const RunResult* r = best(
        scale, [](const RunResult& x) { return x.status == "finished" && is_pure_fp4(x); },
        lower_loss);
    // A pure-FP4 run that diverged is the finding itself, so it is shown rather than left out.
    if (!r)
      r = best(
          scale, [](const RunResult& x) { return x.status == "diverged" && is_pure_fp4(x); },
          [](const RunResult&, const RunResult&) { return false; });
    if (r) rows.push_back({"Pure FP4", r});
  }
  return rows;
}

std::string runs_csv(const std::vector<RunResult>& runs, const std::vector<std::string>& axes) {
  std::string csv = "id,role";
  for (const std::string& axis : axes) csv += concat(",", csv_field(axis));
  csv +=
      ",stack,status,val_loss,train_loss,val_accuracy,complexity_points,score,seconds,"
      "step_ms_median,error\n";
  for (const RunResult& r : runs) {
    csv += csv_field(r.id) + "," + r.role;
    for (const std::string& axis : axes) {
      const auto v = r.values.find(axis);
      csv += concat(",", csv_field(v == r.values.end() ? "" : v->second));
    }
    csv += concat(",", csv_field(r.stack), ",", r.status, ",", csv_number(r.val_loss), ",",
                  csv_number(r.train_loss), ",", csv_number(r.val_accuracy), ",",
                  csv_number(r.complexity_points), ",", csv_number(r.score), ",",
                  csv_number(r.seconds), ",", csv_number(r.step_ms_median), ",", csv_field(r.error),
                  "\n");
  }
  return csv;
}

std::string table_markdown(const std::vector<RunResult>& runs,
                           const std::map<std::string, double>& refs) {
  std::string md =
      "| Dataset | Source | Val loss | Train loss | Scale | Block size | Max grad. | Quant. grad. "
      "| "
      "Hadamard | Scale grad | SR | Optimiser | Loss scaling | Round mode | Tensor scaling | "
      "Tensor grad | Complexity points | Score | NaN mode | Run |\n"
      "|---|---|--:|--:|---|--:|---|---|---|---|---|---|---|---|---|---|--:|--:|---|---|\n";
  std::vector<std::string> datasets;
  for (const RunResult& r : runs)
    if (std::find(datasets.begin(), datasets.end(), r.dataset) == datasets.end())
      datasets.push_back(r.dataset);
  std::string notes;
  for (const std::string& dataset : datasets) {
    for (const TableRow& row : select_table_rows(runs, dataset)) {
      md += "| " + dataset + " | " + row.source;
      for (const std::string& cell : table_cells(*row.run)) md += " | " + cell;
      md += " | " + row.run->id + " |\n";
    }
    std::map<std::string, int> counts;
    for (const RunResult& r : runs)
      if (r.dataset == dataset) ++counts[r.status];
    const auto ref = refs.find(dataset);
    bool bf16 = false;
    for (const RunResult& r : runs)
      bf16 |= r.dataset == dataset && r.role == "baseline" && is_bf16(r);
    notes += concat("\n", dataset, ": Score against ref = ",
                    ref == refs.end() ? std::string("none (no finished baseline)")
                                      : fixed(ref->second, "%.4g") +
                                            (bf16 ? " (best bf16 baseline val loss)"
                                                  : " (best baseline val loss: no bf16 baseline)"),
                    "; runs: ", counts["finished"], " finished, ", counts["diverged"],
                    " diverged, ", counts["failed"], " failed, ", counts["missing"], " not run.\n");
  }
  return md + notes;
}

void write_reports(const SweepSpec& spec, const Expansion& expansion, const std::string& root) {
  fs::create_directories(root);
  std::vector<RunResult> runs;
  for (const RunConfig& config : expansion.runs)
    runs.push_back(load_run(config, root, spec.dataset));
  const std::map<std::string, double> refs = score_runs(runs);
  const fs::path dir(root);
  std::ofstream(dir / "runs.csv") << runs_csv(runs, expansion.axes);
  const std::string table = table_markdown(runs, refs);
  std::ofstream(dir / "table.md") << table;
  std::cout << table << std::flush;
  std::fprintf(stderr, "wrote %s and %s\n", (dir / "runs.csv").c_str(), (dir / "table.md").c_str());

  if (!gnuplot_available()) {
    std::fprintf(stderr, "gnuplot not found: pareto.png and curves.png not drawn\n");
    return;
  }
  std::vector<ScatterPoint> points;
  for (const RunResult& r : runs)
    if (r.role != "baseline" && std::isfinite(r.score))
      points.push_back({r.complexity_points, r.score, scale_of(r).empty() ? "other" : scale_of(r)});
  plot_pareto(points, pareto_frontier(points), spec.dataset + ": complexity points vs score",
              (dir / "pareto.png").string(), (dir / "pareto.gp").string());

  CurvesRequest curves{.metrics = {"loss", "val_loss"},
                       .title = spec.dataset + ": runs of table.md",
                       .out = (dir / "curves.png").string(),
                       .script = (dir / "curves.gp").string()};
  // One curve per run; a run that fills several rows gets their sources joined in its label.
  std::vector<const RunResult*> curve_runs;
  std::vector<std::string> labels;
  for (const TableRow& row : select_table_rows(runs, spec.dataset)) {
    if (!fs::exists(fs::path(row.run->dir) / "metrics.jsonl")) continue;
    const std::string scale = scale_of(*row.run);
    std::string source = row.source;
    if (!scale.empty() && source.ends_with(" " + scale))
      source.resize(source.size() - scale.size() - 1);
    const size_t i =
        size_t(std::find(curve_runs.begin(), curve_runs.end(), row.run) - curve_runs.begin());
    if (i == curve_runs.size()) {
      curve_runs.push_back(row.run);
      labels.push_back(source);
    } else {
      labels[i] += " / " + source;
    }
  }
  for (size_t i = 0; i < curve_runs.size(); ++i) {
    const std::string scale = scale_of(*curve_runs[i]);
    curves.runs.push_back({curve_runs[i]->dir, labels[i] + (scale.empty() ? "" : " " + scale)});
  }
  if (!curves.runs.empty()) plot_curves(curves);
  std::fprintf(
      stderr, "wrote %s and %s\n", (dir / "pareto.png").c_str(),
      curves.runs.empty() ? "no curves (no run has metrics)" : (dir / "curves.png").c_str());
}

}  // namespace lattice::tools
