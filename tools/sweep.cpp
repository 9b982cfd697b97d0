// `lattice sweep` (see sweep.h): the sweep file, its expansion under the conditional rules and
// the runner that starts one trainer process per configuration.
#include "tools/sweep.h"

#include <toml++/toml.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "core/error.h"
#include "tensor/precision_stack.h"
#include "tools/process.h"

namespace lattice::tools {

namespace fs = std::filesystem;

const std::vector<std::string> kStackAxes = {
    "stack",        "scale",          "block",           "rule",          "scale_round",
    "tensor_scale", "zero",           "gemm.sr",         "gemm.hadamard", "gemm.max",
    "gemm.alpha",   "gemm.step_grad", "gemm.scale_grad", "gemm.ts_grad"};

namespace {

// Flags the sweep sets itself for every run.
const std::set<std::string> kReservedFlags = {"out", "threads", "resume"};

bool is_stack_axis(const std::string& name) {
  return std::find(kStackAxes.begin(), kStackAxes.end(), name) != kStackAxes.end();
}

std::string flag_name(const std::string& axis) {
  std::string flag = "--" + axis;
  std::replace(flag.begin(), flag.end(), '_', '-');
  return flag;
}

/// "[sweep] FILE:LINE: KEY: message" (LINE where toml++ knows it).
[[noreturn]] void fail(const std::string& file,
                       const toml::node* node,
                       const std::string& key,
                       const std::string& message) {
  std::string where = file;
  if (node && node->source().begin.line > 0) where += concat(":", node->source().begin.line);
  throw Error(concat("[sweep] ", where, ": ", key.empty() ? "" : key + ": ", message));
}

std::string type_text(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a float";
    case toml::node_type::boolean:
      return "a boolean";
    default:
      return "a date or time";
  }
}

std::string number_text(double value) {
  char text[64];
  const auto [end, error] = std::to_chars(text, text + sizeof text, value);
  return error == std::errc() ? std::string(text, end) : std::to_string(value);
}

/// A scalar as the text a command line takes.
std::string scalar_text(const std::string& file, const toml::node& node, const std::string& key) {
  if (auto s = node.as_string()) return s->get();
  if (auto i = node.as_integer()) return std::to_string(i->get());
  if (auto f = node.as_floating_point()) return number_text(f->get());
  if (auto b = node.as_boolean()) return b->get() ? "true" : "false";
  fail(file, &node, key, concat("expected a string, number or boolean, got ", type_text(node)));
}

std::string string_value(const std::string& file, const toml::node& node, const std::string& key) {
  if (auto s = node.as_string()) return s->get();
  fail(file, &node, key, concat("expected a string, got ", type_text(node)));
}

/// An axis' values: an array of scalars, or one scalar.
std::vector<std::string> axis_values(const std::string& file,
                                     const toml::node& node,
                                     const std::string& key) {
  std::vector<std::string> values;
  if (auto array = node.as_array()) {
    if (array->empty()) fail(file, &node, key, "an axis needs at least one value");
    for (const toml::node& element : *array) values.push_back(scalar_text(file, element, key));
  } else {
    values.push_back(scalar_text(file, node, key));
  }
  return values;
}

void check_axis_name(const std::string& file,
                     const toml::node& node,
                     const std::string& key,
                     const std::string& name) {
  if (name.starts_with("gemm.") && !is_stack_axis(name))
    fail(file, &node, key,
         "unknown GEMM key (known: gemm.sr, gemm.hadamard, gemm.max, gemm.alpha, gemm.step_grad, "
         "gemm.scale_grad, gemm.ts_grad)");
  if (kReservedFlags.contains(name))
    fail(file, &node, key,
         concat("the sweep sets ", flag_name(name),
                " itself (use the `stack` key or axis for stacks, `out` for the output root)"));
}

/// Axes of a table, dotted keys (gemm.sr = [...]) flattened into their full names.
void read_axes(const std::string& file,
               const toml::table& table,
               const std::string& prefix,
               const std::string& key_prefix,
               std::vector<Axis>& axes) {
  for (const auto& [key, node] : table) {
    const std::string name = prefix + std::string(key.str());
    const std::string key_path = key_prefix + std::string(key.str());
    if (const toml::table* sub = node.as_table()) {
      read_axes(file, *sub, name + ".", key_path + ".", axes);
      continue;
    }
    check_axis_name(file, node, key_path, name);
    axes.push_back({name, axis_values(file, node, key_path)});
  }
}

/// toml++ keeps a table's keys sorted; axes go back to the order the file writes them in.
void sort_by_position(std::vector<Axis>& axes, const toml::table& table) {
  const auto position = [&](const Axis& axis) {
    const toml::node* node = table.at_path(axis.name).node();
    if (!node) return std::make_pair(uint32_t(0), uint32_t(0));
    return std::make_pair(node->source().begin.line, node->source().begin.column);
  };
  std::stable_sort(axes.begin(), axes.end(),
                   [&](const Axis& a, const Axis& b) { return position(a) < position(b); });
}

const toml::table& table_of(const std::string& file,
                            const toml::node& node,
                            const std::string& key) {
  if (const toml::table* t = node.as_table()) return *t;
  fail(file, &node, key, concat("expected a table, got ", type_text(node)));
}

}  // namespace

