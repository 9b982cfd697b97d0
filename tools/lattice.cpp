// lattice: command-line inspector for number lattices. `formats` tabulates the named formats
// and block quantizers, `cast` rounds one value onto a lattice and shows its code and
// neighbours, `quantize` quantize-dequantizes float32 values from stdin to stdout, `stacks`
// lists the named precision stacks with their canonical specs and complexity points, `sweep`
// runs a sweep file (or writes it as a Slurm job array) and writes its reports, `plot` draws
// curves of run folders, `analyze exp1|exp2|exp3` runs the forward-stability paper's analyses
// on run folders, `experiment NAME` runs a fistful-of-errors experiment and tabulates it.
// Every failure is one line "lattice: <message>" on stderr and exit status 2.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/block_scaling.h"
#include "core/error.h"
#include "core/format.h"
#include "core/philox.h"
#include "core/rounding.h"
#include "core/scalar/bits.h"
#include "core/version.h"
#include "tensor/design_space.h"
#include "tensor/precision_stack.h"
#include "tensor/quantizer.h"
#include "tools/analyze.h"
#include "tools/experiment.h"
#include "tools/plot.h"
#include "tools/process.h"
#include "tools/slurm.h"
#include "tools/sweep.h"
#include "tools/sweep_report.h"

namespace lattice {
namespace {

constexpr int kUsageError = 2;

// ---- Text in and out ----

std::string_view trim(std::string_view s) {
  constexpr std::string_view kSpace = " \t\r\n\v\f";
  const size_t first = s.find_first_not_of(kSpace);
  if (first == std::string_view::npos) return {};
  return s.substr(first, s.find_last_not_of(kSpace) - first + 1);
}

/// One fp32 value: decimal, hex-float (0x1.8p-3), inf/infinity or nan, optionally signed, with
/// surrounding whitespace. Decimals are rounded to the nearest fp32 (strtof is correctly
/// rounded; values past the fp32 range become +-inf or +-0 as that rounding says).
std::optional<float> parse_float(std::string_view text) {
  const std::string s(trim(text));
  if (s.empty()) return std::nullopt;
  char* end = nullptr;
  const float value = std::strtof(s.c_str(), &end);
  if (end != s.c_str() + s.size()) return std::nullopt;  // trailing text or an embedded NUL
  return value;
}

constexpr const char* kFloatSpellings =
    "expected a decimal such as -1.5e-3, a hex-float such as 0x1.8p-3, inf or nan";

/// A decimal integer in [low, high].
template <typename Int>
Int parse_integer(const std::string& option,
                  const std::string& text,
                  Int low = std::numeric_limits<Int>::min(),
                  Int high = std::numeric_limits<Int>::max()) {
  const std::string_view s = trim(text);
  Int value{};
  const bool plus = s.size() > 1 && s[0] == '+' && std::isdigit((unsigned char)s[1]);
  const char* first = s.data() + (plus ? 1 : 0);
  const auto [end, ec] = std::from_chars(first, s.data() + s.size(), value);
  const bool valid = !s.empty() && ec == std::errc() && end == s.data() + s.size();
  LATTICE_CHECK(valid && value >= low && value <= high, option, ": \"", text,
                "\" is not an integer in [", +low, ", ", +high, "]");
  return value;
}

/// fp32 text that reads back to the same bits (sign of zero included); NaN prints as "nan".
std::string float_text(double x) {
  if (std::isnan(x)) return "nan";
  char text[48];
  std::snprintf(text, sizeof text, "%.9g", x);
  return text;
}

std::string hex_float_text(double x) {
  if (std::isnan(x)) return "nan";
  char text[48];
  std::snprintf(text, sizeof text, "%a", x);
  return text;
}

/// Text for a table cell: %.9g, and where that is rounded (scientific notation) the exact
/// value beside it, as 2^k for powers of two and as a hex-float otherwise.
std::string exact_text(double x) {
  std::string text = float_text(x);
  if (text.find('e') == std::string::npos) return text;
  int exponent = 0;
  const double fraction = std::frexp(x, &exponent);
  if (fraction == 0.5) return text + " (2^" + std::to_string(exponent - 1) + ")";
  return text + " (" + hex_float_text(x) + ")";
}

/// Runs parse(); a lattice::Error it throws gets the option's name in front.
template <typename Parse>
auto for_option(const std::string& option, const Parse& parse) {
  try {
    return parse();
  } catch (const Error& e) {
    throw Error(concat(option, ": ", e.what()));
  }
}

Format parse_element_format(const std::string& option, const std::string& name) {
  bool block_quantizer = false;
  try {
    block_quantizer = parse_quantizer(name).scaling.has_value();
  } catch (const Error&) {
  }
  LATTICE_CHECK(!block_quantizer, option, ": \"", name,
                "\" is a block quantizer, not an element format (try `lattice quantize --format ",
                name, "`)");
  return for_option(option, [&] { return parse_format(name); });
}

// ---- Tables ----

/// A Markdown table with aligned columns; numeric columns are right-aligned.
class Table {
 public:
  Table(std::vector<std::string> header, std::vector<bool> right_aligned)
      : header_(std::move(header)), right_(std::move(right_aligned)) {}
  void add(std::vector<std::string> row) {
    rows_.push_back(std::move(row));
  }
  void print(std::FILE* out) const {
    std::vector<size_t> width(header_.size());
    for (size_t c = 0; c < header_.size(); ++c) {
      width[c] = std::max<size_t>(header_[c].size(), 3);
      for (const auto& row : rows_) width[c] = std::max(width[c], row[c].size());
    }
    print_row(out, header_, width);
    std::string rule = "|";
    for (size_t c = 0; c < width.size(); ++c)
      rule += (right_[c] ? " " + std::string(width[c] - 1, '-') + ":"
                         : " :" + std::string(width[c] - 1, '-')) +
              " |";
    std::fprintf(out, "%s\n", rule.c_str());
    for (const auto& row : rows_) print_row(out, row, width);
  }

