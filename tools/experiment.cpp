// The fistful-of-errors experiments (§7) and predictions (§8): each one's llama runs, its table
// from their metrics.jsonl, diagnostics.jsonl and summary.json, and its figures.

#include "tools/experiment.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "tools/analyze.h"
#include "tools/plot.h"
#include "tools/process.h"

namespace lattice::tools {

namespace fs = std::filesystem;

const std::vector<std::string> kExperimentNames = {
    "temperature",        "head-dim",         "ffn-width",           "precision-order",
    "hysteresis",         "crossing",         "stochastic-rounding", "stability-predictor",
    "stability-lead-lag", "stability-epsilon"};

const std::vector<std::pair<std::string, std::string>> kExperimentPrecisions = {
    {"e4m3", "bf16,gemm=e4m3:b32"},
    {"e5m2", "bf16,gemm=e5m2:b32"},
    {"fp16", "fp16"},
    {"bf16", "bf16"},
    {"fp32", "fp32"}};

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// §7.2's head dimensions and §7.3's expansion factors.
const std::vector<int64_t> kHeadDims = {32, 48, 64, 80, 96, 128};
const std::vector<int64_t> kExpansionFactors = {2, 3, 4, 6, 8};

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> items;
  for (size_t start = 0; start <= text.size();) {
    const size_t comma = std::min(text.find(',', start), text.size());
    if (comma > start) items.push_back(text.substr(start, comma - start));
    start = comma + 1;
  }
  return items;
}

std::string precision_stack(const std::string& precision) {
  for (const auto& [name, stack] : kExperimentPrecisions)
    if (name == precision) return stack;
  std::string known;
  for (const auto& [name, stack] : kExperimentPrecisions)
    known += (known.empty() ? "" : ", ") + name;
  throw Error(concat("[experiment] unknown precision \"", precision, "\" (known: ", known, ")"));
}

/// What every experiment's runs share, after the options and the experiment's defaults.
struct Size {
  int64_t steps, dim, layers, sequence, batch, seeds;
  std::vector<std::string> precisions;
};

Size size_of(const ExperimentOptions& o,
             int64_t steps,
             int64_t dim,
             int64_t sequence,
             const std::string& precisions,
             int64_t seeds = 1) {
  LATTICE_CHECK(o.seeds >= 0, "[experiment] --seeds ", o.seeds, ": expected at least 1");
  Size size{.steps = o.steps > 0 ? o.steps : steps,
            .dim = o.dim > 0 ? o.dim : dim,
            .layers = o.layers > 0 ? o.layers : 2,
            .sequence = o.sequence > 0 ? o.sequence : sequence,
            .batch = o.batch > 0 ? o.batch : 16,
            .seeds = o.seeds > 0 ? o.seeds : seeds,
            .precisions = split_list(o.precisions.empty() ? precisions : o.precisions)};
  for (const std::string& p : size.precisions) precision_stack(p);  // validates
  return size;
}

/// The tiny llama of every run: byte tokens on the Debian English corpus, d_k = 32 unless the
/// experiment sets heads, SwiGLU width 4 d_model unless it sets hidden.
std::vector<std::string> llama_flags(
    const Size& size, int64_t heads, int64_t hidden, const std::string& lr, int64_t seed) {
  return {"--tokenizer",    "byte",
          "--dim",          std::to_string(size.dim),
          "--layers",       std::to_string(size.layers),
          "--heads",        std::to_string(heads),
          "--hidden",       std::to_string(hidden),
          "--seq",          std::to_string(size.sequence),
          "--batch",        std::to_string(size.batch),
          "--steps",        std::to_string(size.steps),
          "--lr",           lr,
          "--seed",         std::to_string(seed),
          "--eval-batches", "8",
          "--log-every",    "50"};
}

void append(std::vector<std::string>& flags, const std::vector<std::string>& more) {
  flags.insert(flags.end(), more.begin(), more.end());
}

RunConfig make_run(const std::string& id,
                   const std::string& stack,
                   std::map<std::string, std::string> values,
                   std::vector<std::string> flags) {
  values["stack"] = stack;
  return {.id = id,
          .role = "grid",
          .values = std::move(values),
          .stack = stack,
          .flags = std::move(flags)};
}

// ---- Run folders ----

struct RunRecord {
  bool finished = false;  // summary.json present
  nlohmann::json summary = nlohmann::json::object();
  std::vector<nlohmann::json> lines = {};    // metrics.jsonl
  std::vector<nlohmann::json> details = {};  // diagnostics.jsonl
};

std::vector<nlohmann::json> read_json_lines(const fs::path& path) {
  std::vector<nlohmann::json> lines;
  std::ifstream in(path);
  if (!in) return lines;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (line.empty()) continue;
    nlohmann::json value = nlohmann::json::parse(line, nullptr, false);
    LATTICE_CHECK(!value.is_discarded() && value.is_object(), "[experiment] ", path.string(), ":",
                  number, ": not a JSON object");
    lines.push_back(std::move(value));
  }
  return lines;
}

RunRecord read_run(const fs::path& dir) {
  RunRecord run;
  std::ifstream in(dir / "summary.json");
  if (in) {
    run.summary = nlohmann::json::parse(in, nullptr, false);
    LATTICE_CHECK(!run.summary.is_discarded() && run.summary.is_object(), "[experiment] ",
                  (dir / "summary.json").string(), ": not a JSON object");
    run.finished = true;
  }
  run.lines = read_json_lines(dir / "metrics.jsonl");
  run.details = read_json_lines(dir / "diagnostics.jsonl");
  return run;
}

/// A number of a JSON object; NaN where the key is absent or null (the trainer's NaN).
double number(const nlohmann::json& object, const std::string& key) {
  const auto it = object.find(key);
  return it != object.end() && it->is_number() ? it->get<double>() : kNaN;
}

std::string status_of(const RunRecord& run) {
  return run.finished ? run.summary.value("status", "?") : "-";
}

/// The values of the keys starting with `prefix` on the last line that has any.
std::vector<double> last_values(const RunRecord& run, const std::string& prefix) {
  for (auto line = run.lines.rbegin(); line != run.lines.rend(); ++line) {
    std::vector<double> values;
    for (const auto& [key, value] : line->items())
      if (key.starts_with(prefix)) values.push_back(value.is_number() ? value.get<double>() : kNaN);
    if (!values.empty()) return values;
  }
  return {};
}

/// (step, value) of every line with `key`.
struct KeySeries {
  std::vector<double> steps, values;
};
KeySeries series(const RunRecord& run, const std::string& key) {
  KeySeries s;
  for (const nlohmann::json& line : run.lines)
    if (line.contains(key) && line.contains("step")) {
      s.steps.push_back(number(line, "step"));
      s.values.push_back(number(line, key));
    }
  return s;
}