SweepSpec parse_sweep_text(const std::string& text, const std::string& file) {
  toml::table root;
  try {
    root = toml::parse(text, file);
  } catch (const toml::parse_error& e) {
    throw Error(concat("[sweep] ", file, ":", e.source().begin.line, ":", e.source().begin.column,
                       ": ", e.description()));
  }
  SweepSpec spec;
  spec.file = file;
  bool has_trainer = false;
  for (const auto& [key_name, node] : root) {
    const std::string key(key_name.str());
    if (key == "trainer") {
      spec.trainer = string_value(file, node, key);
      has_trainer = true;
    } else if (key == "dataset") {
      spec.dataset = string_value(file, node, key);
    } else if (key == "out") {
      spec.out = string_value(file, node, key);
    } else if (key == "stack") {
      spec.stack = string_value(file, node, key);
    } else if (key == "jobs") {
      const auto jobs = node.as_integer();
      if (!jobs || jobs->get() < 1)
        fail(file, &node, key, concat("expected a positive integer, got ", type_text(node)));
      spec.jobs = int(jobs->get());
    } else if (key == "flags") {
      const toml::table& flags = table_of(file, node, key);
      for (const auto& [flag, value] : flags) {
        const std::string name(flag.str());
        check_axis_name(file, value, "flags." + name, name);
        if (is_stack_axis(name))
          fail(file, &value, "flags." + name,
               "a stack knob, not a trainer flag: put it in [grid] (one value fixes it)");
        spec.flags.emplace_back(name, scalar_text(file, value, "flags." + name));
      }
      std::stable_sort(spec.flags.begin(), spec.flags.end(), [&](const auto& a, const auto& b) {
        const auto line = [&](const std::string& name) {
          const toml::source_position p = flags.get(name)->source().begin;
          return std::make_pair(p.line, p.column);
        };
        return line(a.first) < line(b.first);
      });
    } else if (key == "grid") {
      read_axes(file, table_of(file, node, key), "", "grid.", spec.grid);
      sort_by_position(spec.grid, table_of(file, node, key));
    } else if (key == "baselines" || key == "skip") {
      const toml::array* array = node.as_array();
      if (!array || !array->is_array_of_tables())
        fail(file, &node, key,
             concat("expected an array of tables ([[", key, "]]), got ", type_text(node)));
      for (size_t i = 0; i < array->size(); ++i) {
        const toml::table& table = *(*array)[i].as_table();
        const std::string where = concat(key, "[", i, "]");
        if (key == "skip") {
          SkipRule rule;
          read_axes(file, table, "", where + ".", rule.match);
          if (rule.match.empty())
            fail(file, &(*array)[i], where, "a [[skip]] table matches nothing");
          spec.skips.push_back(std::move(rule));
          continue;
        }
        Baseline baseline;
        toml::table axes;
        for (const auto& [field, value] : table) {
          const std::string name(field.str());
          if (name == "name")
            baseline.name = string_value(file, value, where + ".name");
          else if (name == "stack")
            baseline.stack = string_value(file, value, where + ".stack");
          else
            axes.insert(field, value);
        }
        if (baseline.stack.empty())
          fail(file, &(*array)[i], where, "a baseline needs `stack` (e.g. stack = \"bf16\")");
        if (baseline.name.empty()) baseline.name = baseline.stack;
        read_axes(file, axes, "", where + ".", baseline.axes);
        sort_by_position(baseline.axes, table);
        spec.baselines.push_back(std::move(baseline));
      }
    } else {
      fail(file, &node, key,
           "unknown key (known: trainer, dataset, out, stack, jobs, flags, grid, baselines, skip)");
    }
  }
  if (!has_trainer)
    fail(file, nullptr, "trainer", "missing (a trainer name such as \"mnist\", or a path)");
  if (spec.dataset.empty()) spec.dataset = fs::path(spec.trainer).filename().string();
  if (spec.out.empty()) spec.out = concat("runs/sweep-", fs::path(file).stem().string());
  for (const Axis& axis : spec.grid)
    for (const auto& [flag, value] : spec.flags)
      if (flag == axis.name)
        fail(file, nullptr, "grid." + axis.name, "also set in [flags]; keep one");
  for (const SkipRule& rule : spec.skips)
    for (const Axis& axis : rule.match)
      if (std::none_of(spec.grid.begin(), spec.grid.end(),
                       [&](const Axis& a) { return a.name == axis.name; }))
        fail(file, nullptr, "skip." + axis.name, "not an axis of [grid]");
  return spec;
}

