// Precision-stack specs (parse and canonical print) and the thread-local current stack.
#include "tensor/precision_stack.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/text.h"

namespace lattice {
namespace {

bool is_digits(const std::string& s) {
  return !s.empty() &&
         std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); });
}

int64_t parse_count(const std::string& digits, const std::string& option) {
  LATTICE_CHECK(is_digits(digits) && digits.size() <= 9, "option \"", option,
                "\" needs a positive integer");
  return std::stoll(digits);
}

bool is_rounding_token(const std::string& option) {
  static const char* const kModes[] = {"rne",
                                       "rna",
                                       "rtz",
                                       "rup",
                                       "rdn",
                                       "nearest-even",
                                       "nearest-away",
                                       "toward-zero",
                                       "toward-positive",
                                       "toward-negative"};
  if (std::find(std::begin(kModes), std::end(kModes), option) != std::end(kModes)) return true;
  return option.rfind("sr", 0) == 0 && (option.size() == 2 || is_digits(option.substr(2)));
}

BlockScaling& scaling_of(Quantizer& q) {
  if (!q.scaling) q.scaling = BlockScaling{};
  return *q.scaling;
}

void apply_option(Quantizer& q, const std::string& option) {
  LATTICE_CHECK(!option.empty(), "empty option after ':'");
  if (is_rounding_token(option)) {
    const Rounding r = parse_rounding(option);
    q.rounding.mode = r.mode;
    q.rounding.random_bits = r.random_bits;
    return;
  }
  if (option == "ts") {
    scaling_of(q).tensor_scale = true;
    return;
  }
  if (option == "flush") {
    q.rounding.subnormals = Subnormals::flush;
    return;
  }
  if (option[0] == 'b' && is_digits(option.substr(1))) {
    scaling_of(q).block_size = int(parse_count(option.substr(1), option));
    return;
  }
  const size_t equals = option.find('=');
  const std::string key = option.substr(0, equals);
  const std::string value = equals == std::string::npos ? "" : option.substr(equals + 1);
  LATTICE_CHECK(equals != std::string::npos, "unknown option \"", option,
                "\" (known: rne|rna|rtz|rup|rdn|sr|sr<N>, b<N>, scale=, rule=, scale_round=, ts, "
                "zero=, overflow=, flush, axis=)");
  if (key == "scale") {
    scaling_of(q).scale_format = parse_format(value);
  } else if (key == "rule") {
    scaling_of(q).rule = parse_scale_rule(value);
  } else if (key == "scale_round") {
    // The design-space names of the three scale rounding modes are accepted too.
    const std::string mode = value == "tiestoeven"       ? "rne"
                             : value == "towardpositive" ? "rup"
                             : value == "stochastic"     ? "sr"
                                                         : value;
    scaling_of(q).scale_rounding = parse_rounding(mode).mode;
  } else if (key == "zero") {
    // NaN mode (§4.3): the short spellings and the design-space names.
    const bool one = value == "one" || value == "to_one";
    LATTICE_CHECK(one || value == "subnormal" || value == "nearest_subnormal",
                  "zero= takes one|to_one or subnormal|nearest_subnormal, got \"", value, "\"");
    scaling_of(q).zero_scale = one ? ZeroScale::to_one : ZeroScale::nearest_subnormal;
  } else if (key == "overflow") {
    q.rounding.overflow = parse_overflow(value);
  } else if (key == "axis") {
    const bool negative = !value.empty() && value[0] == '-';
    const int64_t magnitude = parse_count(negative ? value.substr(1) : value, option);
    scaling_of(q).axis = int(negative ? -magnitude : magnitude);
  } else {
    throw Error(concat("unknown option \"", option,
                       "\" (known keys: scale, rule, scale_round, zero, overflow, axis)"));
  }
}

/// The named quantizer (or plain format) a quantizer's spelling starts from; `named` tells
/// which, since a plain format's spelling carries no block scaling until an option adds it.
std::string base_name(const Quantizer& q, Quantizer& base, bool& named) {
  for (const auto& [name, named_quantizer] : named_quantizers()) {
    if (named_quantizer.element == q.element && q.scaling && named_quantizer.scaling == q.scaling) {
      base = named_quantizer;
      named = true;
      return name;
    }
  }
  base = Quantizer{q.element, Rounding{}, q.scaling ? std::optional(BlockScaling{}) : std::nullopt};
  named = false;
  return format_name(q.element);
}

std::string scale_rounding_name(RoundingMode mode) {
  return rounding_name(Rounding{.mode = mode});
}