/// Per line with keys starting with `prefix`: the step, and the mean and population standard
/// deviation of those keys' values.
struct SpreadSeries {
  std::vector<double> steps, means, deviations;
};
double mean(const std::vector<double>& x) {
  if (x.empty()) return kNaN;
  double total = 0;
  for (double v : x) total += v;
  return total / double(x.size());
}
double population_deviation(const std::vector<double>& x) {
  const double m = mean(x);
  double total = 0;
  for (double v : x) total += (v - m) * (v - m);
  return x.empty() ? kNaN : std::sqrt(total / double(x.size()));
}
SpreadSeries spread_series(const RunRecord& run, const std::string& prefix) {
  SpreadSeries s;
  for (const nlohmann::json& line : run.lines) {
    std::vector<double> values;
    for (const auto& [key, value] : line.items())
      if (key.starts_with(prefix)) values.push_back(value.is_number() ? value.get<double>() : kNaN);
    if (values.empty()) continue;
    s.steps.push_back(number(line, "step"));
    s.means.push_back(mean(values));
    s.deviations.push_back(population_deviation(values));
  }
  return s;
}

/// Mean of a metric's finite values over every line that logs it.
double mean_of_metric(const RunRecord& run, const std::string& key) {
  std::vector<double> finite;
  for (double v : series(run, key).values)
    if (std::isfinite(v)) finite.push_back(v);
  return mean(finite);
}

/// Mean training loss over the steps in [first, last].
double mean_loss(const RunRecord& run, int64_t first, int64_t last) {
  std::vector<double> losses;
  for (const nlohmann::json& line : run.lines) {
    const double step = number(line, "step"), loss = number(line, "loss");
    if (line.contains("loss") && step >= double(first) && step <= double(last))
      losses.push_back(loss);
  }
  return mean(losses);
}

// ---- Markdown ----

std::string markdown_table(const std::vector<std::string>& header,
                           const std::vector<std::vector<std::string>>& rows) {
  std::string text = "|";
  for (const std::string& h : header) text += " " + h + " |";
  text += "\n|";
  for (size_t i = 0; i < header.size(); ++i) text += i == 0 ? " :-- |" : " --: |";
  text += "\n";
  for (const auto& row : rows) {
    text += "|";
    for (const std::string& c : row) text += " " + c + " |";
    text += "\n";
  }
  return text;
}

const std::string& value_of(const RunConfig& run, const std::string& key) {
  const auto it = run.values.find(key);
  LATTICE_CHECK(it != run.values.end(), "[experiment] run ", run.id, " has no ", key);
  return it->second;
}

fs::path run_dir(const ExperimentPlan& plan, const RunConfig& run) {
  return fs::path(plan.root) / run.id;
}

// ---- The experiments' plans ----

ExperimentPlan plan_temperature(const ExperimentOptions& o) {
  const Size size = size_of(o, 200, 64, 64, "e4m3,e5m2,fp16,bf16,fp32");
  ExperimentPlan plan{.steps = size.steps};
  const int64_t head_dim = 32;
  LATTICE_CHECK(size.dim % head_dim == 0, "[experiment] temperature: --dim ", size.dim,
                " is not a multiple of d_k = 32");
  for (const std::string& p : size.precisions)
    for (int64_t seed = 0; seed < size.seeds; ++seed) {
      std::vector<std::string> flags =
          llama_flags(size, size.dim / head_dim, 4 * size.dim, "3e-3", seed);
      append(flags,
             {"--learned-temperature", "--diagnostics", "attention", "--diagnostics-every", "10"});
      plan.runs.push_back(make_run(
          concat(p, "-s", seed), precision_stack(p),
          {{"precision", p}, {"seed", std::to_string(seed)}, {"d_k", std::to_string(head_dim)}},
          flags));
    }
  return plan;
}

ExperimentPlan plan_head_dim(const ExperimentOptions& o) {
  const Size size = size_of(o, 100, 96, 32, "e4m3,bf16,fp32");
  ExperimentPlan plan{.steps = size.steps};
  std::string impossible;
  for (int64_t head_dim : kHeadDims)
    if (size.dim % head_dim != 0) impossible += concat(impossible.empty() ? "" : ", ", head_dim);
  if (!impossible.empty())
    plan.notes.push_back(concat("d_k = ", impossible, " do not divide d_model = ", size.dim,
                                " (heads = d_model / d_k must be a whole number); ",
                                "--dim 1920 admits all six"));
  for (const std::string& p : size.precisions)
    for (int64_t head_dim : kHeadDims) {
      if (size.dim % head_dim != 0) continue;
      for (int64_t seed = 0; seed < size.seeds; ++seed) {
        std::vector<std::string> flags =
            llama_flags(size, size.dim / head_dim, 4 * size.dim, "3e-3", seed);
        append(flags, {"--diagnostics", "attention,cast:e4m3", "--diagnostics-every", "10"});
        plan.runs.push_back(make_run(concat(p, "-dk", head_dim, "-s", seed), precision_stack(p),
                                     {{"precision", p},
                                      {"seed", std::to_string(seed)},
                                      {"d_k", std::to_string(head_dim)},
                                      {"heads", std::to_string(size.dim / head_dim)}},
                                     flags));
      }
    }
  return plan;
}

ExperimentPlan plan_ffn_width(const ExperimentOptions& o) {
  const Size size = size_of(o, 100, 64, 32, "e4m3,bf16,fp32");
  ExperimentPlan plan{.steps = size.steps};
  for (const std::string& p : size.precisions)
    for (int64_t factor : kExpansionFactors)
      for (int64_t seed = 0; seed < size.seeds; ++seed) {
        std::vector<std::string> flags =
            llama_flags(size, std::max<int64_t>(1, size.dim / 32), factor * size.dim, "3e-3", seed);
        append(flags, {"--diagnostics", "beta", "--diagnostics-every", "10"});
        plan.runs.push_back(make_run(concat(p, "-k", factor, "-s", seed), precision_stack(p),
                                     {{"precision", p},
                                      {"seed", std::to_string(seed)},
                                      {"k", std::to_string(factor)},
                                      {"hidden", std::to_string(factor * size.dim)}},
                                     flags));
      }
  return plan;
}

// Learning rates from comfortable to past the edge of stability, where one of fp16 and bf16
// may diverge before the other (§8, prediction 1).
const std::vector<std::string> kOrderLearningRates = {"0.01", "0.03", "0.06", "0.1", "0.2"};