SweepSpec parse_sweep_file(const std::string& path) {
  std::ifstream in(path);
  LATTICE_CHECK(in.good(), "[sweep] ", path, ": cannot read the sweep file");
  std::stringstream text;
  text << in.rdbuf();
  return parse_sweep_text(text.str(), path);
}

// ---- Expansion ----

namespace {

using Point = std::vector<std::pair<std::string, std::string>>;  // (axis, value as written)

std::vector<Quantizer*> block_scaled_operands(PrecisionStack& s) {
  std::vector<Quantizer*> operands;
  for (Quantizer* q : {&s.gemm.input, &s.gemm.weight, &s.gemm.output_grad, &s.gemm.saved_input,
                       &s.gemm.saved_weight})
    if (q->scaling) operands.push_back(q);
  return operands;
}

bool has_tensor_scale(const Quantizer& q) {
  return q.scaling && (q.scaling->rule == ScaleRule::nvfp4 ||
                       (q.scaling->rule == ScaleRule::encode && q.scaling->tensor_scale));
}

bool soft_max(MaxApprox m) {
  return m == MaxApprox::softsoftmax || m == MaxApprox::hardsoftmax;
}

std::string scale_round_text(RoundingMode mode) {
  switch (mode) {
    case RoundingMode::nearest_even:
      return "rne";
    case RoundingMode::toward_positive:
      return "rup";
    case RoundingMode::stochastic:
      return "sr";
    default:
      return rounding_name(Rounding{.mode = mode});
  }
}

/// FNV-1a: a hash that is the same on every build and machine, for run ids.
uint64_t fnv1a(const std::string& text) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : text) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

std::string sanitized(const std::string& text) {
  std::string out;
  for (char c : text) out += std::isalnum((unsigned char)c) || c == '.' || c == '-' ? c : '_';
  return out;
}

struct Composed {
  PrecisionStack stack;
  bool scaled = false;
};

/// The stack of one grid point: the `stack` value (or the base), the quantizer options on every
/// block-scaled GEMM operand, then the recipe keys.
Composed compose_stack(const std::string& base, const Point& point) {
  std::string stack_text = base;
  for (const auto& [axis, value] : point)
    if (axis == "stack") stack_text = value;
  Composed c{parse_precision_stack(stack_text)};
  std::vector<Quantizer*> operands = block_scaled_operands(c.stack);
  c.scaled = !operands.empty();
  if (!c.scaled) return c;  // quantizer options and recipe keys do not apply

  std::string options;
  std::optional<bool> tensor_scale;
  bool block_given = false;
  std::optional<Format> scale_format;
  for (const auto& [axis, value] : point) {
    if (axis == "scale") {
      options += ":scale=" + value;
      scale_format = parse_format(value);
    } else if (axis == "block") {
      options += ":b" + value;
      block_given = true;
    } else if (axis == "rule" || axis == "scale_round" || axis == "zero") {
      options += ":" + axis + "=" + value;
    } else if (axis == "tensor_scale") {
      LATTICE_CHECK(value == "true" || value == "false", "tensor_scale takes true or false, got \"",
                    value, "\"");
      tensor_scale = value == "true";
    }
  }
  // Table 3: block 32 with E8M0 scales and 16 with any other scale format, unless an axis sets it.
  if (scale_format && !block_given) options += *scale_format == ue8m0 ? ":b32" : ":b16";
  for (Quantizer* q : operands) {
    Quantizer changed = parse_quantizer_spec(to_string(*q) + options);
    if (tensor_scale) changed.scaling->tensor_scale = *tensor_scale;
    validate(changed);
    *q = changed;
  }
  std::string spec = to_string(c.stack);
  for (const auto& [axis, value] : point)
    if (axis.starts_with("gemm.")) spec += "," + axis + "=" + value;
  c.stack = parse_precision_stack(spec);
  return c;
}