/// The Hadamard of a GEMM runs over its first operand's quantizer blocks (forward: x;
/// backward: dy), which must therefore be a power of two long (32 for elementwise ones).
void check_hadamard_blocks(const std::string& spec, const GemmQuantizers& gemm) {
  const HadamardPlacement placement = gemm.recipe.hadamard;
  if (placement == HadamardPlacement::none) return;
  const auto check = [&](const char* key, const Quantizer& q) {
    const int block = hadamard_block(q);
    LATTICE_CHECK((block & (block - 1)) == 0, "[stack] \"", spec,
                  "\": gemm.hadamard=", to_string(placement), " runs over the ", key,
                  " blocks, which must be a power of two long, got ", block);
  };
  if (placement == HadamardPlacement::all) check("gemm.x", gemm.input);
  check("gemm.dy", gemm.output_grad);
}

std::string number(double v) {
  char buffer[32];
  const auto result = std::to_chars(buffer, buffer + sizeof buffer, v);
  return std::string(buffer, result.ptr);
}

}  // namespace

Quantizer parse_quantizer_spec(const std::string& text) {
  const std::vector<std::string> parts = split(text, ':');
  Quantizer q = parse_quantizer(parts[0]);
  for (size_t i = 1; i < parts.size(); ++i) apply_option(q, lowercase(parts[i]));
  validate(q);
  return q;
}

std::string to_string(const Quantizer& q) {
  Quantizer base;
  bool named = false;
  std::string out = base_name(q, base, named);
  const auto add = [&](const std::string& option) { out += ":" + option; };
  if (q.rounding.mode != base.rounding.mode || q.rounding.random_bits != base.rounding.random_bits)
    add(rounding_name(q.rounding));
  if (q.rounding.overflow != base.rounding.overflow)
    add("overflow=" + overflow_name(q.rounding.overflow));
  if (q.rounding.subnormals == Subnormals::flush) add("flush");
  if (q.scaling) {
    const BlockScaling &s = *q.scaling, &b = *base.scaling;
    const size_t before_scaling = out.size();
    if (s.block_size != b.block_size) add(concat("b", s.block_size));
    if (s.scale_format != b.scale_format) add("scale=" + format_name(s.scale_format));
    if (s.rule != b.rule) add("rule=" + scale_rule_name(s.rule));
    if (s.scale_rounding != b.scale_rounding)
      add("scale_round=" + scale_rounding_name(s.scale_rounding));
    if (s.tensor_scale != b.tensor_scale) add("ts");
    if (s.zero_scale != b.zero_scale)
      add(s.zero_scale == ZeroScale::to_one ? "zero=one" : "zero=subnormal");
    if (s.axis != b.axis) add(concat("axis=", s.axis));
    // A plain format whose scaling equals every default still needs an option that adds the
    // scaling: the block size says it (gemm=fp16:b32 must not print as gemm=fp16).
    if (!named && out.size() == before_scaling) add(concat("b", s.block_size));
  }
  return out;
}