ExperimentPlan plan_precision_order(const ExperimentOptions& o) {
  const Size size = size_of(o, 150, 64, 32, "fp16,bf16", 3);
  ExperimentPlan plan{.steps = size.steps};
  for (const std::string& lr : kOrderLearningRates)
    for (int64_t seed = 0; seed < size.seeds; ++seed)
      for (const std::string& p : size.precisions)
        plan.runs.push_back(make_run(
            concat(p, "-lr", lr, "-s", seed), precision_stack(p),
            {{"precision", p}, {"seed", std::to_string(seed)}, {"lr", lr}},
            llama_flags(size, std::max<int64_t>(1, size.dim / 32), 4 * size.dim, lr, seed)));
  return plan;
}

// The swap to P_B and back happens at a third and two thirds of the run (§8, prediction 2):
// the trainer's schedule item STEP:SPEC rules from logged step STEP + 1 on. A third run, P_A
// throughout with another seed (+1000), gives the gap's natural scale.
ExperimentPlan plan_hysteresis(const ExperimentOptions& o) {
  const Size size = size_of(o, 600, 64, 32, "bf16,e4m3");
  LATTICE_CHECK(size.precisions.size() == 2, "[experiment] hysteresis: --precisions names P_A,P_B;",
                " got ", size.precisions.size());
  ExperimentPlan plan{.steps = size.steps};
  const std::string a = size.precisions[0], b = size.precisions[1];
  const int64_t swap = size.steps / 3, back = 2 * size.steps / 3;
  const std::string schedule = concat("0:", precision_stack(a), ";", swap, ":", precision_stack(b),
                                      ";", back, ":", precision_stack(a));
  for (int64_t seed = 0; seed < size.seeds; ++seed) {
    const std::vector<std::string> flags =
        llama_flags(size, std::max<int64_t>(1, size.dim / 32), 4 * size.dim, "3e-3", seed);
    const std::map<std::string, std::string> values{{"seed", std::to_string(seed)},
                                                    {"swap", std::to_string(swap)},
                                                    {"back", std::to_string(back)},
                                                    {"a", a},
                                                    {"b", b}};
    auto throughout = values, swapped = values;
    throughout["role"] = "throughout";
    swapped["role"] = "swapped";
    plan.runs.push_back(
        make_run(concat(a, "-throughout-s", seed), precision_stack(a), throughout, flags));
    std::vector<std::string> swap_flags = flags;
    append(swap_flags, {"--stack-schedule", schedule});
    plan.runs.push_back(
        make_run(concat(a, "-", b, "-", a, "-s", seed), precision_stack(a), swapped, swap_flags));
    auto reseeded = values;
    reseeded["role"] = "reseeded";
    plan.runs.push_back(make_run(
        concat(a, "-throughout-s", seed + 1000), precision_stack(a), reseeded,
        llama_flags(size, std::max<int64_t>(1, size.dim / 32), 4 * size.dim, "3e-3", seed + 1000)));
  }
  return plan;
}

// Weights without an fp32 master: an update below half an ULP is lost, so β_t is the fraction
// of weights that move at all (§8, prediction 3). On bf16 with the cosine decay β_t falls with
// the learning rate; on e4m3 at a constant learning rate most updates stay under half an ULP
// although the gradients do not vanish, which separates few crossings from small steps.
struct CrossingRun {
  std::string name, stack;
  std::vector<std::string> schedule;  // extra trainer flags
};
const std::vector<CrossingRun> kCrossingRuns = {
    {"bf16-weights-cosine", "w=bf16,master=bf16", {}},
    {"e4m3-weights-constant", "w=e4m3,master=e4m3", {"--schedule", "constant"}}};

ExperimentPlan plan_crossing(const ExperimentOptions& o) {
  const Size size = size_of(o, 600, 64, 32, "bf16");
  ExperimentPlan plan{.steps = size.steps};
  for (const CrossingRun& crossing : kCrossingRuns)
    for (int64_t seed = 0; seed < size.seeds; ++seed) {
      std::vector<std::string> flags =
          llama_flags(size, std::max<int64_t>(1, size.dim / 32), 4 * size.dim, "3e-3", seed);
      append(flags, {"--diagnostics", "beta", "--diagnostics-every", "5"});
      append(flags, crossing.schedule);
      plan.runs.push_back(make_run(concat(crossing.name, "-s", seed), crossing.stack,
                                   {{"seed", std::to_string(seed)}}, flags));
    }
  return plan;
}

// Per format: round-to-nearest weights with no master (sub-half-ULP updates lost),
// round-to-nearest vs stochastic rounding of the working weights from an fp32 master (SR in
// Λw's write-back only), and stochastic rounding of the update itself with no fp32 master (the
// master on the format, `master=FORMAT:sr`: the paper's SR accumulation).
struct RoundingVariant {
  std::string id, stack, rounding, master;
};
std::vector<RoundingVariant> rounding_variants(const std::string& format) {
  return {
      {format + "-rne-nomaster", concat("w=", format, ",master=", format), "RNE", format},
      {format + "-rne", "w=" + format, "RNE", "fp32"},
      {format + "-sr", concat("w=", format, ":sr"), "SR", "fp32"},
      {format + "-sr-nomaster", concat("w=", format, ":sr,master=", format, ":sr"), "SR", format}};
}

ExperimentPlan plan_stochastic_rounding(const ExperimentOptions& o) {
  const Size size = size_of(o, 150, 64, 32, "bf16");
  ExperimentPlan plan{.steps = size.steps};
  for (const std::string& format : {std::string("bf16"), std::string("e4m3")})
    for (const RoundingVariant& variant : rounding_variants(format))
      for (int64_t seed = 0; seed < size.seeds; ++seed) {
        std::vector<std::string> flags =
            llama_flags(size, std::max<int64_t>(1, size.dim / 32), 4 * size.dim, "3e-3", seed);
        append(flags, {"--diagnostics", "beta", "--diagnostics-every", "10"});
        plan.runs.push_back(make_run(concat(variant.id, "-s", seed), variant.stack,
                                     {{"seed", std::to_string(seed)},
                                      {"format", format},
                                      {"rounding", variant.rounding},
                                      {"master", variant.master}},
                                     flags));
      }
  return plan;
}

// ---- The experiments' tables ----