/// The conditional rules of Table 10 (and §4.4-4.7 of algorithms.md). Knobs that cannot act
/// are reset to their defaults, so configurations that differ only in them become one run;
/// a combination the study does not sweep makes the point skipped (returns false).
///  1. Scale-quantizer gradient ("Scaling Quant.", footnote 1) acts through the max
///     approximation: with max = STE the scale is a constant of x, so scale_grad -> STE.
///  2. Tensor-scale gradient (footnote 2) needs tensor scaling: without it ts_grad -> ignore.
///  3. With a soft max approximation the study sweeps the tensor-scale gradient only over
///     {ignore, STE}: soft max with ts_grad = absmax is skipped.
///  4. alpha is the sharpness of the soft max approximations only: otherwise alpha -> default.
bool apply_conditional_rules(PrecisionStack& stack) {
  GemmRecipe& r = stack.gemm.recipe;
  const GemmRecipe defaults;
  if (r.max_approx == MaxApprox::ste) r.scale_gradient = ScaleGradient::ste;
  const bool tensor_scaled = std::ranges::any_of(block_scaled_operands(stack),
                                                 [](Quantizer* q) { return has_tensor_scale(*q); });
  if (!tensor_scaled) r.tensor_scale_gradient = TensorScaleGradient::ignore;
  if (soft_max(r.max_approx) && r.tensor_scale_gradient == TensorScaleGradient::absmax)
    return false;
  if (!soft_max(r.max_approx)) r.alpha = defaults.alpha;
  return true;
}

/// The value an axis took in the run; "" where it does not apply.
std::string effective_value(const std::string& axis,
                            const std::string& written,
                            PrecisionStack& stack,
                            bool scaled) {
  if (!is_stack_axis(axis) || axis == "stack") return written;
  if (!scaled) return "";
  const BlockScaling& s = *block_scaled_operands(stack).front()->scaling;
  const GemmRecipe& r = stack.gemm.recipe;
  if (axis == "scale") return format_name(s.scale_format);
  if (axis == "block") return std::to_string(s.block_size);
  if (axis == "rule") return scale_rule_name(s.rule);
  if (axis == "scale_round") return scale_round_text(s.scale_rounding);
  if (axis == "zero") return zero_scale_name(s.zero_scale);
  if (axis == "tensor_scale")
    return has_tensor_scale(*block_scaled_operands(stack).front()) ? "true" : "false";
  if (axis == "gemm.sr") return to_string(r.stochastic_rounding);
  if (axis == "gemm.hadamard") return to_string(r.hadamard);
  if (axis == "gemm.max") return to_string(r.max_approx);
  if (axis == "gemm.alpha") return soft_max(r.max_approx) ? number_text(r.alpha) : "";
  if (axis == "gemm.step_grad") return to_string(r.step_gradient);
  if (axis == "gemm.scale_grad") return to_string(r.scale_gradient);
  if (axis == "gemm.ts_grad")
    return has_tensor_scale(*block_scaled_operands(stack).front())
               ? to_string(r.tensor_scale_gradient)
               : "";
  return written;
}

std::string slug_token(const std::string& axis, const std::string& value) {
  if (axis == "stack") return value;
  if (axis == "tensor_scale") return value == "true" ? "ts" : "nots";
  if (axis == "block") return "b" + value;
  const std::string name = axis.starts_with("gemm.") ? axis.substr(5) : axis;
  return name + "-" + value;
}

