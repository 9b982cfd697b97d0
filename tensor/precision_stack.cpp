// Precision-stack specs (parse and canonical print) and the thread-local current stack.
#include "tensor/precision_stack.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <optional>
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

std::string scale_rounding_name(RoundingMode mode) {
  return rounding_name(Rounding{.mode = mode});
}

using Printed = std::optional<std::string>;

/// One quantizer option (NAME:option): a bare word (`key` null; `apply` says whether the
/// option is this one) or key=value (`apply` gets the value), and what the canonical spelling
/// prints for it given the quantizer the spelling starts from (nothing: left out). The parser,
/// the printer and the "unknown option" errors all read this table; its order is the order
/// of the canonical spelling.
struct QuantizerOption {
  const char* spelling;  // as the "known" list shows it
  const char* key;
  bool scaling;  // sets block scaling (printed only for block-scaled quantizers)
  bool (*apply)(Quantizer& q, const std::string& text);
  Printed (*print)(const Quantizer& q, const Quantizer& base);
};

const std::vector<QuantizerOption>& quantizer_options() {
  static const std::vector<QuantizerOption> options = {
      {"rne|rna|rtz|rup|rdn|sr|sr<N>", nullptr, false,
       [](Quantizer& q, const std::string& option) {
         if (!is_rounding_token(option)) return false;
         const Rounding r = parse_rounding(option);
         q.rounding.mode = r.mode;
         q.rounding.random_bits = r.random_bits;
         return true;
       },
       [](const Quantizer& q, const Quantizer& base) -> Printed {
         if (q.rounding.mode == base.rounding.mode &&
             q.rounding.random_bits == base.rounding.random_bits)
           return std::nullopt;
         return rounding_name(q.rounding);
       }},
      {"overflow=", "overflow", false,
       [](Quantizer& q, const std::string& value) {
         q.rounding.overflow = parse_overflow(value);
         return true;
       },
       [](const Quantizer& q, const Quantizer& base) -> Printed {
         if (q.rounding.overflow == base.rounding.overflow) return std::nullopt;
         return "overflow=" + overflow_name(q.rounding.overflow);
       }},
      {"flush", nullptr, false,
       [](Quantizer& q, const std::string& option) {
         if (option != "flush") return false;
         q.rounding.subnormals = Subnormals::flush;
         return true;
       },
       [](const Quantizer& q, const Quantizer&) -> Printed {
         if (q.rounding.subnormals != Subnormals::flush) return std::nullopt;
         return "flush";
       }},
      {"b<N>", nullptr, true,
       [](Quantizer& q, const std::string& option) {
         if (option[0] != 'b' || !is_digits(option.substr(1))) return false;
         scaling_of(q).block_size = int(parse_count(option.substr(1), option));
         return true;
       },
       [](const Quantizer& q, const Quantizer& base) -> Printed {
         if (q.scaling->block_size == base.scaling->block_size) return std::nullopt;
         return concat("b", q.scaling->block_size);
       }},
      {"scale=", "scale", true,
       [](Quantizer& q, const std::string& value) {
         scaling_of(q).scale_format = parse_format(value);
         return true;
       },
       [](const Quantizer& q, const Quantizer& base) -> Printed {
         if (q.scaling->scale_format == base.scaling->scale_format) return std::nullopt;
         return "scale=" + format_name(q.scaling->scale_format);
       }},
      {"rule=", "rule", true,
       [](Quantizer& q, const std::string& value) {
         scaling_of(q).rule = parse_scale_rule(value);
         return true;
       },
       [](const Quantizer& q, const Quantizer& base) -> Printed {
         if (q.scaling->rule == base.scaling->rule) return std::nullopt;
         return "rule=" + scale_rule_name(q.scaling->rule);
       }},
      {"scale_round=", "scale_round", true,
       [](Quantizer& q, const std::string& value) {
         // The design-space names of the three scale rounding modes are accepted too.
         const std::string mode = value == "tiestoeven"       ? "rne"
                                  : value == "towardpositive" ? "rup"
                                  : value == "stochastic"     ? "sr"
                                                              : value;
         scaling_of(q).scale_rounding = parse_rounding(mode).mode;
         return true;
       },
       [](const Quantizer& q, const Quantizer& base) -> Printed {
         if (q.scaling->scale_rounding == base.scaling->scale_rounding) return std::nullopt;
         return "scale_round=" + scale_rounding_name(q.scaling->scale_rounding);
       }},
      {"ts", nullptr, true,
       [](Quantizer& q, const std::string& option) {
         if (option != "ts") return false;
         scaling_of(q).tensor_scale = true;
         return true;
       },
       [](const Quantizer& q, const Quantizer& base) -> Printed {
         if (q.scaling->tensor_scale == base.scaling->tensor_scale) return std::nullopt;
         return "ts";
       }},
      {"zero=", "zero", true,
       [](Quantizer& q, const std::string& value) {
         // NaN mode (§4.3): the short spellings and the design-space names.
         const bool one = value == "one" || value == "to_one";
         LATTICE_CHECK(one || value == "subnormal" || value == "nearest_subnormal",
                       "zero= takes one|to_one or subnormal|nearest_subnormal, got \"", value,
                       "\"");
         scaling_of(q).zero_scale = one ? ZeroScale::to_one : ZeroScale::nearest_subnormal;
         return true;
       },
       [](const Quantizer& q, const Quantizer& base) -> Printed {
         if (q.scaling->zero_scale == base.scaling->zero_scale) return std::nullopt;
         return q.scaling->zero_scale == ZeroScale::to_one ? "zero=one" : "zero=subnormal";
       }},
      {"axis=", "axis", true,
       [](Quantizer& q, const std::string& value) {
         const bool negative = !value.empty() && value[0] == '-';
         const int64_t magnitude =
             parse_count(negative ? value.substr(1) : value, concat("axis=", value));
         scaling_of(q).axis = int(negative ? -magnitude : magnitude);
         return true;
       },
       [](const Quantizer& q, const Quantizer& base) -> Printed {
         if (q.scaling->axis == base.scaling->axis) return std::nullopt;
         return concat("axis=", q.scaling->axis);
       }},
  };
  return options;
}