ExperimentReport report_temperature(const ExperimentPlan& plan) {
  ExperimentReport report;
  std::vector<std::vector<std::string>> rows;
  for (const RunConfig& config : plan.runs) {
    const RunRecord run = read_run(run_dir(plan, config));
    const std::vector<double> tau = last_values(run, "temperature/");
    const double init = std::sqrt(std::stod(value_of(config, "d_k")));
    const double tau_mean = mean(tau), tau_std = population_deviation(tau);
    const double tau_min = tau.empty() ? kNaN : *std::min_element(tau.begin(), tau.end());
    const double tau_max = tau.empty() ? kNaN : *std::max_element(tau.begin(), tau.end());
    const double val_loss = number(run.summary, "val_loss");
    report.values[config.id + "/tau_mean"] = tau_mean;
    report.values[config.id + "/tau_std"] = tau_std;
    report.values[config.id + "/val_loss"] = val_loss;
    rows.push_back({value_of(config, "precision"), "`" + config.stack + "`",
                    value_of(config, "seed"), std::to_string(tau.size()),
                    markdown_cell(init, "%.4g"), markdown_cell(tau_mean, "%.4g"),
                    markdown_cell(tau_std, "%.4g"), markdown_cell(tau_min, "%.4g"),
                    markdown_cell(tau_max, "%.4g"), markdown_cell(tau_mean / init, "%.4g"),
                    markdown_cell(val_loss, "%.4g"), status_of(run)});
  }
  report.markdown =
      concat("Learned temperature τ_h (§7.1) after ", plan.steps,
             " steps: mean and std over all heads of all blocks, against the init √d_k.\n\n",
             markdown_table({"precision", "stack", "seed", "heads", "τ init", "τ mean", "τ std",
                             "τ min", "τ max", "mean / init", "val loss", "status"},
                            rows));
  return report;
}

/// The sweep value with the lowest mean val loss per precision (in first-seen order), into
/// report.values["<precision>/best_<key>"] and a table: precision, best value, its val loss.
std::string optimum_table(
    const std::vector<std::string>& precisions,
    const std::map<std::string, std::map<int64_t, std::vector<double>>>& losses,
    const std::string& key,
    ExperimentReport& report) {
  std::vector<std::vector<std::string>> rows;
  for (const std::string& precision : precisions) {
    double best_loss = kNaN;
    int64_t best = 0;
    if (losses.contains(precision))
      for (const auto& [value, values] : losses.at(precision))
        if (!(mean(values) >= best_loss)) {
          best_loss = mean(values);
          best = value;
        }
    report.values[precision + "/best_" + key] = best > 0 ? double(best) : kNaN;
    rows.push_back(
        {precision, best > 0 ? std::to_string(best) : "-", markdown_cell(best_loss, "%.4g")});
  }
  return markdown_table({"precision", "best " + key, "val loss"}, rows);
}

ExperimentReport report_head_dim(const ExperimentPlan& plan) {
  ExperimentReport report;
  std::vector<std::vector<std::string>> rows;
  // precision -> d_k -> val losses over seeds
  std::map<std::string, std::map<int64_t, std::vector<double>>> losses;
  std::vector<std::string> precisions;
  for (const RunConfig& config : plan.runs) {
    const RunRecord run = read_run(run_dir(plan, config));
    const std::string& precision = value_of(config, "precision");
    const int64_t head_dim = std::stoll(value_of(config, "d_k"));
    const double pre = mean(last_values(run, "logit_std/"));
    const double post = mean(last_values(run, "logit_std_scaled/"));
    const double entropy = mean(last_values(run, "entropy/"));
    const double cast = mean_of_metric(run, "cast_change.e4m3");
    const double val_loss = number(run.summary, "val_loss");
    report.values[config.id + "/logit_std"] = pre;
    report.values[config.id + "/logit_std_scaled"] = post;
    report.values[config.id + "/entropy"] = entropy;
    report.values[config.id + "/cast_change"] = cast;
    report.values[config.id + "/val_loss"] = val_loss;
    if (std::find(precisions.begin(), precisions.end(), precision) == precisions.end())
      precisions.push_back(precision);
    if (std::isfinite(val_loss)) losses[precision][head_dim].push_back(val_loss);
    rows.push_back({precision, std::to_string(head_dim), value_of(config, "heads"),
                    value_of(config, "seed"), markdown_cell(pre, "%.4g"),
                    markdown_cell(post, "%.4g"), markdown_cell(entropy, "%.4g"),
                    markdown_cell(cast, "%.4g"), markdown_cell(val_loss, "%.4g"), status_of(run)});
  }
  std::string notes;
  for (const std::string& note : plan.notes) notes += note + ".\n";
  report.markdown = concat(
      "Head dimension sweep (§7.2) at fixed d_model, ", plan.steps,
      " steps. Logit std before (S·τ) and after (S) the 1/√d_k scale, softmax entropy (nats): "
      "means over heads at the last observed step; cast change: fraction of weights that move "
      "when cast to e4m3, mean over observed steps.\n",
      notes, "\n",
      markdown_table({"precision", "d_k", "heads", "seed", "logit std pre", "logit std post",
                      "entropy", "cast change e4m3", "val loss", "status"},
                     rows),
      "\nOptimum d_k per precision (lowest val loss, mean over seeds):\n\n",
      optimum_table(precisions, losses, "d_k", report));
  return report;
}

/// The ULP-normalised update histogram of all tensors, summed over the observed steps.
UlpHistogram summed_ulp_histogram(const RunRecord& run) {
  UlpHistogram sum;
  for (const nlohmann::json& line : run.details) {
    if (!line.contains("detail") || !line["detail"].contains("ulp_histogram")) continue;
    const nlohmann::json& histogram = line["detail"]["ulp_histogram"];
    const nlohmann::json& all = histogram["tensors"]["all"];
    sum.lowest_octave = histogram["lowest_octave"].get<int>();
    const std::vector<int64_t> counts = all["counts"].get<std::vector<int64_t>>();
    if (sum.counts.size() < counts.size()) sum.counts.resize(counts.size(), 0);
    for (size_t k = 0; k < counts.size(); ++k) sum.counts[k] += counts[k];
    sum.below += all["below"].get<int64_t>();
    sum.above += all["above"].get<int64_t>();
  }
  return sum;
}

ExperimentReport report_ffn_width(const ExperimentPlan& plan) {
  ExperimentReport report;
  std::vector<std::vector<std::string>> rows;
  std::map<std::string, std::map<int64_t, std::vector<double>>> losses;
  std::vector<std::string> precisions;
  for (const RunConfig& config : plan.runs) {
    const RunRecord run = read_run(run_dir(plan, config));
    const std::string& precision = value_of(config, "precision");
    const int64_t factor = std::stoll(value_of(config, "k"));
    const double beta = mean_of_metric(run, "beta");
    const double mass = summed_ulp_histogram(run).mass_above_half();
    const double val_loss = number(run.summary, "val_loss");
    report.values[config.id + "/beta_mean"] = beta;
    report.values[config.id + "/mass_above_half"] = mass;
    report.values[config.id + "/val_loss"] = val_loss;
    if (std::find(precisions.begin(), precisions.end(), precision) == precisions.end())
      precisions.push_back(precision);
    if (std::isfinite(val_loss)) losses[precision][factor].push_back(val_loss);
    rows.push_back({precision, std::to_string(factor), value_of(config, "hidden"),
                    value_of(config, "seed"), markdown_cell(beta, "%.4g"),
                    markdown_cell(mass, "%.4g"), markdown_cell(val_loss, "%.4g"), status_of(run)});
  }
  report.markdown = concat(
      "FFN width sweep (§7.3), hidden = k·d_model, ", plan.steps,
      " steps. β_t: mean over observed steps of the fraction of weights with |Δθ| ≥ ½ ULP_Λw; "
      "mass ≥ ½: share of the ULP-normalised update histogram (all tensors, all observed "
      "steps) at |Δθ|/ULP ≥ 0.5.\n\n",
      markdown_table(
          {"precision", "k", "hidden", "seed", "mean β_t", "mass ≥ ½ ULP", "val loss", "status"},
          rows),
      "\nOptimum k per precision (lowest val loss, mean over seeds):\n\n",
      optimum_table(precisions, losses, "k", report));
  return report;
}

