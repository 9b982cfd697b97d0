// PrecisionStack: the fistful-of-errors paper's P = (Λw, Λa, Λg, Γacc, Γopt, R, S) — working
// lattices of weights, activations and gradients, the quantizers of the GEMM operands forward
// and backward, the accumulator, the optimizer-state lattice and the master weights — with a
// spec string that round-trips, and a scope that makes a stack current for a region of code.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/format.h"
#include "tensor/gemm_recipe.h"
#include "tensor/quantizer.h"

namespace lattice {

/// Quantizers of a GEMM's operands, each applied along the GEMM's reduction dimension, and
/// the design-space recipe (SR, Hadamard, gradient estimators) the GEMM applies with them.
struct GemmQuantizers {
  Quantizer input;         // forward x
  Quantizer weight;        // forward w
  Quantizer output_grad;   // backward dy (both dgrad and wgrad)
  Quantizer saved_input;   // backward x (wgrad)
  Quantizer saved_weight;  // backward w (dgrad)
  GemmRecipe recipe;

  friend bool operator==(const GemmQuantizers&, const GemmQuantizers&) = default;
};

/// Accumulation of products: fp32 by default. With round_every = K > 0 a lower-precision
/// accumulator is simulated by rounding the partial sum onto `format` every K products.
struct Accumulator {
  Format format = fp32;
  int64_t round_every = 0;

  friend bool operator==(const Accumulator&, const Accumulator&) = default;
};

struct PrecisionStack {
  Quantizer weights;      // Λw: the lattice working weights live on
  Quantizer activations;  // Λa: op outputs are rounded onto it
  Quantizer gradients;    // Λg: gradients flowing backward are rounded onto it
  GemmQuantizers gemm;
  Accumulator accumulator;    // Γacc
  Quantizer optimizer_state;  // Γopt: m, v rounded onto it after each update
  Quantizer master_weights;   // the optimizer's copy of non-fp32 weights: an element format
                              // and its rounding (fp32: no rounding)

  friend bool operator==(const PrecisionStack&, const PrecisionStack&) = default;
};

/// Parses a spec: comma-separated `key=value` items applied left to right over the fp32
/// stack, or over a named stack (named_stacks()) when the first item is a bare NAME ("" is
/// fp32). Keys: w, a, g; gemm (all five operands), gemm.fwd (x, w), gemm.bwd (dy, x, w),
/// gemm.x, gemm.w, gemm.dy, gemm.bwd.x, gemm.bwd.w; acc; opt; master. A quantizer value is
/// NAME[:OPTION]... with NAME a format or a block format (mxfp4, nvfp4, ...) and options: a
/// rounding mode (rne, rna, rtz, rup, rdn, sr, sr<N>), b<N> (block size; ue8m0 MX scaling when
/// NAME is elementwise), scale=FORMAT, rule=mx|nvfp4|encode, scale_round=rne|rup|sr (or
/// tiestoeven|towardpositive|stochastic), ts (tensor scale), zero=subnormal|one (or
/// nearest_subnormal|to_one), overflow=standard|saturate|inf|nan, flush (subnormals), axis=N.
/// acc takes FORMAT[:k<N>], master a FORMAT. The GEMM recipe keys: gemm.sr=none|all|backward|
/// intelfp4, gemm.hadamard=none|all|backward, gemm.max=ste|absmax|softsoftmax|hardsoftmax,
/// gemm.alpha=X (> 0), gemm.step_grad=ste|baseline|spline|sigmoid,
/// gemm.scale_grad=ste|baseline|spline, gemm.ts_grad=ignore|absmax|ste.
/// Throws lattice::Error quoting the spec and the offending item.
PrecisionStack parse_precision_stack(const std::string& spec);

/// The canonical spec: the shortest item list that parse_precision_stack reads back to `s`.
std::string to_string(const PrecisionStack& s);

/// Parses one quantizer value (NAME[:OPTION]...). Throws lattice::Error.
Quantizer parse_quantizer_spec(const std::string& text);
/// The canonical spelling of a quantizer, read back by parse_quantizer_spec.
std::string to_string(const Quantizer& q);

/// A named stack: its name, canonical spec and what it is.
struct NamedStack {
  const char* name;
  const char* spec;
  const char* description;
};
/// fp32, bf16, fp16, fp8-e4m3, mxfp8, mxfp4, nvfp4, ue5m3-fp4 and the design-space "pure FP4"
/// stack for each scale format (pure-fp4-e8m0, -e4m3, -ue5m3, -e8m3, -fp32).
const std::vector<NamedStack>& named_stacks();

/// Makes `stack` the current precision of this thread until the scope ends; scopes nest.
class PrecisionScope {
 public:
  explicit PrecisionScope(PrecisionStack stack);
  ~PrecisionScope();
  PrecisionScope(const PrecisionScope&) = delete;
  PrecisionScope& operator=(const PrecisionScope&) = delete;

 private:
  PrecisionStack stack_;
  const PrecisionStack* previous_;
};

/// The stack of the innermost PrecisionScope on this thread; all-fp32 outside any scope.
const PrecisionStack& current_precision();

}  // namespace lattice