PrecisionStack parse_precision_stack(const std::string& spec) {
  PrecisionStack stack;
  const std::string trimmed = lowercase(spec);
  if (trimmed.empty()) return stack;
  std::vector<std::string> items = split(trimmed, ',');
  if (items[0].find('=') == std::string::npos) {
    // A bare first item names the stack the other items override.
    const auto& known = named_stacks();
    const auto named = std::find_if(known.begin(), known.end(),
                                    [&](const NamedStack& n) { return items[0] == n.name; });
    if (named == known.end()) {
      std::string names;
      for (const NamedStack& n : known) names += (names.empty() ? "" : ", ") + std::string(n.name);
      throw Error(concat("[stack] \"", spec, "\" at \"", items[0],
                         "\": expected key=value or a named stack (known: ", names, ")"));
    }
    stack = parse_precision_stack(named->spec);
    items.erase(items.begin());
  }
  for (const std::string& item : items) {
    try {
      const size_t equals = item.find('=');
      LATTICE_CHECK(equals != std::string::npos && equals > 0, "expected key=value");
      const std::string key = item.substr(0, equals), value = item.substr(equals + 1);
      LATTICE_CHECK(!value.empty(), "empty value");
      GemmQuantizers& gemm = stack.gemm;
      GemmRecipe& recipe = gemm.recipe;
      if (key == "gemm.sr") {
        recipe.stochastic_rounding = parse_stochastic_rounding(value);
      } else if (key == "gemm.hadamard") {
        recipe.hadamard = parse_hadamard(value);
      } else if (key == "gemm.max") {
        recipe.max_approx = parse_max_approx(value);
      } else if (key == "gemm.alpha") {
        double alpha = 0.0;
        const auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), alpha);
        LATTICE_CHECK(error == std::errc() && end == value.data() + value.size() &&
                          std::isfinite(alpha) && alpha > 0.0,
                      "gemm.alpha takes a positive number, got \"", value, "\"");
        recipe.alpha = alpha;
      } else if (key == "gemm.step_grad") {
        recipe.step_gradient = parse_step_gradient(value);
      } else if (key == "gemm.scale_grad") {
        recipe.scale_gradient = parse_scale_gradient(value);
      } else if (key == "gemm.ts_grad") {
        recipe.tensor_scale_gradient = parse_tensor_scale_gradient(value);
      } else if (key == "acc") {
        const std::vector<std::string> parts = split(value, ':');
        LATTICE_CHECK(parts.size() <= 2, "acc takes FORMAT[:k<N>]");
        stack.accumulator.format = parse_format(parts[0]);
        stack.accumulator.round_every = 0;
        if (parts.size() == 2) {
          LATTICE_CHECK(parts[1].size() > 1 && parts[1][0] == 'k',
                        "acc takes FORMAT[:k<N>], got option \"", parts[1], "\"");
          stack.accumulator.round_every = parse_count(parts[1].substr(1), parts[1]);
          LATTICE_CHECK(stack.accumulator.round_every > 0, "k<N> needs N >= 1");
        }
      } else if (key == "master") {
        stack.master_weights = parse_format(value);
      } else {
        const Quantizer q = parse_quantizer_spec(value);
        LATTICE_CHECK(!q.scaling || (key != "a" && key != "g"), key,
                      "= takes an elementwise quantizer, got the block-scaled \"", value, "\": ",
                      key == "a" ? "Λa rounds every op's output" : "Λg rounds every gradient",
                      ", scalars such as the loss included, which have no axis to block along "
                      "(block formats go on GEMM operands: gemm=",
                      value, ")");
        if (key == "w")
          stack.weights = q;
        else if (key == "a")
          stack.activations = q;
        else if (key == "g")
          stack.gradients = q;
        else if (key == "opt")
          stack.optimizer_state = q;
        else if (key == "gemm")
          gemm.input = gemm.weight = gemm.output_grad = gemm.saved_input = gemm.saved_weight = q;
        else if (key == "gemm.fwd")
          gemm.input = gemm.weight = q;
        else if (key == "gemm.bwd")
          gemm.output_grad = gemm.saved_input = gemm.saved_weight = q;
        else if (key == "gemm.x")
          gemm.input = q;
        else if (key == "gemm.w")
          gemm.weight = q;
        else if (key == "gemm.dy")
          gemm.output_grad = q;
        else if (key == "gemm.bwd.x")
          gemm.saved_input = q;
        else if (key == "gemm.bwd.w")
          gemm.saved_weight = q;
        else
          throw Error(concat("unknown key \"", key,
                             "\" (known: w, a, g, gemm, gemm.fwd, gemm.bwd, gemm.x, gemm.w, "
                             "gemm.dy, gemm.bwd.x, gemm.bwd.w, gemm.sr, gemm.hadamard, gemm.max, "
                             "gemm.alpha, gemm.step_grad, gemm.scale_grad, gemm.ts_grad, acc, "
                             "opt, master)"));
      }
    } catch (const Error& e) {
      throw Error(concat("[stack] \"", spec, "\" at \"", item, "\": ", e.what()));
    }
  }
  check_hadamard_blocks(spec, stack.gemm);
  return stack;
}