bool matches(const SkipRule& rule,
             const Point& point,
             const std::map<std::string, std::string>& values) {
  for (const Axis& axis : rule.match) {
    const auto written = std::find_if(point.begin(), point.end(),
                                      [&](const auto& p) { return p.first == axis.name; });
    const auto effective = values.find(axis.name);
    if (written == point.end() || effective == values.end() || effective->second.empty())
      return false;
    const bool hit = std::ranges::any_of(axis.values, [&](const std::string& v) {
      return v == written->second || v == effective->second;
    });
    if (!hit) return false;
  }
  return true;
}

/// Every combination of the axes' values; refuses more than kMaxSweepPoints before building
/// any (the product of a few long axes reaches billions, which no run list can hold).
std::vector<Point> cartesian(const std::vector<Axis>& axes,
                             const std::string& file,
                             const std::string& what) {
  uint64_t count = 1;  // saturates just above the limit
  std::string sizes;
  for (const Axis& axis : axes) {
    count = std::min<uint64_t>(count * axis.values.size(), kMaxSweepPoints + 1);
    sizes += concat(sizes.empty() ? "" : " x ", axis.values.size());
  }
  LATTICE_CHECK(count <= kMaxSweepPoints, "[sweep] ", file, ": ", what, " has ", sizes,
                " points, more than the limit of ", kMaxSweepPoints,
                "; split it into several files");
  std::vector<Point> points{{}};
  for (const Axis& axis : axes) {
    std::vector<Point> next;
    for (const Point& p : points)
      for (const std::string& v : axis.values) {
        Point q = p;
        q.emplace_back(axis.name, v);
        next.push_back(std::move(q));
      }
    points = std::move(next);
  }
  return points;
}

}  // namespace

Expansion expand_sweep(const SweepSpec& spec) {
  Expansion e;
  for (const Axis& axis : spec.grid) e.axes.push_back(axis.name);
  for (const Baseline& b : spec.baselines)
    for (const Axis& axis : b.axes)
      if (std::find(e.axes.begin(), e.axes.end(), axis.name) == e.axes.end())
        e.axes.push_back(axis.name);
  std::set<std::string> ids;
  const std::string trainer_name = fs::path(spec.trainer).filename().string();

  const auto add = [&](const std::string& role, const Baseline* baseline, const std::string& base,
                       const Point& point, const std::vector<SkipRule>& skips) {
    ++e.grid_points;
    Composed c;
    try {
      c = compose_stack(base, point);
    } catch (const Error& error) {
      std::string where;
      for (const auto& [axis, value] : point)
        where += concat(where.empty() ? "" : ", ", axis, "=", value);
      throw Error(concat("[sweep] ", spec.file, ": ",
                         role == "baseline" ? "baseline " + baseline->name : "grid point",
                         where.empty() ? "" : " (" + where + ")", ": ", error.what()));
    }
    if (!apply_conditional_rules(c.stack)) {
      ++e.skipped_by_rules;
      return;
    }
    RunConfig run{.role = role, .baseline = baseline ? baseline->name : ""};
    for (const auto& [axis, value] : point)
      run.values[axis] = effective_value(axis, value, c.stack, c.scaled);
    if (std::ranges::any_of(
            skips, [&](const SkipRule& rule) { return matches(rule, point, run.values); })) {
      ++e.skipped_by_rules;
      return;
    }
    run.stack = to_string(c.stack);
    for (const auto& [flag, value] : spec.flags) {
      run.flags.push_back(flag_name(flag));
      run.flags.push_back(value);
    }
    for (const auto& [axis, value] : point) {
      if (is_stack_axis(axis)) continue;
      run.flags.push_back(flag_name(axis));
      run.flags.push_back(value);
    }
    std::string key = trainer_name + "\n" + run.stack;
    for (const std::string& f : run.flags) key += "\n" + f;
    std::string slug = role == "baseline" ? concat("baseline-", sanitized(baseline->name)) : "";
    for (const auto& [axis, value] : point) {
      const std::string& v = run.values[axis];
      if (v.empty() || (role == "baseline" && is_stack_axis(axis))) continue;
      slug += concat(slug.empty() ? "" : "_", sanitized(slug_token(axis, v)));
    }
    if (slug.size() > 90) slug.resize(90);
    char hash[16];
    const uint64_t h = fnv1a(key);
    std::snprintf(hash, sizeof hash, "%08x", unsigned((h ^ (h >> 32)) & 0xffffffffu));
    run.id = (slug.empty() ? std::string("run") : slug) + "-" + hash;
    if (!ids.insert(hash).second) {
      ++e.duplicates;
      return;
    }
    e.runs.push_back(std::move(run));
  };

  // Each stack knob's values are checked on their own against a block-scaled stack, so a
  // misspelt value is an error even where the grid's stacks would leave the knob unused.
  const auto check_values = [&](const std::vector<Axis>& axes, const std::string& prefix) {
    for (const Axis& axis : axes)
      for (const std::string& value : axis.values) {
        if (!is_stack_axis(axis.name)) continue;
        try {
          compose_stack("pure-fp4-e8m0", {{axis.name, value}});
        } catch (const Error& error) {
          throw Error(concat("[sweep] ", spec.file, ": ", prefix, axis.name, ": \"", value,
                             "\": ", error.what()));
        }
      }
  };
  check_values(spec.grid, "grid.");
  for (size_t i = 0; i < spec.baselines.size(); ++i)
    check_values(spec.baselines[i].axes, concat("baselines[", i, "]."));

  for (const Baseline& b : spec.baselines)
    for (const Point& point : cartesian(b.axes, spec.file, "baseline " + b.name))
      add("baseline", &b, b.stack, point, {});
  for (const Point& point : cartesian(spec.grid, spec.file, "[grid]"))
    add("grid", nullptr, spec.stack, point, spec.skips);
  return e;
}