 private:
  void print_row(std::FILE* out,
                 const std::vector<std::string>& row,
                 const std::vector<size_t>& width) const {
    std::string line = "|";
    for (size_t c = 0; c < row.size(); ++c) {
      const std::string pad(width[c] - row[c].size(), ' ');
      line += " " + (right_[c] ? pad + row[c] : row[c] + pad) + " |";
    }
    std::fprintf(out, "%s\n", line.c_str());
  }

  std::vector<std::string> header_;
  std::vector<bool> right_;
  std::vector<std::vector<std::string>> rows_;
};

std::string specials_text(const Format& f) {
  if (f.has_inf()) return "inf, nan";
  return f.has_nan() ? "nan" : "-";
}

/// Named stacks, or one spec (NAME[,key=value...]) expanded, with complexity points.
int run_stacks(const std::string& spec) {
  Table stacks({"stack", "cp", "spec", "what"}, {false, true, false, false});
  const auto add = [&](const std::string& name, const std::string& text, const std::string& what) {
    const PrecisionStack stack = parse_precision_stack(text);
    stacks.add({name, exact_text(complexity_points(stack)), to_string(stack), what});
  };
  if (!spec.empty()) {
    add(spec, spec, "");
  } else {
    for (const NamedStack& named : named_stacks()) add(named.name, named.spec, named.description);
  }
  stacks.print(stdout);
  std::printf(
      "\ncp: design-space complexity points of the stack's knobs (loss scaling and StableSPAM,\n"
      "trainer options, add 0.5 each). A spec NAME,key=value,... overrides a named stack.\n");
  return 0;
}

int run_formats() {
  Table formats({"format", "bits", "bias", "specials", "max finite", "min normal", "min subnormal",
                 "epsilon", "finite values"},
                {false, true, true, false, true, true, true, true, true});
  for (const auto& [name, f] : named_formats()) {
    formats.add({name, std::to_string(f.bits()),
                 f.kind == FormatKind::integer ? "-" : std::to_string(f.bias), specials_text(f),
                 exact_text(f.max_finite()), exact_text(f.min_normal()),
                 exact_text(f.min_subnormal()), exact_text(f.epsilon()),
                 std::to_string(finite_value_count(f))});
  }
  formats.print(stdout);
  std::printf(
      "\nNames also take the common spellings (fp8_e4m3, E4M3FN, bfloat16, half, ...) and the\n"
      "generic forms [u]e<E>m<M>[fn|ieee][b<bias>] (all finite unless fn or ieee) and int<N>.\n"
      "ue* formats are unsigned; integer formats are symmetric sign-magnitude.\n\n");

  Table quantizers({"quantizer", "element", "block", "scale", "rule", "tensor scale"},
                   {false, false, true, false, false, false});
  for (const auto& [name, q] : named_quantizers()) {
    const BlockScaling& s = *q.scaling;
    const bool tensor_scale = s.rule == ScaleRule::nvfp4 || s.tensor_scale;
    quantizers.add({name, format_name(q.element), std::to_string(s.block_size),
                    format_name(s.scale_format), scale_rule_name(s.rule),
                    tensor_scale ? "fp32" : "-"});
  }
  quantizers.print(stdout);
  std::printf(
      "\nBlocks run along the last axis. `lattice quantize --format FORMAT --block N --scale "
      "FORMAT\n--rule mx|nvfp4|encode` builds others from any element format.\n");
  return 0;
}

// ---- cast ----

/// The code split into its fields, most significant first: "0 1111 110".
std::string bit_fields(const Format& f, uint32_t code) {
  std::vector<int> widths;
  if (f.is_signed) widths.push_back(1);
  if (f.kind == FormatKind::integer) {
    widths.push_back(f.mantissa_bits);
  } else {
    widths.push_back(f.exponent_bits);
    if (f.mantissa_bits > 0) widths.push_back(f.mantissa_bits);
  }
  std::string text;
  int bit = f.bits();
  for (int width : widths) {
    if (!text.empty()) text += ' ';
    for (int k = 0; k < width; ++k) text += ((code >> --bit) & 1u) ? '1' : '0';
  }
  return text;
}

std::string field_names(const Format& f) {
  const std::string sign = f.is_signed ? "sign " : "";
  if (f.kind == FormatKind::integer) return sign + "magnitude";
  return sign + (f.mantissa_bits > 0 ? "exponent mantissa" : "exponent");
}

std::string code_text(const Format& f, float value) {
  uint32_t code = 0;
  try {
    code = encode(f, value);
  } catch (const Error& e) {
    const std::string_view message = e.what();
    const size_t op_end = message.starts_with('[') ? message.find("] ") : std::string_view::npos;
    return concat("none (", op_end == std::string_view::npos ? message : message.substr(op_end + 2),
                  ")");
  }
  char hex[16];
  std::snprintf(hex, sizeof hex, "0x%0*x", (f.bits() + 3) / 4, code);
  return concat(hex, " = ", bit_fields(f, code), " (", field_names(f), ")");
}

struct CastOptions {
  std::string value;
  std::string format;
  std::string round = "rne";
  std::string overflow = "standard";
  bool flush_subnormals = false;
  std::string seed = "0";
};

int run_cast(const CastOptions& o) {
  const std::optional<float> input = parse_float(o.value);
  LATTICE_CHECK(input, "VALUE: \"", trim(o.value), "\" is not a number (", kFloatSpellings, ")");
  const Format f = parse_element_format("--to", o.format);
  Rounding rounding = for_option("--round", [&] { return parse_rounding(o.round); });
  rounding.overflow = for_option("--overflow", [&] { return parse_overflow(o.overflow); });
  if (o.flush_subnormals) rounding.subnormals = Subnormals::flush;
  const RandomStream random{parse_integer<uint64_t>("--seed", o.seed)};
  const Quantizer q{f, rounding, std::nullopt};
  validate(q);

  // Element 0 of an elementwise quantize draws random.word(0).
  const float x = *input;
  float y = 0.0f;
  const int64_t shape[] = {1};
  quantize(q, std::span(&x, 1), std::span(&y, 1), shape, random);

  std::string how = concat(format_name(f), ", ", rounding_name(rounding));
  if (rounding.mode == RoundingMode::stochastic) {
    char word[16];
    std::snprintf(word, sizeof word, "0x%08x", random.word(0));
    how += concat(" (random word ", word, " from seed ", random.seed, ")");
  }
  how += ", overflow " + overflow_name(rounding.overflow);
  if (o.flush_subnormals) how += ", subnormals flushed";
  std::printf("input:     %s (%s)\n", float_text(x).c_str(), hex_float_text(x).c_str());
  std::printf("format:    %s\n", how.c_str());
  std::printf("result:    %s (%s)\n", float_text(y).c_str(), hex_float_text(y).c_str());
  std::printf("bits:      %s\n", code_text(f, y).c_str());
  std::printf("ulp:       %s\n", float_text(ulp(f, y)).c_str());
  std::printf("next_down: %s\n", float_text(next_down(f, y)).c_str());
  std::printf("next_up:   %s\n", float_text(next_up(f, y)).c_str());
  return 0;
}

// ---- quantize ----

struct QuantizeOptions {
  std::string format;
  std::string round, overflow, block, scale, rule, scale_round, zero_scale, shape, axis;
  bool flush_subnormals = false, tensor_scale = false, binary = false;
  std::string seed = "0";
};

/// The quantizer the options describe: a named quantizer or element format, with the
/// rounding and block-scaling options laid over it. `given(option)` says whether it was set.
template <typename Given>
Quantizer build_quantizer(const QuantizeOptions& o, const Given& given) {
  Quantizer q = for_option("--format", [&] { return parse_quantizer(o.format); });
  if (given("--round")) {
    const Rounding r = for_option("--round", [&] { return parse_rounding(o.round); });
    q.rounding.mode = r.mode;
    q.rounding.random_bits = r.random_bits;
  }
  if (given("--overflow"))
    q.rounding.overflow = for_option("--overflow", [&] { return parse_overflow(o.overflow); });
  if (o.flush_subnormals) q.rounding.subnormals = Subnormals::flush;

  if (!q.scaling && (given("--block") || given("--scale") || given("--rule")))
    q.scaling = BlockScaling{};
  for (const char* option : {"--scale-round", "--tensor-scale", "--zero-scale", "--axis"})
    LATTICE_CHECK(!given(option) || q.scaling, option, " applies to block scaling: add --block N ",
                  "or use a block quantizer (", o.format, " is elementwise)");
  if (!q.scaling) return q;
  BlockScaling& s = *q.scaling;
  if (given("--block")) s.block_size = parse_integer<int>("--block", o.block, 1);
  if (given("--scale")) s.scale_format = parse_element_format("--scale", o.scale);
  if (given("--rule")) s.rule = for_option("--rule", [&] { return parse_scale_rule(o.rule); });
  if (given("--scale-round")) {
    const Rounding r = for_option("--scale-round", [&] { return parse_rounding(o.scale_round); });
    LATTICE_CHECK(r.mode != RoundingMode::stochastic || r.random_bits == 32,
                  "--scale-round: block scales take sr (32 random bits), not ", o.scale_round);
    s.scale_rounding = r.mode;
  }
  if (o.tensor_scale) s.tensor_scale = true;
  if (given("--zero-scale"))
    s.zero_scale = for_option("--zero-scale", [&] { return parse_zero_scale(o.zero_scale); });
  if (given("--axis")) s.axis = parse_integer<int>("--axis", o.axis);
  return q;
}

std::vector<int64_t> parse_shape(const std::string& text) {
  std::vector<int64_t> shape;
  int64_t count = 1;
  size_t start = 0;
  while (true) {
    const size_t comma = text.find(',', start);
    const std::string dim = text.substr(start, comma - start);
    LATTICE_CHECK(!trim(dim).empty(), "--shape: \"", text,
                  "\" is not a list of dimensions such as 4,32");
    const int64_t d = parse_integer<int64_t>("--shape", dim, 0, int64_t(1) << 40);
    LATTICE_CHECK(d == 0 || count <= (int64_t(1) << 40) / d, "--shape: ", text,
                  " holds too many elements");
    count *= d;
    shape.push_back(d);
    if (comma == std::string::npos) return shape;
    start = comma + 1;
  }
}

std::vector<float> read_binary(std::FILE* in) {
  std::vector<unsigned char> bytes;
  unsigned char buffer[1 << 16];
  size_t got = 0;
  while ((got = std::fread(buffer, 1, sizeof buffer, in)) > 0)
    bytes.insert(bytes.end(), buffer, buffer + got);
  LATTICE_CHECK(!std::ferror(in), "stdin: read error");
  LATTICE_CHECK(bytes.size() % 4 == 0, "stdin: ", bytes.size(),
                " bytes is not a whole number of float32 values (4 bytes each)");
  std::vector<float> values(bytes.size() / 4);
  for (size_t i = 0; i < values.size(); ++i) {
    const unsigned char* b = &bytes[4 * i];
    values[i] = float_from_bits(uint32_t(b[0]) | uint32_t(b[1]) << 8 | uint32_t(b[2]) << 16 |
                                uint32_t(b[3]) << 24);
  }
  return values;
}

/// One value per line; blank lines and surrounding whitespace are ignored.
std::vector<float> read_text(std::istream& in) {
  std::vector<float> values;
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    if (trim(line).empty()) continue;
    const std::optional<float> value = parse_float(line);
    LATTICE_CHECK(value, "stdin line ", number, ": \"", trim(line), "\" is not a number (",
                  kFloatSpellings, ")");
    values.push_back(*value);
  }
  LATTICE_CHECK(!in.bad(), "stdin: read error");
  return values;
}

void write_binary(std::span<const float> values, std::FILE* out) {
  std::vector<unsigned char> bytes(values.size() * 4);
  for (size_t i = 0; i < values.size(); ++i) {
    const uint32_t bits = float_bits(values[i]);
    for (int k = 0; k < 4; ++k) bytes[4 * i + size_t(k)] = uint8_t(bits >> (8 * k));
  }
  std::fwrite(bytes.data(), 1, bytes.size(), out);
}

void write_text(std::span<const float> values, std::FILE* out) {
  for (float v : values) {
    const std::string text = float_text(v);
    std::fputs(text.c_str(), out);
    std::fputc('\n', out);
  }
}

template <typename Given>
int run_quantize(const QuantizeOptions& o, const Given& given) {
  const Quantizer q = build_quantizer(o, given);
  validate(q);
  const RandomStream random{parse_integer<uint64_t>("--seed", o.seed)};
  std::optional<std::vector<int64_t>> shape;
  if (given("--shape")) {
    shape = parse_shape(o.shape);
    if (q.scaling) block_layout(*q.scaling, *shape);  // checks the axis before reading stdin
  }

  const std::vector<float> x = o.binary ? read_binary(stdin) : read_text(std::cin);
  if (shape) {
    int64_t count = 1;
    for (int64_t d : *shape) count *= d;
    LATTICE_CHECK(count == int64_t(x.size()), "--shape ", o.shape, " holds ", count,
                  " values, but stdin has ", x.size());
  } else {
    shape = std::vector<int64_t>{int64_t(x.size())};
  }
  std::vector<float> y(x.size());
  if (!x.empty()) quantize(q, x, y, *shape, random);
  if (o.binary)
    write_binary(y, stdout);
  else
    write_text(y, stdout);
  LATTICE_CHECK(std::fflush(stdout) == 0 && !std::ferror(stdout), "stdout: write error");
  return 0;
}

// ---- sweep and plot ----

struct SweepCommand {
  std::string file, out;
  int jobs = 0;
  bool dry_run = false, report_only = false, slurm = false;
  tools::SlurmOptions slurm_options;
};

int run_sweep_command(const SweepCommand& o) {
  const tools::SweepSpec spec = tools::parse_sweep_file(o.file);
  const tools::Expansion expansion = tools::expand_sweep(spec);
  tools::SweepOptions options{.jobs = o.jobs, .out = o.out};
  const std::string root = tools::output_root(spec, options);
  if (!o.report_only) {
    options.trainer_path = tools::resolve_trainer(spec.trainer, tools::executable_dir());
    tools::check_trainer_flags(spec, options.trainer_path);
  }
  std::fprintf(
      stderr, "%s: %lld grid points, %lld left out by rules, %lld duplicates: %zu runs in %s\n",
      o.file.c_str(), (long long)expansion.grid_points, (long long)expansion.skipped_by_rules,
      (long long)expansion.duplicates, expansion.runs.size(), root.c_str());
  if (o.dry_run) {
    for (const tools::RunConfig& run : expansion.runs)
      std::printf("%s\n", tools::shell_line(
                              tools::run_command(run, options.trainer_path,
                                                 (std::filesystem::path(root) / run.id).string()))
                              .c_str());
    return 0;
  }
  if (o.slurm) {
    const std::string script = tools::write_slurm_script(spec, expansion, options, o.slurm_options);
    std::fprintf(
        stderr,
        "wrote %s: submit it with `sbatch %s`, then collect the results with "
        "`lattice sweep %s --report-only --out %s`\n",
        script.c_str(), tools::shell_line({script}).c_str(), tools::shell_line({o.file}).c_str(),
        tools::shell_line({std::filesystem::absolute(root).lexically_normal().string()}).c_str());
    return 0;
  }
  const int failed = o.report_only ? 0 : tools::run_sweep(spec, expansion, options);
  tools::write_reports(spec, expansion, root);
  return failed > 0 ? 1 : 0;
}

struct PlotCommand {
  std::vector<std::string> dirs;
  std::string out = "curves.png", metric = "loss", x = "step", title, labels;
  bool ulp_histogram = false;
  int64_t step = 0;  // the histogram's step; 0: each run's last observed one
};

int run_plot_command(const PlotCommand& o) {
  std::vector<tools::PlotRun> runs = tools::label_runs(o.dirs);
  if (!o.labels.empty()) {
    std::vector<std::string> labels;
    for (size_t start = 0;;) {
      const size_t comma = o.labels.find(',', start);
      labels.push_back(o.labels.substr(start, comma - start));
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
    LATTICE_CHECK(labels.size() == runs.size(), "--labels: ", labels.size(), " labels for ",
                  runs.size(), " run folders");
    for (size_t i = 0; i < runs.size(); ++i) runs[i].label = labels[i];
  }
  if (o.ulp_histogram) {
    std::vector<tools::UlpHistogram> histograms;
    std::printf("| run | step | mass of |Δθ|/ULP ≥ ½ |\n|---|--:|--:|\n");
    for (const tools::PlotRun& run : runs) {
      histograms.push_back(tools::read_ulp_histogram(run.dir, o.step));
      std::printf("| %s | %lld | %.4f |\n", run.label.c_str(), (long long)histograms.back().step,
                  histograms.back().mass_above_half());
    }
    tools::plot_ulp_histograms(runs, histograms, o.out, {});
    std::fprintf(stderr, "wrote %s\n", o.out.c_str());
    return 0;
  }
  tools::CurvesRequest request{
      .runs = runs, .x = o.x, .title = o.title, .out = o.out, .require_logged = true};
  request.metrics.clear();
  for (size_t start = 0;;) {
    const size_t comma = o.metric.find(',', start);
    request.metrics.push_back(o.metric.substr(start, comma - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  std::printf("%s", tools::summaries_markdown(runs).c_str());
  tools::plot_curves(request);
  std::fprintf(stderr, "wrote %s\n", o.out.c_str());
  return 0;
}

struct AnalyzeCommand {
  std::vector<std::string> dirs, control, intervention;
  std::string out = "analysis";
  tools::Exp1Options exp1;
  tools::Exp2Options exp2;
  tools::Exp3Options exp3;
};

/// Prints the experiment's Markdown table and writes it to OUT/<experiment>.md; whether
/// gnuplot is there to draw its figures.
bool write_table(const std::string& experiment,
                 const std::string& markdown,
                 const std::string& out) {
  std::printf("%s", markdown.c_str());
  std::filesystem::create_directories(out);
  const std::string table = (std::filesystem::path(out) / (experiment + ".md")).string();
  std::ofstream file(table);
  LATTICE_CHECK(file.good(), "[analyze] cannot write ", table);
  file << markdown;
  std::fprintf(stderr, "wrote %s\n", table.c_str());
  if (tools::gnuplot_available()) return true;
  std::fprintf(stderr, "gnuplot not installed: no figures\n");
  return false;
}

int run_analyze_command(const std::string& experiment, const AnalyzeCommand& o) {
  if (experiment == "exp1") {
    const auto result = tools::analyze_exp1(tools::read_runs(o.dirs), o.exp1);
    if (write_table(experiment, tools::exp1_markdown(result, o.exp1), o.out))
      tools::plot_exp1(result, o.out);
  } else if (experiment == "exp2") {
    const auto result = tools::analyze_exp2(tools::read_runs(o.dirs), o.exp2);
    if (write_table(experiment, tools::exp2_markdown(result, o.exp2), o.out))
      tools::plot_exp2(result, o.out);
  } else {
    const auto result =
        tools::analyze_exp3(tools::read_runs(o.control), tools::read_runs(o.intervention), o.exp3);
    if (write_table(experiment, tools::exp3_markdown(result, o.exp3), o.out))
      tools::plot_exp3(result, o.out);
  }
  return 0;
}

// ---- experiment ----

struct ExperimentCommand {
  std::string name;
  tools::ExperimentOptions options;
  int jobs = 1;
  // The default models gain nothing from a second thread, and OpenMP threads that share a
  // busy core spin at their barriers: one thread per run unless told otherwise.
  int threads = 1;
  bool dry_run = false, report_only = false;
};

int run_experiment_command(const ExperimentCommand& o) {
  const tools::ExperimentPlan plan = tools::plan_experiment(o.name, o.options);
  for (const std::string& note : plan.notes) std::fprintf(stderr, "%s\n", note.c_str());
  const std::string trainer = o.options.trainer.empty() ? plan.trainer : o.options.trainer;
  const std::string trainer_path =
      o.report_only ? trainer : tools::resolve_trainer(trainer, tools::executable_dir());
  if (o.dry_run) {
    for (const tools::RunConfig& run : plan.runs)
      std::printf("%s\n",
                  tools::shell_line(
                      tools::run_command(run, trainer_path,
                                         (std::filesystem::path(plan.root) / run.id).string()))
                      .c_str());
    return 0;
  }
  const int failed =
      o.report_only ? 0 : tools::run_experiment(plan, trainer_path, o.jobs, o.threads);
  if (write_table(plan.name, tools::report_experiment(plan).markdown, plan.root))
    for (const std::string& figure : tools::plot_experiment(plan))
      std::fprintf(stderr, "wrote %s\n", figure.c_str());
  return failed > 0 ? 1 : 0;
}

// ---- Command line ----

constexpr const char* kRoundingHelp =
    "rounding mode: rne, rna, rtz, rup, rdn, sr (32 random bits) or sr<N> (default rne)";
constexpr const char* kOverflowHelp =
    "overflow policy: standard (the format's own: inf, NaN or saturation), saturate, inf, nan";
constexpr const char* kSeedHelp = "Philox seed for stochastic rounding (default 0)";

std::string known_formats() {
  std::string names;
  for (const auto& named : named_formats())
    names += (names.empty() ? "" : ", ") + std::string(named.name);
  return names;
}

std::string known_quantizers() {
  std::string names;
  for (const auto& named : named_quantizers())
    names += (names.empty() ? "" : ", ") + std::string(named.name);
  return names;
}

/// A negative number that does not start with a digit ("-inf", "-nan", "-.5") would read as
/// a short option; a leading space makes CLI11 take it as a value (parse_float trims it).
std::vector<std::string> protect_negative_numbers(std::vector<std::string> args) {
  for (std::string& arg : args)
    if (arg.size() > 1 && arg[0] == '-' && arg[1] != '-' && !std::isdigit((unsigned char)arg[1]) &&
        parse_float(arg))
      arg = " " + arg;
  return args;
}

/// Adds a string option with its value's name in the help text.
CLI::Option* add_text_option(CLI::App* command,
                             const std::string& name,
                             std::string& value,
                             const std::string& type,
                             const std::string& help) {
  return command->add_option(name, value, help)->type_name(type);
}

int run(int argc, char** argv) {
  CLI::App app{
      "lattice: inspect number lattices (formats), round one value (cast), quantize float32 "
      "streams (quantize), list precision stacks (stacks), run sweeps (sweep), plot runs "
      "(plot), analyze forward-stability runs (analyze) and run the fistful-of-errors "
      "experiments (experiment).",
      "lattice"};
  app.set_version_flag("--version",
                       concat("lattice ", version(), " (git commit ", git_commit(), ")"));
  app.require_subcommand(0, 1);
  app.footer("Run `lattice COMMAND --help` for a command's options.");

  CLI::App* formats = app.add_subcommand(
      "formats", "Table of the named formats and block quantizers with their ranges.");

  CastOptions c;
  CLI::App* cast = app.add_subcommand(
      "cast", "Round one value onto a lattice; print it, its code, ulp and neighbours.");
  cast->footer("Example: lattice cast 464 --to e4m3   (-> 448, bits 0x7e)");
  add_text_option(cast, "VALUE", c.value, "VALUE",
                  "value to round, read as fp32: decimal (-1.5e-3), hex-float (0x1.8p-3), inf "
                  "or nan")
      ->required();
  add_text_option(cast, "--to", c.format, "FORMAT",
                  "element format: " + known_formats() +
                      ", or generic [u]e<E>m<M>[fn|ieee][b<bias>] and int<N>")
      ->required();
  add_text_option(cast, "--round", c.round, "MODE", kRoundingHelp);
  add_text_option(cast, "--overflow", c.overflow, "POLICY", kOverflowHelp);
  cast->add_flag("--flush-subnormals", c.flush_subnormals,
                 "results below the smallest normal become zero");
  add_text_option(cast, "--seed", c.seed, "S",
                  "Philox seed; stochastic rounding uses word 0 of its stream (default 0)");

  QuantizeOptions q;
  CLI::App* quantize =
      app.add_subcommand("quantize", "Quantize-dequantize float32 values from stdin to stdout.");
  quantize->footer(
      "Text input holds one value per line (decimal, hex-float, inf or nan; blank lines and\n"
      "surrounding whitespace are ignored); text output prints each value with %.9g, which\n"
      "reads back to the same fp32. --binary reads and writes raw little-endian float32.\n"
      "Example: printf '1.3\\n-3\\n' | lattice quantize --format mxfp4");
  add_text_option(quantize, "--format", q.format, "FORMAT",
                  "block quantizer (" + known_quantizers() + ") or element format (" +
                      known_formats() + ", ...)")
      ->required();
  add_text_option(quantize, "--round", q.round, "MODE", std::string("element ") + kRoundingHelp);
  add_text_option(quantize, "--overflow", q.overflow, "POLICY", kOverflowHelp);
  quantize->add_flag("--flush-subnormals", q.flush_subnormals,
                     "element results below the smallest normal become zero");
  add_text_option(quantize, "--block", q.block, "N",
                  "block size; adds block scaling to an element format (default scale ue8m0, "
                  "rule mx) or overrides a block quantizer's");
  add_text_option(quantize, "--scale", q.scale, "FORMAT",
                  "block scale format (ue8m0, ue4m3, ue5m3, e8m3, ...)");
  add_text_option(quantize, "--rule", q.rule, "RULE",
                  "scale rule: mx (OCP MX, ue8m0 scales), nvfp4, encode (FP4 design space)");
  add_text_option(quantize, "--scale-round", q.scale_round, "MODE",
                  "scale rounding of the nvfp4 and encode rules: rne, rup, sr");
  quantize->add_flag("--tensor-scale", q.tensor_scale,
                     "encode rule: a second-level fp32 per-tensor scale");
  add_text_option(quantize, "--zero-scale", q.zero_scale, "MODE",
                  "encode rule: what a block scale that rounds to zero becomes: "
                  "nearest_subnormal, to_one");
  add_text_option(quantize, "--shape", q.shape, "D0,D1,...",
                  "row-major shape of the input (default: 1-D, all values)");
  add_text_option(quantize, "--axis", q.axis, "A",
                  "axis the blocks run along (default -1, the last)");
  add_text_option(quantize, "--seed", q.seed, "S", kSeedHelp);
  quantize->add_flag("--binary", q.binary, "read and write raw little-endian float32");

  std::string stack_spec;
  CLI::App* stacks = app.add_subcommand(
      "stacks", "Named precision stacks with their canonical specs and complexity points.");
  stacks->footer("Example: lattice stacks 'nvfp4,gemm.sr=backward'");
  add_text_option(stacks, "SPEC", stack_spec, "SPEC",
                  "expand one spec (NAME[,key=value...]) instead of listing the named stacks");

  SweepCommand sw;
  CLI::App* sweep = app.add_subcommand(
      "sweep", "Run a sweep file's grid of trainer runs and write runs.csv, table.md and plots.");
  sweep->footer(
      "Runs with a summary.json are skipped, so an interrupted sweep resumes where it stopped.\n"
      "Example: lattice sweep sweeps/mnist.toml -j 2\n"
      "On a cluster: lattice sweep sweeps/mnist.toml --slurm --cpus-per-task 8 --time 2:00:00");
  add_text_option(sweep, "FILE", sw.file, "FILE.toml", "the sweep file")->required();
  sweep->add_option("-j,--jobs", sw.jobs, "runs at a time (default: the file's jobs, else 1)")
      ->check(CLI::PositiveNumber);
  add_text_option(sweep, "--out", sw.out, "DIR", "output root instead of the file's `out`");
  sweep->add_flag("--dry-run", sw.dry_run, "print the runs' command lines; run nothing");
  sweep->add_flag("--report-only", sw.report_only,
                  "rebuild the reports from the run folders; run nothing");
  CLI::Option* slurm = sweep->add_flag(
      "--slurm", sw.slurm,
      "write OUT/sweep.sbatch, a Slurm job array with one task per run; run nothing");
  tools::SlurmOptions& so = sw.slurm_options;
  sweep->add_option("--cpus-per-task", so.cpus_per_task, "Slurm: cores per task (its --threads)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber)
      ->needs(slurm);
  add_text_option(sweep, "--mem", so.memory, "SIZE", "Slurm: memory per task (default 8G)")
      ->needs(slurm);
  add_text_option(sweep, "--time", so.time, "TIME", "Slurm: time limit per task (default 24:00:00)")
      ->needs(slurm);
  add_text_option(sweep, "--partition", so.partition, "NAME", "Slurm: partition")->needs(slurm);
  add_text_option(sweep, "--account", so.account, "NAME", "Slurm: account")->needs(slurm);
  sweep->add_option("--gpus-per-task", so.gpus_per_task, "Slurm: GPUs per task (default 0)")
      ->check(CLI::NonNegativeNumber)
      ->needs(slurm);
  sweep
      ->add_option("--max-parallel", so.max_parallel,
                   "Slurm: array tasks running at once (default: no limit)")
      ->check(CLI::NonNegativeNumber)
      ->needs(slurm);

  PlotCommand pl;
  CLI::App* plot = app.add_subcommand(
      "plot", "Draw curves from run folders' metrics.jsonl and print their summaries.");
  plot->footer("Example: lattice plot runs/fp32 runs/mxfp4 --metric loss,val_loss --out cmp.png");
  plot->add_option("RUN_DIR", pl.dirs, "run folders (each with metrics.jsonl)")
      ->required()
      ->type_name("RUN_DIR");
  add_text_option(plot, "--out", pl.out, "FILE", "image: .png or .svg (default curves.png)");
  add_text_option(plot, "--metric", pl.metric, "M[,M...]",
                  "a key of metrics.jsonl: loss, val_loss, val_accuracy or a --diagnostics "
                  "metric (beta, churn/gemm.x, ...); a comma list draws side-by-side panels "
                  "(default loss)");
  plot->add_flag("--ulp-histogram", pl.ulp_histogram,
                 "draw each run's histogram of |update|/ULP (--diagnostics beta) instead of "
                 "curves, and print its mass above 1/2");
  plot->add_option("--step", pl.step, "the histogram's step (default: the last observed)")
      ->check(CLI::NonNegativeNumber);
  add_text_option(plot, "--x", pl.x, "X", "step, epoch or seconds (default step)");
  add_text_option(plot, "--title", pl.title, "T", "plot title");
  add_text_option(plot, "--labels", pl.labels, "A,B,...",
                  "curve labels, one per run folder (default: the folders' names)");

  AnalyzeCommand an;
  CLI::App* analyze = app.add_subcommand(
      "analyze", "The forward-stability paper's experiments (§4) on run folders.");
  analyze->require_subcommand(1);
  analyze->footer(
      "Each prints a Markdown table and writes it (OUT/expN.md) and PNG figures to --out.\n"
      "Example: lattice analyze exp2 runs/fp16-s0 runs/fp16-s1 --out analysis");
  CLI::App* exp1 = analyze->add_subcommand(
      "exp1",
      "Combined predictor vs r_block: Pearson (log), Spearman, R², slope, ε_mach collapse.");
  exp1->add_option("RUN_DIR", an.dirs, "run folders (metrics.jsonl, summary.json)")->required();
  add_text_option(exp1, "--points", an.exp1.points, "P",
                  "run (95th-percentile tails per run, the paper's), block (tails per run and "
                  "block) or step (every block and logged step); default run");
  exp1->add_option("--tail", an.exp1.tail, "the tails' quantile (default 0.95)");
  CLI::App* exp2 = analyze->add_subcommand(
      "exp2", "Lead-lag of max κ_softmax vs the forward error: lag, correlation, p, Precision@K.");
  exp2->add_option("RUN_DIR", an.dirs, "run folders (metrics.jsonl, summary.json)")->required();
  exp2->add_option("--max-lag", an.exp2.max_lag, "lags scanned, in logged steps (default 60)");
  exp2->add_option("--permutations", an.exp2.permutations, "permutation test size (default 999)");
  exp2->add_option("--seed", an.exp2.seed, "permutation seed (default 0)");
  exp2->add_option("--horizon", an.exp2.horizon, "Precision@K horizon H (default 40)");
  exp2->add_option("--window", an.exp2.window, "spike rolling window (default 20)");
  exp2->add_option("--threshold", an.exp2.threshold, "spike threshold Z (default 1.5)");
  exp2->add_option("--k-fraction", an.exp2.k_fraction, "K = ceil(fraction * T) (default 0.1)");
  CLI::App* exp3 =
      analyze->add_subcommand("exp3", "Loss tails of control vs ε-policy runs, paired by seed.");
  exp3->add_option("--control", an.control, "runs without the ε policy")->required();
  exp3->add_option("--intervention", an.intervention, "runs with the ε policy")->required();
  exp3->add_option("--tail-steps", an.exp3.tail_steps, "tail length in steps (default 50)");
  for (CLI::App* experiment : {exp1, exp2, exp3})
    add_text_option(experiment, "--out", an.out, "DIR",
                    "folder for the table and figures (default analysis)");

  ExperimentCommand ex;
  CLI::App* experiment_command = app.add_subcommand(
      "experiment",
      "Run one of the fistful-of-errors experiments (§7, §8; llama) or the forward-stability "
      "paper's (§4; vit) and print its table.");
  std::string experiment_names;
  for (const std::string& name : tools::kExperimentNames)
    experiment_names += (experiment_names.empty() ? "" : ", ") + name;
  experiment_command->footer(
      "Runs go to --out (default runs/experiment-NAME); runs with a summary.json are skipped, "
      "so a second call only redoes the table (NAME.md) and the figures (PNG) there.\n"
      "Precisions: e4m3, e5m2 (MX-scaled fp8 GEMM operands over bf16), fp16, bf16, fp32.\n"
      "Example: lattice experiment temperature --steps 2000 --dim 256 --seeds 3");
  add_text_option(experiment_command, "NAME", ex.name, "NAME", experiment_names)->required();
  add_text_option(experiment_command, "--out", ex.options.out, "DIR",
                  "folder of the runs, table and figures (default runs/experiment-NAME)");
  add_text_option(experiment_command, "--trainer", ex.options.trainer, "PATH",
                  "the trainer (default: llama, or vit for stability-*, next to lattice)");
  add_text_option(experiment_command, "--precisions", ex.options.precisions, "P[,P...]",
                  "precisions to train (each experiment has its default; hysteresis: A,B)");
  experiment_command->add_option("--steps", ex.options.steps, "optimizer steps per run")
      ->check(CLI::PositiveNumber);
  experiment_command
      ->add_option("--seeds", ex.options.seeds,
                   "seeds per configuration (default 1; precision-order 3)")
      ->check(CLI::PositiveNumber);
  experiment_command->add_option("--dim", ex.options.dim, "d_model (default 64; head-dim 96)")
      ->check(CLI::PositiveNumber);
  experiment_command->add_option("--layers", ex.options.layers, "blocks (default 2)")
      ->check(CLI::PositiveNumber);
  experiment_command
      ->add_option("--seq", ex.options.sequence,
                   "sequence length (default 64 for temperature, else 32)")
      ->check(CLI::PositiveNumber);
  experiment_command->add_option("--batch", ex.options.batch, "sequences per step (default 16)")
      ->check(CLI::PositiveNumber);
  experiment_command->add_option("-j,--jobs", ex.jobs, "runs at a time (default 1)")
      ->check(CLI::PositiveNumber);
  experiment_command->add_option("--threads", ex.threads, "CPU threads per run (default 1)")
      ->check(CLI::PositiveNumber);
  experiment_command->add_flag("--dry-run", ex.dry_run, "print the trainer commands; run nothing");
  experiment_command->add_flag("--report-only", ex.report_only,
                               "run nothing; build the table and figures from the run folders");

  std::vector<std::string> args(argv + 1, argv + argc);
  if (!args.empty() && !args[0].starts_with('-')) {
    const bool known = args[0] == "formats" || args[0] == "cast" || args[0] == "quantize" ||
                       args[0] == "stacks" || args[0] == "sweep" || args[0] == "plot" ||
                       args[0] == "analyze" || args[0] == "experiment";
    LATTICE_CHECK(known, "unknown command \"", args[0],
                  "\" (known: formats, cast, quantize, stacks, sweep, plot, analyze, experiment)");
  }
  args = protect_negative_numbers(std::move(args));
  std::reverse(args.begin(), args.end());  // CLI11 takes its argument vector back to front
  try {
    app.parse(args);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help
    std::string command = "lattice";
    for (const CLI::App* sub : app.get_subcommands()) command += " " + sub->get_name();
    throw Error(concat(e.what(), " (see `", command, " --help`)"));
  }

  if (formats->parsed()) return run_formats();
  if (stacks->parsed()) return run_stacks(stack_spec);
  if (sweep->parsed()) return run_sweep_command(sw);
  if (plot->parsed()) return run_plot_command(pl);
  if (experiment_command->parsed()) return run_experiment_command(ex);
  for (const CLI::App* experiment : {exp1, exp2, exp3})
    if (experiment->parsed()) return run_analyze_command(experiment->get_name(), an);
  if (cast->parsed()) return run_cast(c);
  if (quantize->parsed())
    return run_quantize(q, [&](const char* option) { return quantize->count(option) > 0; });
  std::cout << app.help();
  return 0;
}

/// The message on one line: "lattice: <message>".
void print_error(std::string message) {
  std::replace(message.begin(), message.end(), '\n', ' ');
  std::fprintf(stderr, "lattice: %s\n", message.c_str());
}

}  // namespace
}  // namespace lattice

int main(int argc, char** argv) {
  try {
    return lattice::run(argc, argv);
  } catch (const lattice::Error& e) {
    lattice::print_error(e.what());
    return lattice::kUsageError;
  } catch (const std::bad_alloc&) {
    lattice::print_error("out of memory");
    return 1;
  } catch (const std::exception& e) {
    lattice::print_error(e.what());
    return 1;
  }
}