/// The known options or keys for an "unknown option" error: "rne|...|sr<N>, overflow=, ...".
std::string known_options(bool keys_only) {
  std::string known;
  for (const QuantizerOption& o : quantizer_options())
    if (!keys_only || o.key)
      known += concat(known.empty() ? "" : ", ", keys_only ? o.key : o.spelling);
  return known;
}

void apply_option(Quantizer& q, const std::string& option) {
  LATTICE_CHECK(!option.empty(), "empty option after ':'");
  for (const QuantizerOption& o : quantizer_options())
    if (!o.key && o.apply(q, option)) return;
  const size_t equals = option.find('=');
  LATTICE_CHECK(equals != std::string::npos, "unknown option \"", option,
                "\" (known: ", known_options(false), ")");
  const std::string key = option.substr(0, equals);
  for (const QuantizerOption& o : quantizer_options())
    if (o.key && key == o.key) {
      o.apply(q, option.substr(equals + 1));
      return;
    }
  throw Error(concat("unknown option \"", option, "\" (known keys: ", known_options(true), ")"));
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

/// A quantizer-valued key's value, or nothing where it is fp32 (the default of every one).
std::optional<std::string> unless_fp32(const Quantizer& q) {
  if (q == Quantizer{}) return std::nullopt;
  return to_string(q);
}

/// A recipe knob's value, or nothing where it is the default.
template <typename T>
std::optional<std::string> unless_default(const T& value, const T& default_value) {
  if (value == default_value) return std::nullopt;
  return to_string(value);
}

/// Λa and Λg round every op output and gradient, scalars such as the loss included, which
/// have no axis to block along: they take elementwise quantizers only.
Quantizer elementwise_quantizer(const char* key, const std::string& value) {
  const Quantizer q = parse_quantizer_spec(value);
  LATTICE_CHECK(
      !q.scaling, key, "= takes an elementwise quantizer, got the block-scaled \"", value,
      "\": ", std::string(key) == "a" ? "Λa rounds every op's output" : "Λg rounds every gradient",
      ", scalars such as the loss included, which have no axis to block along "
      "(block formats go on GEMM operands: gemm=",
      value, ")");
  return q;
}

// The GEMM operands print as one key where they agree: gemm (all five), else gemm.fwd (x and w)
// or gemm.x and gemm.w, then gemm.bwd (dy and the saved x, w) or each of them.
bool forward_same(const GemmQuantizers& g) {
  return g.input == g.weight;
}
bool backward_same(const GemmQuantizers& g) {
  return g.output_grad == g.saved_input && g.saved_input == g.saved_weight;
}
bool all_same(const GemmQuantizers& g) {
  return forward_same(g) && backward_same(g) && g.input == g.output_grad;
}

using Value = const std::string&;

/// One spec key: how its value sets the stack, and what the canonical spec prints for it
/// (nothing: the key is left out). The parser, the printer and the "unknown key" error all
/// read this table; its order is the order of the canonical spec.
struct StackKey {
  const char* name;
  void (*parse)(PrecisionStack& s, Value value);
  Printed (*print)(const PrecisionStack& s);
};

const std::vector<StackKey>& stack_keys() {
  static const std::vector<StackKey> keys = {
      {"w", [](PrecisionStack& s, Value v) { s.weights = parse_quantizer_spec(v); },
       [](const PrecisionStack& s) { return unless_fp32(s.weights); }},
      {"a", [](PrecisionStack& s, Value v) { s.activations = elementwise_quantizer("a", v); },
       [](const PrecisionStack& s) { return unless_fp32(s.activations); }},
      {"g", [](PrecisionStack& s, Value v) { s.gradients = elementwise_quantizer("g", v); },
       [](const PrecisionStack& s) { return unless_fp32(s.gradients); }},
      {"gemm",
       [](PrecisionStack& s, Value v) {
         GemmQuantizers& g = s.gemm;
         g.input = g.weight = g.output_grad = g.saved_input = g.saved_weight =
             parse_quantizer_spec(v);
       },
       [](const PrecisionStack& s) {
         return all_same(s.gemm) ? unless_fp32(s.gemm.input) : std::nullopt;
       }},
      {"gemm.fwd",
       [](PrecisionStack& s, Value v) { s.gemm.input = s.gemm.weight = parse_quantizer_spec(v); },
       [](const PrecisionStack& s) {
         return !all_same(s.gemm) && forward_same(s.gemm) ? unless_fp32(s.gemm.input)
                                                          : std::nullopt;
       }},
      {"gemm.x", [](PrecisionStack& s, Value v) { s.gemm.input = parse_quantizer_spec(v); },
       [](const PrecisionStack& s) {
         return !forward_same(s.gemm) ? unless_fp32(s.gemm.input) : std::nullopt;
       }},
      {"gemm.w", [](PrecisionStack& s, Value v) { s.gemm.weight = parse_quantizer_spec(v); },
       [](const PrecisionStack& s) {
         return !forward_same(s.gemm) ? unless_fp32(s.gemm.weight) : std::nullopt;
       }},
      {"gemm.bwd",
       [](PrecisionStack& s, Value v) {
         s.gemm.output_grad = s.gemm.saved_input = s.gemm.saved_weight = parse_quantizer_spec(v);
       },
       [](const PrecisionStack& s) {
         return !all_same(s.gemm) && backward_same(s.gemm) ? unless_fp32(s.gemm.output_grad)
                                                           : std::nullopt;
       }},
      {"gemm.dy", [](PrecisionStack& s, Value v) { s.gemm.output_grad = parse_quantizer_spec(v); },
       [](const PrecisionStack& s) {
         return !backward_same(s.gemm) ? unless_fp32(s.gemm.output_grad) : std::nullopt;
       }},
      {"gemm.bwd.x",
       [](PrecisionStack& s, Value v) { s.gemm.saved_input = parse_quantizer_spec(v); },
       [](const PrecisionStack& s) {
         return !backward_same(s.gemm) ? unless_fp32(s.gemm.saved_input) : std::nullopt;
       }},
      {"gemm.bwd.w",
       [](PrecisionStack& s, Value v) { s.gemm.saved_weight = parse_quantizer_spec(v); },
       [](const PrecisionStack& s) {
         return !backward_same(s.gemm) ? unless_fp32(s.gemm.saved_weight) : std::nullopt;
       }},
      {"gemm.sr",
       [](PrecisionStack& s, Value v) {
         s.gemm.recipe.stochastic_rounding = parse_stochastic_rounding(v);
       },
       [](const PrecisionStack& s) {
         return unless_default(s.gemm.recipe.stochastic_rounding, GemmRecipe{}.stochastic_rounding);
       }},
      {"gemm.hadamard",
       [](PrecisionStack& s, Value v) { s.gemm.recipe.hadamard = parse_hadamard(v); },
       [](const PrecisionStack& s) {
         return unless_default(s.gemm.recipe.hadamard, GemmRecipe{}.hadamard);
       }},
      {"gemm.max",
       [](PrecisionStack& s, Value v) { s.gemm.recipe.max_approx = parse_max_approx(v); },
       [](const PrecisionStack& s) {
         return unless_default(s.gemm.recipe.max_approx, GemmRecipe{}.max_approx);
       }},
      {"gemm.alpha",
       [](PrecisionStack& s, Value v) {
         double alpha = 0.0;
         const auto [end, error] = std::from_chars(v.data(), v.data() + v.size(), alpha);
         LATTICE_CHECK(error == std::errc() && end == v.data() + v.size() && std::isfinite(alpha) &&
                           alpha > 0.0,
                       "gemm.alpha takes a positive number, got \"", v, "\"");
         s.gemm.recipe.alpha = alpha;
       },
       [](const PrecisionStack& s) -> Printed {
         if (s.gemm.recipe.alpha == GemmRecipe{}.alpha) return std::nullopt;
         return number(s.gemm.recipe.alpha);
       }},
      {"gemm.step_grad",
       [](PrecisionStack& s, Value v) { s.gemm.recipe.step_gradient = parse_step_gradient(v); },
       [](const PrecisionStack& s) {
         return unless_default(s.gemm.recipe.step_gradient, GemmRecipe{}.step_gradient);
       }},
      {"gemm.scale_grad",
       [](PrecisionStack& s, Value v) { s.gemm.recipe.scale_gradient = parse_scale_gradient(v); },
       [](const PrecisionStack& s) {
         return unless_default(s.gemm.recipe.scale_gradient, GemmRecipe{}.scale_gradient);
       }},
      {"gemm.ts_grad",
       [](PrecisionStack& s, Value v) {
         s.gemm.recipe.tensor_scale_gradient = parse_tensor_scale_gradient(v);
       },
       [](const PrecisionStack& s) {
         return unless_default(s.gemm.recipe.tensor_scale_gradient,
                               GemmRecipe{}.tensor_scale_gradient);
       }},
      {"acc",
       [](PrecisionStack& s, Value v) {
         const std::vector<std::string> parts = split(v, ':');
         LATTICE_CHECK(parts.size() <= 2, "acc takes FORMAT[:k<N>]");
         s.accumulator.format = parse_format(parts[0]);
         s.accumulator.round_every = 0;
         if (parts.size() == 2) {
           LATTICE_CHECK(parts[1].size() > 1 && parts[1][0] == 'k',
                         "acc takes FORMAT[:k<N>], got option \"", parts[1], "\"");
           s.accumulator.round_every = parse_count(parts[1].substr(1), parts[1]);
           LATTICE_CHECK(s.accumulator.round_every > 0, "k<N> needs N >= 1");
         }
       },
       [](const PrecisionStack& s) -> Printed {
         if (s.accumulator == Accumulator{}) return std::nullopt;
         return format_name(s.accumulator.format) + (s.accumulator.round_every > 0
                                                         ? concat(":k", s.accumulator.round_every)
                                                         : std::string());
       }},
      {"opt", [](PrecisionStack& s, Value v) { s.optimizer_state = parse_quantizer_spec(v); },
       [](const PrecisionStack& s) { return unless_fp32(s.optimizer_state); }},
      {"master",
       [](PrecisionStack& s, Value v) {
         s.master_weights = parse_quantizer_spec(v);
         LATTICE_CHECK(!s.master_weights.scaling,
                       "master takes an element FORMAT with its rounding (e.g. bf16:sr), not a "
                       "block-scaled one");
       },
       [](const PrecisionStack& s) { return unless_fp32(s.master_weights); }},
  };
  return keys;
}

const StackKey* find_stack_key(const std::string& name) {
  for (const StackKey& key : stack_keys())
    if (name == key.name) return &key;
  return nullptr;
}

/// "w, a, g, gemm, ...": the known keys for the "unknown key" error.
std::string stack_key_names() {
  std::string names;
  for (const StackKey& key : stack_keys()) names += concat(names.empty() ? "" : ", ", key.name);
  return names;
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
  bool scaling_printed = false;
  for (const QuantizerOption& o : quantizer_options()) {
    if (o.scaling && !q.scaling) continue;
    if (const Printed option = o.print(q, base)) {
      out += ":" + *option;
      scaling_printed = scaling_printed || o.scaling;
    }
  }
  // A plain format whose scaling equals every default still needs an option that adds the
  // scaling: the block size says it (gemm=fp16:b32 must not print as gemm=fp16).
  if (q.scaling && !named && !scaling_printed) out += concat(":b", q.scaling->block_size);
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
      const StackKey* known = find_stack_key(key);
      if (!known) throw Error(concat("unknown key \"", key, "\" (known: ", stack_key_names(), ")"));
      known->parse(stack, value);
    } catch (const Error& e) {
      throw Error(concat("[stack] \"", spec, "\" at \"", item, "\": ", e.what()));
    }
  }
  check_hadamard_blocks(spec, stack.gemm);
  return stack;
}

std::string to_string(const PrecisionStack& s) {
  std::string out;
  for (const StackKey& key : stack_keys())
    if (const std::optional<std::string> value = key.print(s))
      out += concat(out.empty() ? "" : ",", key.name, "=", *value);
  return out.empty() ? "fp32" : out;
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