ExperimentReport report_precision_order(const ExperimentPlan& plan) {
  ExperimentReport report;
  // (lr, seed) -> precision -> record
  std::map<std::pair<std::string, std::string>, std::map<std::string, RunRecord>> cells;
  std::vector<std::pair<std::string, std::string>> order;
  std::vector<std::string> precisions;
  for (const RunConfig& config : plan.runs) {
    const std::pair key{value_of(config, "lr"), value_of(config, "seed")};
    if (!cells.contains(key)) order.push_back(key);
    const std::string& precision = value_of(config, "precision");
    if (std::find(precisions.begin(), precisions.end(), precision) == precisions.end())
      precisions.push_back(precision);
    const RunRecord run = read_run(run_dir(plan, config));
    report.values[config.id + "/diverged"] =
        run.finished ? double(status_of(run) == "diverged") : kNaN;
    report.values[config.id + "/val_loss"] = number(run.summary, "val_loss");
    cells[key][precision] = run;
  }
  std::vector<std::string> header{"lr", "seed"};
  for (const std::string& p : precisions) append(header, {p + " status", p + " val loss"});
  header.push_back("exactly one diverged");
  std::vector<std::vector<std::string>> rows;
  int disagreements = 0;
  for (const auto& key : order) {
    std::vector<std::string> row{key.first, key.second};
    int diverged = 0, finished = 0;
    for (const std::string& p : precisions) {
      const RunRecord& run = cells[key][p];
      append(row, {status_of(run), markdown_cell(number(run.summary, "val_loss"), "%.4g")});
      finished += run.finished;
      diverged += status_of(run) == "diverged";
    }
    const bool one = finished == int(precisions.size()) && diverged == 1;
    disagreements += one;
    row.push_back(one ? "yes" : "no");
    rows.push_back(row);
  }
  report.values["disagreements"] = disagreements;
  report.markdown =
      concat("Precision order (§8, prediction 1): ", plan.steps,
             " steps per run; a run is \"diverged\" when its loss is non-finite or explodes.\n\n",
             markdown_table(header, rows), "\n", disagreements,
             " of the (lr, seed) cells have exactly one precision diverging.\n");
  return report;
}

// Steps after the return to P_A at which the loss gap is read, each a mean over 10 steps.
const std::vector<int64_t> kHysteresisOffsets = {0, 10, 25, 50, 100};
constexpr int64_t kGapWindow = 10;

ExperimentReport report_hysteresis(const ExperimentPlan& plan) {
  ExperimentReport report;
  std::vector<std::vector<std::string>> rows;
  for (size_t i = 0; i + 2 < plan.runs.size(); i += 3) {
    const RunConfig& throughout_config = plan.runs[i];
    const RunConfig& swapped_config = plan.runs[i + 1];
    const RunRecord throughout = read_run(run_dir(plan, throughout_config));
    const RunRecord swapped = read_run(run_dir(plan, swapped_config));
    const RunRecord reseeded = read_run(run_dir(plan, plan.runs[i + 2]));
    const std::string seed = value_of(swapped_config, "seed");
    const int64_t swap = std::stoll(value_of(swapped_config, "swap"));
    const int64_t back = std::stoll(value_of(swapped_config, "back"));
    const auto gap_row = [&](const std::string& what, int64_t start) {
      const int64_t end = std::min(start + kGapWindow - 1, plan.steps);
      const double a = mean_loss(throughout, start, end), b = mean_loss(swapped, start, end);
      const double other_seed = mean_loss(reseeded, start, end);
      report.values[concat("s", seed, "/gap@", start)] = b - a;
      report.values[concat("s", seed, "/seed_gap@", start)] = other_seed - a;
      rows.push_back({seed, what, concat(start, "-", end), markdown_cell(a, "%.4g"),
                      markdown_cell(b, "%.4g"), markdown_cell(b - a, "%.4g"),
                      markdown_cell(other_seed - a, "%.4g")});
    };
    gap_row("before the swap", std::max<int64_t>(1, swap - kGapWindow + 1));
    gap_row("end of P_B", back - kGapWindow + 1);
    for (int64_t offset : kHysteresisOffsets)
      if (back + 1 + offset <= plan.steps) gap_row(concat("return + ", offset), back + 1 + offset);
    gap_row("last steps", plan.steps - kGapWindow + 1);
    const double val_a = number(throughout.summary, "val_loss");
    const double val_b = number(swapped.summary, "val_loss");
    report.values[concat("s", seed, "/val_gap")] = val_b - val_a;
    rows.push_back({seed, "final val loss", "-", markdown_cell(val_a, "%.4g"),
                    markdown_cell(val_b, "%.4g"), markdown_cell(val_b - val_a, "%.4g"),
                    markdown_cell(number(reseeded.summary, "val_loss") - val_a, "%.4g")});
  }
  const RunConfig& first = plan.runs.front();
  report.markdown = concat(
      "Precision-stack hysteresis (§8, prediction 2): ", value_of(first, "a"), " throughout vs ",
      value_of(first, "a"), " → ", value_of(first, "b"), " (logged steps ",
      std::stoll(value_of(first, "swap")) + 1, "-", value_of(first, "back"), ") → ",
      value_of(first, "a"), ", same seed and batches; training loss means over ", kGapWindow,
      " steps. Seed gap: the same stack throughout with seed + 1000, minus throughout.\n\n",
      markdown_table({"seed", "when", "steps", "throughout", "swapped", "gap", "seed gap"}, rows));
  return report;
}

// Progress is read over windows: the drop of the mean loss from the previous window (§8,
// prediction 3). About a dozen windows per run, each at least 25 steps to average the batch
// noise of the loss.
int64_t progress_window(int64_t steps) {
  return std::max<int64_t>(25, steps / 12);
}