std::string to_string(const PrecisionStack& s) {
  const Quantizer fp32_quantizer{};
  std::vector<std::string> items;
  const auto add = [&](const char* key, const Quantizer& q) {
    if (!(q == fp32_quantizer)) items.push_back(std::string(key) + "=" + to_string(q));
  };
  add("w", s.weights);
  add("a", s.activations);
  add("g", s.gradients);
  const GemmQuantizers& g = s.gemm;
  const bool forward_same = g.input == g.weight;
  const bool backward_same = g.output_grad == g.saved_input && g.saved_input == g.saved_weight;
  if (forward_same && backward_same && g.input == g.output_grad) {
    add("gemm", g.input);
  } else {
    if (forward_same) {
      add("gemm.fwd", g.input);
    } else {
      add("gemm.x", g.input);
      add("gemm.w", g.weight);
    }
    if (backward_same) {
      add("gemm.bwd", g.output_grad);
    } else {
      add("gemm.dy", g.output_grad);
      add("gemm.bwd.x", g.saved_input);
      add("gemm.bwd.w", g.saved_weight);
    }
  }
  const GemmRecipe& r = g.recipe;
  const GemmRecipe defaults;
  const auto add_recipe = [&](const char* key, const std::string& value, bool is_default) {
    if (!is_default) items.push_back(std::string(key) + "=" + value);
  };
  add_recipe("gemm.sr", to_string(r.stochastic_rounding),
             r.stochastic_rounding == defaults.stochastic_rounding);
  add_recipe("gemm.hadamard", to_string(r.hadamard), r.hadamard == defaults.hadamard);
  add_recipe("gemm.max", to_string(r.max_approx), r.max_approx == defaults.max_approx);
  add_recipe("gemm.alpha", number(r.alpha), r.alpha == defaults.alpha);
  add_recipe("gemm.step_grad", to_string(r.step_gradient),
             r.step_gradient == defaults.step_gradient);
  add_recipe("gemm.scale_grad", to_string(r.scale_gradient),
             r.scale_gradient == defaults.scale_gradient);
  add_recipe("gemm.ts_grad", to_string(r.tensor_scale_gradient),
             r.tensor_scale_gradient == defaults.tensor_scale_gradient);
  if (!(s.accumulator == Accumulator{}))
    items.push_back(
        "acc=" + format_name(s.accumulator.format) +
        (s.accumulator.round_every > 0 ? concat(":k", s.accumulator.round_every) : std::string()));
  add("opt", s.optimizer_state);
  if (s.master_weights != fp32) items.push_back("master=" + format_name(s.master_weights));
  if (items.empty()) return "fp32";
  std::string out;
  for (const std::string& item : items) out += (out.empty() ? "" : ",") + item;
  return out;
}

const std::vector<NamedStack>& named_stacks() {
  // Pure FP4 (design-space appendix, Table 3): E2M1 in every GEMM operand, the "encode" scale
  // rule, block 32 for E8M0 and 16 for the other scale formats, and no other knob (cp = 0).
  static const std::vector<NamedStack> stacks = {
      {"fp32", "", "everything in fp32"},
      {"bf16", "w=bf16,a=bf16,g=bf16", "bf16 weights, activations and gradients; fp32 masters"},
      {"fp16", "w=fp16,a=fp16,g=fp16", "fp16 weights, activations and gradients; fp32 masters"},
      {"fp8-e4m3", "gemm=e4m3", "GEMM operands rounded to e4m3, no scaling"},
      {"mxfp8", "gemm=mxfp8", "OCP MXFP8: e4m3 elements, ue8m0 scales, block 32"},
      {"mxfp4", "gemm=mxfp4", "OCP MXFP4: e2m1 elements, ue8m0 scales, block 32"},
      {"nvfp4", "gemm=nvfp4", "NVFP4: e2m1, ue4m3 block scales (16), fp32 tensor scale"},
      {"ue5m3-fp4", "gemm=e2m1:b16:scale=ue5m3:rule=encode:ts:zero=one",
       "e2m1 with ue5m3 block scales (16), tensor scaling, zero scales to one"},
      {"pure-fp4-e8m0", "gemm=e2m1:scale=ue8m0:rule=encode", "pure FP4, E8M0 scales, block 32"},
      {"pure-fp4-e4m3", "gemm=e2m1:b16:scale=e4m3:rule=encode", "pure FP4, E4M3 scales, block 16"},
      {"pure-fp4-ue5m3", "gemm=e2m1:b16:scale=ue5m3:rule=encode",
       "pure FP4, UE5M3 scales, block 16"},
      {"pure-fp4-e8m3", "gemm=e2m1:b16:scale=e8m3:rule=encode", "pure FP4, E8M3 scales, block 16"},
      {"pure-fp4-fp32", "gemm=e2m1:b16:scale=fp32:rule=encode",
       "pure FP4, ideal fp32 scales, block 16"},
  };
  return stacks;
}

namespace {
thread_local const PrecisionStack* current_stack = nullptr;
}  // namespace

PrecisionScope::PrecisionScope(PrecisionStack stack)
    : stack_(std::move(stack)), previous_(current_stack) {
  current_stack = &stack_;
}

PrecisionScope::~PrecisionScope() {
  current_stack = previous_;
}

const PrecisionStack& current_precision() {
  static const PrecisionStack fp32_stack{};
  return current_stack ? *current_stack : fp32_stack;
}

}  // namespace lattice