// ---- Running ----

std::string resolve_trainer(const std::string& trainer, const std::string& tool_dir) {
  if (trainer.find('/') != std::string::npos) {
    LATTICE_CHECK(fs::exists(trainer), "[sweep] trainer ", trainer, ": no such file");
    return fs::absolute(trainer).string();
  }
  const fs::path next_to_tool = fs::path(tool_dir) / trainer;
  LATTICE_CHECK(fs::exists(next_to_tool), "[sweep] trainer \"", trainer, "\": not found next to ",
                "the lattice binary (", next_to_tool.string(), "); give a path instead");
  return next_to_tool.string();
}

void check_trainer_flags(const SweepSpec& spec, const std::string& trainer_path) {
  const fs::path help_log =
      fs::temp_directory_path() / concat("lattice-sweep-help-", ::getpid(), ".txt");
  const ExitStatus status = run_logged({trainer_path, "--help"}, help_log.string());
  std::ifstream in(help_log);
  std::stringstream text;
  text << in.rdbuf();
  fs::remove(help_log);
  LATTICE_CHECK(status.ok(), "[sweep] ", trainer_path, " --help: ", status.text());
  const std::string help = text.str();
  const auto check = [&](const std::string& key, const std::string& name) {
    const std::string flag = flag_name(name);
    // The flag as a whole word: --data must not be taken for (or hidden by) --dataset.
    bool found = false;
    for (size_t at = help.find(flag); at != std::string::npos && !found;
         at = help.find(flag, at + 1)) {
      const size_t end = at + flag.size();
      found = end == help.size() ||
              !(std::isalnum((unsigned char)help[end]) || help[end] == '-' || help[end] == '_');
    }
    LATTICE_CHECK(found, "[sweep] ", spec.file, ": ", key, ": the trainer ",
                  fs::path(trainer_path).filename().string(), " has no flag ", flag);
  };
  for (const auto& [flag, value] : spec.flags) check("flags." + flag, flag);
  for (const Axis& axis : spec.grid)
    if (!is_stack_axis(axis.name)) check("grid." + axis.name, axis.name);
  for (size_t i = 0; i < spec.baselines.size(); ++i)
    for (const Axis& axis : spec.baselines[i].axes)
      if (!is_stack_axis(axis.name)) check(concat("baselines[", i, "].", axis.name), axis.name);
}

namespace {

/// A run is done when its summary.json parses and records a status: an empty or cut-off file
/// (a trainer that died writing it, or a full disk) means the run has to run again.
bool summary_complete(const fs::path& path) {
  std::ifstream in(path);
  if (!in) return false;
  const nlohmann::json summary = nlohmann::json::parse(in, nullptr, false);
  return !summary.is_discarded() && summary.is_object() && summary.contains("status") &&
         summary["status"].is_string();
}

}  // namespace