struct CrossingWindows {
  int64_t window = 0;
  std::vector<int64_t> starts = {};
  std::vector<double> beta = {}, progress = {}, lr = {};
};

CrossingWindows crossing_windows(const RunRecord& run, int64_t steps) {
  CrossingWindows windows{.window = progress_window(steps)};
  const int64_t window = windows.window;
  const KeySeries beta = series(run, "beta"), lr = series(run, "lr");
  const auto window_mean = [](const KeySeries& s, int64_t first, int64_t last) {
    std::vector<double> values;
    for (size_t i = 0; i < s.steps.size(); ++i)
      if (s.steps[i] >= double(first) && s.steps[i] <= double(last) && std::isfinite(s.values[i]))
        values.push_back(s.values[i]);
    return mean(values);
  };
  for (int64_t start = 1 + window; start + window - 1 <= steps; start += window) {
    const int64_t last = start + window - 1;
    windows.starts.push_back(start);
    windows.beta.push_back(window_mean(beta, start, last));
    windows.lr.push_back(window_mean(lr, start, last));
    windows.progress.push_back(mean_loss(run, start - window, start - 1) -
                               mean_loss(run, start, last));
  }
  return windows;
}

ExperimentReport report_crossing(const ExperimentPlan& plan) {
  ExperimentReport report;
  std::string text;
  for (const RunConfig& config : plan.runs) {
    const RunRecord run = read_run(run_dir(plan, config));
    const CrossingWindows windows = crossing_windows(run, plan.steps);
    std::vector<std::vector<std::string>> rows;
    std::vector<double> beta, progress;
    for (size_t i = 0; i < windows.starts.size(); ++i) {
      rows.push_back({concat(windows.starts[i], "-", windows.starts[i] + windows.window - 1),
                      markdown_cell(windows.lr[i], "%.4g"), markdown_cell(windows.beta[i], "%.4g"),
                      markdown_cell(windows.progress[i], "%.4g")});
      if (std::isfinite(windows.beta[i]) && std::isfinite(windows.progress[i])) {
        beta.push_back(windows.beta[i]);
        progress.push_back(windows.progress[i]);
      }
    }
    const double r = beta.size() >= 3 ? pearson(beta, progress) : kNaN;
    const double rho = beta.size() >= 3 ? spearman(beta, progress) : kNaN;
    // Plateau test: the windows with β_t below the median against those above it.
    std::vector<double> low, high;
    const double median = beta.empty() ? kNaN : quantile(beta, 0.5);
    for (size_t i = 0; i < beta.size(); ++i) (beta[i] < median ? low : high).push_back(progress[i]);
    report.values[config.id + "/pearson"] = r;
    report.values[config.id + "/spearman"] = rho;
    report.values[config.id + "/progress_low_beta"] = mean(low);
    report.values[config.id + "/progress_high_beta"] = mean(high);
    text += concat("Run ", config.id, " (`", config.stack, "`): progress vs β_t over ", beta.size(),
                   " windows: Pearson ", markdown_cell(r, "%.3g"), ", Spearman ",
                   markdown_cell(rho, "%.3g"), "; mean progress where β_t is below its median ",
                   markdown_cell(mean(low), "%.3g"), ", above ", markdown_cell(mean(high), "%.3g"),
                   ".\n\n",
                   markdown_table({"steps", "lr", "mean β_t", "progress (loss drop)"}, rows), "\n");
  }
  report.markdown = concat(
      "Boundary-crossing dynamics (§8, prediction 3): windows of ", progress_window(plan.steps),
      " steps; progress = mean loss of the previous window minus this one's.\n\n", text);
  return report;
}

ExperimentReport report_stochastic_rounding(const ExperimentPlan& plan) {
  ExperimentReport report;
  std::vector<std::vector<std::string>> rows;
  for (const RunConfig& config : plan.runs) {
    const RunRecord run = read_run(run_dir(plan, config));
    const double beta = mean_of_metric(run, "beta");
    const double churn = mean_of_metric(run, "churn/w");
    const double val_loss = number(run.summary, "val_loss");
    report.values[config.id + "/beta_mean"] = beta;
    report.values[config.id + "/churn_mean"] = churn;
    report.values[config.id + "/val_loss"] = val_loss;
    rows.push_back({"`" + config.stack + "`", value_of(config, "rounding"),
                    value_of(config, "master"), value_of(config, "seed"),
                    markdown_cell(beta, "%.4g"), markdown_cell(churn, "%.4g"),
                    markdown_cell(val_loss, "%.4g"), status_of(run)});
  }
  report.markdown = concat(
      "Stochastic rounding (§8, prediction 4), ", plan.steps,
      " steps. β_t: fraction of the updated weights (the master where there is one) with "
      "|Δθ| ≥ ½ ULP_Λw; churn: fraction of working weights whose Λw cell changed; means over "
      "observed steps.\n\n",
      markdown_table({"stack", "rounding", "master", "seed", "mean β_t", "mean churn Λw",
                      "val loss", "status"},
                     rows));
  return report;
}

// ---- Figures ----

std::string png(const ExperimentPlan& plan, const std::string& stem) {
  return (fs::path(plan.root) / (stem + ".png")).string();
}

/// One panel of `key` against the step, a line per run that logs it, labelled by run id
/// (plot_curves draws the trainer's own metrics only).
PlotPanel curve_panel(const ExperimentPlan& plan, const std::string& key) {
  PlotPanel panel{.title = key, .x_label = "step", .y_label = key};
  for (const RunConfig& run : plan.runs) {
    const KeySeries s = series(read_run(run_dir(plan, run)), key);
    if (!s.steps.empty())
      panel.series.push_back({.title = run.id, .x = s.steps, .y = s.values, .style = "lines"});
  }
  return panel;
}

/// Panels of metrics against the step, as `stem`.png.
std::string plot_runs(const ExperimentPlan& plan,
                      const std::vector<std::string>& metrics,
                      const std::string& stem) {
  std::vector<PlotPanel> panels;
  for (const std::string& metric : metrics) {
    PlotPanel panel = curve_panel(plan, metric);
    if (!panel.series.empty()) panels.push_back(std::move(panel));
  }
  if (panels.empty()) return {};
  plot_panels(panels, plan.name, png(plan, stem));
  return png(plan, stem);
}

/// One line per precision through (x, the run's value of `key`) over the plan's runs.
PlotPanel sweep_panel(const ExperimentPlan& plan,
                      const ExperimentReport& report,
                      const std::string& axis,
                      const std::string& key,
                      const std::string& title) {
  PlotPanel panel{.title = title, .x_label = axis, .y_label = title};
  std::map<std::string, PlotSeries> lines;
  std::vector<std::string> order;
  for (const RunConfig& run : plan.runs) {
    const std::string label = concat(value_of(run, "precision"), " s", value_of(run, "seed"));
    if (!lines.contains(label)) {
      order.push_back(label);
      lines[label] = PlotSeries{.title = label, .style = "lines"};
    }
    lines[label].x.push_back(std::stod(value_of(run, axis)));
    lines[label].y.push_back(report.values.at(run.id + "/" + key));
  }
  for (const std::string& label : order) panel.series.push_back(lines[label]);
  return panel;
}

// ---- The forward-stability paper's experiments (§4) on the Tiny-ViT ----

/// The Tiny-ViT of the stability runs on Fashion-MNIST: 2 heads, every second step observed by
/// the stability instrument.
std::vector<std::string> vit_flags(const Size& size, int64_t dim, int64_t seed) {
  return {"--dim",
          std::to_string(dim),
          "--depth",
          std::to_string(size.layers),
          "--heads",
          "2",
          "--batch",
          std::to_string(size.batch),
          "--steps",
          std::to_string(size.steps),
          "--seed",
          std::to_string(seed),
          "--eval-batches",
          "4",
          "--log-every",
          "100",
          "--diagnostics",
          "stability",
          "--diagnostics-every",
          "2"};
}

/// Exp-1 and Exp-2: every precision x width x seed. (fp32 runs have r_block = 0: their shadow
/// forward is the run's own; Exp-1 leaves those points out, as the paper's log-log fit must.)
ExperimentPlan plan_stability_runs(const ExperimentOptions& o, const std::string& precisions) {
  Size size = size_of(o, 240, 32, 1, precisions);
  if (o.batch == 0) size.batch = 32;
  ExperimentPlan plan{.trainer = "vit", .steps = size.steps};
  const std::vector<int64_t> dims =
      o.dim > 0 ? std::vector<int64_t>{o.dim} : std::vector<int64_t>{32, 48};
  for (const std::string& p : size.precisions)
    for (int64_t dim : dims)
      for (int64_t seed = 0; seed < size.seeds; ++seed)
        plan.runs.push_back(make_run(
            concat(p, "-d", dim, "-s", seed), precision_stack(p),
            {{"precision", p}, {"dim", std::to_string(dim)}, {"seed", std::to_string(seed)}},
            vit_flags(size, dim, seed)));
  return plan;
}

/// Exp-3: fp16 runs with and without the LayerNorm-ε policy (ρ* = 0.6, cap 1e-2, every 5
/// steps), matched seeds and so matched data order.
ExperimentPlan plan_stability_epsilon(const ExperimentOptions& o) {
  Size size = size_of(o, 240, 32, 1, "fp16", 2);
  if (o.batch == 0) size.batch = 32;
  ExperimentPlan plan{.trainer = "vit", .steps = size.steps};
  for (const std::string& p : size.precisions)
    for (int64_t seed = 0; seed < size.seeds; ++seed)
      for (const bool policy : {false, true}) {
        std::vector<std::string> flags = vit_flags(size, size.dim, seed);
        if (policy) append(flags, {"--ln-eps-policy", "rho=0.6,cap=1e-2,every=5"});
        plan.runs.push_back(make_run(concat(p, policy ? "-policy" : "-control", "-s", seed),
                                     precision_stack(p),
                                     {{"precision", p},
                                      {"role", policy ? "intervention" : "control"},
                                      {"seed", std::to_string(seed)}},
                                     flags));
      }
  return plan;
}

/// The analyses of tools/analyze.h over the plan's finished runs.
std::vector<std::string> finished_dirs(const ExperimentPlan& plan, const std::string& role = {}) {
  std::vector<std::string> dirs;
  for (const RunConfig& run : plan.runs)
    if ((role.empty() || value_of(run, "role") == role) &&
        fs::exists(run_dir(plan, run) / "summary.json"))
      dirs.push_back(run_dir(plan, run).string());
  return dirs;
}

ExperimentReport report_stability(const ExperimentPlan& plan) {
  ExperimentReport report;
  if (plan.name == "stability-predictor") {
    const Exp1Options options{.points = "block"};
    const Exp1Result result = analyze_exp1(read_runs(finished_dirs(plan)), options);
    report.markdown = exp1_markdown(result, options);
    for (const Exp1Row& row : result.rows) {
      report.values[row.proxy + "/pearson_log"] = row.pearson_log;
      report.values[row.proxy + "/spearman"] = row.spearman;
    }
  } else if (plan.name == "stability-lead-lag") {
    const Exp2Result result = analyze_exp2(read_runs(finished_dirs(plan)), Exp2Options{});
    report.markdown = exp2_markdown(result, Exp2Options{});
    for (const Exp2Row& row : result.rows)
      if (row.target == "fwd error") report.values[row.run + "/best_lag"] = row.lead_lag.best_lag;
  } else {
    const Exp3Result result =
        analyze_exp3(read_runs(finished_dirs(plan, "control")),
                     read_runs(finished_dirs(plan, "intervention")), Exp3Options{});
    report.markdown = exp3_markdown(result, Exp3Options{});
  }
  return report;
}

}  // namespace

ExperimentPlan plan_experiment(const std::string& name, const ExperimentOptions& options) {
  ExperimentPlan plan;
  if (name == "temperature")
    plan = plan_temperature(options);
  else if (name == "head-dim")
    plan = plan_head_dim(options);
  else if (name == "ffn-width")
    plan = plan_ffn_width(options);
  else if (name == "precision-order")
    plan = plan_precision_order(options);
  else if (name == "hysteresis")
    plan = plan_hysteresis(options);
  else if (name == "crossing")
    plan = plan_crossing(options);
  else if (name == "stochastic-rounding")
    plan = plan_stochastic_rounding(options);
  else if (name == "stability-predictor")
    plan = plan_stability_runs(options, "fp32,bf16,fp16");
  else if (name == "stability-lead-lag")
    plan = plan_stability_runs(options, "bf16,fp16");
  else if (name == "stability-epsilon")
    plan = plan_stability_epsilon(options);
  else {
    std::string known;
    for (const std::string& n : kExperimentNames) known += (known.empty() ? "" : ", ") + n;
    throw Error(concat("[experiment] unknown experiment \"", name, "\" (known: ", known, ")"));
  }
  plan.name = name;
  plan.root = options.out.empty() ? "runs/experiment-" + name : options.out;
  return plan;
}

ExperimentReport report_experiment(const ExperimentPlan& plan) {
  if (plan.name == "temperature") return report_temperature(plan);
  if (plan.name == "head-dim") return report_head_dim(plan);
  if (plan.name == "ffn-width") return report_ffn_width(plan);
  if (plan.name == "precision-order") return report_precision_order(plan);
  if (plan.name == "hysteresis") return report_hysteresis(plan);
  if (plan.name == "crossing") return report_crossing(plan);
  if (plan.name.starts_with("stability-")) return report_stability(plan);
  return report_stochastic_rounding(plan);
}