std::string output_root(const SweepSpec& spec, const SweepOptions& options) {
  return options.out.empty() ? spec.out : options.out;
}

std::vector<std::string> run_command(const RunConfig& run,
                                     const std::string& trainer_path,
                                     const std::string& run_dir) {
  std::vector<std::string> argv{trainer_path};
  argv.insert(argv.end(), run.flags.begin(), run.flags.end());
  argv.insert(argv.end(), {"--stack", run.stack, "--out", run_dir});
  return argv;
}

int run_sweep(const SweepSpec& spec, const Expansion& expansion, const SweepOptions& options) {
  const fs::path root = output_root(spec, options);
  const int jobs = std::max(1, options.jobs > 0 ? options.jobs : spec.jobs);
  const int cores =
      options.cores > 0 ? options.cores : int(std::max(1u, std::thread::hardware_concurrency()));
  const int threads = std::max(1, cores / jobs);
  std::vector<const RunConfig*> pending;
  for (const RunConfig& run : expansion.runs)
    if (!summary_complete(root / run.id / "summary.json")) pending.push_back(&run);
  std::fprintf(stderr,
               "sweep %s: %zu runs, %zu finished before, %zu to run (-j %d, --threads %d)\n",
               spec.file.c_str(), expansion.runs.size(), expansion.runs.size() - pending.size(),
               pending.size(), jobs, threads);
  fs::create_directories(root);

  std::map<pid_t, const RunConfig*> active;
  size_t next = 0, done = 0;
  int failed = 0;
  const auto record_failure = [&](const RunConfig& run, const std::string& why) {
    const fs::path dir = root / run.id;
    std::ofstream(dir / "error.txt") << why << "\n" << file_tail((dir / "train.log").string(), 20);
    ++failed;
    std::fprintf(stderr, "[%zu/%zu] %s: FAILED (%s), see %s\n", ++done, pending.size(),
                 run.id.c_str(), why.c_str(), (dir / "error.txt").c_str());
  };
  while (next < pending.size() || !active.empty()) {
    while (next < pending.size() && int(active.size()) < jobs) {
      const RunConfig& run = *pending[next++];
      const fs::path dir = root / run.id;
      fs::create_directories(dir);
      // A run interrupted before its summary starts over; the trainer truncates its metrics.
      fs::remove(dir / "error.txt");
      fs::remove(dir / "summary.json.partial");
      std::vector<std::string> argv = run_command(run, options.trainer_path, dir.string());
      argv.insert(argv.end(), {"--threads", std::to_string(threads)});
      std::ofstream(dir / "command.txt") << shell_line(argv) << "\n";
      try {
        active[spawn_logged(argv, (dir / "train.log").string())] = &run;
      } catch (const Error& e) {
        record_failure(run, e.what());
      }
    }
    if (active.empty()) continue;
    const ExitStatus status = wait_any();
    const auto it = active.find(status.pid);
    if (it == active.end()) continue;
    const RunConfig& run = *it->second;
    active.erase(it);
    const fs::path summary_path = root / run.id / "summary.json";
    if (!status.ok() || !summary_complete(summary_path)) {
      record_failure(
          run, status.ok() ? "exit status 0 but no summary.json with a status" : status.text());
      continue;
    }
    std::string outcome = "finished";
    try {
      std::ifstream in(summary_path);
      const nlohmann::json summary = nlohmann::json::parse(in);
      outcome = summary.value("status", "finished");
      const nlohmann::json& val =
          summary.contains("val_loss") ? summary["val_loss"] : nlohmann::json();
      outcome += val.is_number() ? concat(", val loss ", val.get<double>()) : ", val loss NaN";
      if (summary.contains("seconds"))
        outcome += concat(" (", int(summary["seconds"].get<double>()), " s)");
    } catch (const std::exception& e) {
      outcome = concat("summary.json unreadable: ", e.what());
    }
    std::fprintf(stderr, "[%zu/%zu] %s: %s\n", ++done, pending.size(), run.id.c_str(),
                 outcome.c_str());
  }
  return failed;
}

}  // namespace lattice::tools