std::vector<std::string> plot_experiment(const ExperimentPlan& plan) {
  std::vector<std::string> figures;
  const auto keep = [&](const std::string& path) {
    if (!path.empty()) figures.push_back(path);
  };
  const ExperimentReport report = report_experiment(plan);
  if (plan.name == "temperature") {
    // τ_h trajectories (§7.1): the mean and spread over heads per precision.
    PlotPanel mean_panel{.title = "mean τ_h over heads", .x_label = "step", .y_label = "τ"};
    PlotPanel spread_panel{.title = "std of τ_h over heads", .x_label = "step", .y_label = "τ"};
    for (const RunConfig& run : plan.runs) {
      const SpreadSeries s = spread_series(read_run(run_dir(plan, run)), "temperature/");
      mean_panel.series.push_back({.title = run.id, .x = s.steps, .y = s.means, .style = "lines"});
      spread_panel.series.push_back(
          {.title = run.id, .x = s.steps, .y = s.deviations, .style = "lines"});
    }
    plot_panels({mean_panel, spread_panel}, "learned temperature", png(plan, "temperature"));
    keep(png(plan, "temperature"));
    keep(plot_runs(plan, {"loss"}, "loss"));
  } else if (plan.name == "head-dim") {
    plot_panels({sweep_panel(plan, report, "d_k", "val_loss", "val loss"),
                 sweep_panel(plan, report, "d_k", "entropy", "softmax entropy"),
                 sweep_panel(plan, report, "d_k", "logit_std", "logit std pre-scale"),
                 sweep_panel(plan, report, "d_k", "cast_change", "cast change e4m3")},
                "head dimension sweep", png(plan, "head-dim"));
    keep(png(plan, "head-dim"));
  } else if (plan.name == "ffn-width") {
    // The ULP-normalised update histograms of each precision's runs (§7.3).
    PlotPanel histogram_panel{.title = "|Δθ|/ULP (all steps)",
                              .x_label = "log2 |Δθ|/ULP",
                              .y_label = "fraction",
                              .log_y = true};
    for (const RunConfig& run : plan.runs) {
      const UlpHistogram h = summed_ulp_histogram(read_run(run_dir(plan, run)));
      PlotSeries s{.title = run.id, .style = "lines"};
      for (size_t k = 0; k < h.counts.size(); ++k) {
        s.x.push_back(double(int(k) + h.lowest_octave));
        s.y.push_back(h.total() > 0 ? double(h.counts[k]) / double(h.total()) : kNaN);
      }
      histogram_panel.series.push_back(s);
    }
    plot_panels({sweep_panel(plan, report, "k", "val_loss", "val loss"),
                 sweep_panel(plan, report, "k", "beta_mean", "mean β_t"),
                 sweep_panel(plan, report, "k", "mass_above_half", "mass ≥ ½ ULP")},
                "FFN width sweep", png(plan, "ffn-width"));
    keep(png(plan, "ffn-width"));
    plot_panels({histogram_panel}, "ULP-normalised updates", png(plan, "ulp-histograms"));
    keep(png(plan, "ulp-histograms"));
  } else if (plan.name == "precision-order") {
    keep(plot_runs(plan, {"loss"}, "loss"));
  } else if (plan.name == "hysteresis") {
    keep(plot_runs(plan, {"loss"}, "loss"));
  } else if (plan.name == "stability-predictor") {
    plot_exp1(analyze_exp1(read_runs(finished_dirs(plan)), Exp1Options{.points = "block"}),
              plan.root);
    keep((fs::path(plan.root) / "exp1.png").string());
  } else if (plan.name == "stability-lead-lag") {
    const Exp2Result result = analyze_exp2(read_runs(finished_dirs(plan)), Exp2Options{});
    plot_exp2(result, plan.root);
    for (const Exp2Row& row : result.rows)
      if (row.target == "fwd error")
        keep((fs::path(plan.root) / ("exp2_" + fs::path(row.run).filename().string() + ".png"))
                 .string());
  } else if (plan.name == "stability-epsilon") {
    plot_exp3(analyze_exp3(read_runs(finished_dirs(plan, "control")),
                           read_runs(finished_dirs(plan, "intervention")), Exp3Options{}),
              plan.root);
    keep((fs::path(plan.root) / "exp3_loss_tails.png").string());
  } else if (plan.name == "crossing") {
    keep(plot_runs(plan, {"loss", "beta"}, "loss-beta"));
    PlotPanel scatter{.title = "progress vs β_t", .x_label = "mean β_t", .y_label = "loss drop"};
    for (const RunConfig& run : plan.runs) {
      const CrossingWindows w = crossing_windows(read_run(run_dir(plan, run)), plan.steps);
      scatter.series.push_back({.title = run.id, .x = w.beta, .y = w.progress});
    }
    plot_panels({scatter}, "boundary crossings and progress", png(plan, "progress-vs-beta"));
    keep(png(plan, "progress-vs-beta"));
  } else {
    keep(plot_runs(plan, {"beta", "churn/w", "loss"}, "beta-loss"));
  }
  return figures;
}

int run_experiment(const ExperimentPlan& plan,
                   const std::string& trainer_path,
                   int jobs,
                   int threads) {
  // A finished run is skipped, so one finished under another size would enter the table as
  // this one's: its command.txt must be the planned command.
  for (const RunConfig& run : plan.runs) {
    const fs::path dir = fs::path(plan.root) / run.id;
    std::ifstream command(dir / "command.txt");
    std::string line;
    if (!fs::exists(dir / "summary.json") || !std::getline(command, line)) continue;
    const std::string planned = shell_line(run_command(run, trainer_path, dir.string()));
    LATTICE_CHECK(line.starts_with(planned + " --threads"), "[experiment] ", dir.string(),
                  " ran another command (its command.txt) than this plan's: ", planned,
                  "; give a fresh --out or remove the folder");
  }
  SweepSpec spec{.file = "experiment " + plan.name, .trainer = trainer_path, .out = plan.root};
  std::set<std::string> flags;
  for (const RunConfig& run : plan.runs)
    for (const std::string& argument : run.flags)
      if (argument.starts_with("--")) flags.insert(argument.substr(2));
  for (const std::string& flag : flags) spec.flags.emplace_back(flag, "");
  check_trainer_flags(spec, trainer_path);
  const Expansion expansion{.runs = plan.runs};
  return run_sweep(
      spec, expansion,
      SweepOptions{
          .jobs = jobs, .out = plan.root, .trainer_path = trainer_path, .cores = jobs * threads});
}

}  // namespace lattice::tools
