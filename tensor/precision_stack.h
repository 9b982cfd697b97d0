// PrecisionStack: the fistful-of-errors paper's P = (Λw, Λa, Λg, Γacc, Γopt, R, S) — working
// lattices of weights, activations and gradients, the quantizers of the GEMM operands forward
// and backward, the accumulator, the optimizer-state lattice and the master weights — with a
// spec string that round-trips, and a scope that makes a stack current for a region of code.
#pragma once

#include <cstdint>
#include <string>

#include "tensor/format.h"
#include "tensor/quantizer.h"

namespace lattice {

/// Quantizers of a GEMM's operands, each applied along the GEMM's reduction dimension.
struct GemmQuantizers {
  Quantizer input;         // forward x
  Quantizer weight;        // forward w
  Quantizer output_grad;   // backward dy (both dgrad and wgrad)
  Quantizer saved_input;   // backward x (wgrad)
  Quantizer saved_weight;  // backward w (dgrad)

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
  Accumulator accumulator;       // Γacc
  Quantizer optimizer_state;     // Γopt: m, v rounded onto it after each update
  Format master_weights = fp32;  // the optimizer's copy of non-fp32 weights

  friend bool operator==(const PrecisionStack&, const PrecisionStack&) = default;
};

/// Parses a spec: comma-separated `key=value` items applied left to right over the fp32
/// stack ("fp32" or "" alone is that stack). Keys: w, a, g; gemm (all five operands),
/// gemm.fwd (x, w), gemm.bwd (dy, x, w), gemm.x, gemm.w, gemm.dy, gemm.bwd.x, gemm.bwd.w;
/// acc; opt; master. A quantizer value is NAME[:OPTION]... with NAME a format or a block
/// format (mxfp4, nvfp4, ...) and options: a rounding mode (rne, rna, rtz, rup, rdn, sr,
/// sr<N>), b<N> (block size; ue8m0 MX scaling when NAME is elementwise), scale=FORMAT,
/// rule=mx|nvfp4|encode, scale_round=rne|rup|sr, ts (tensor scale), zero=subnormal|one,
/// overflow=standard|saturate|inf|nan, flush (subnormals), axis=N. acc takes FORMAT[:k<N>],
/// master a FORMAT. Throws lattice::Error quoting the spec and the offending item.
PrecisionStack parse_precision_stack(const std::string& spec);

/// The canonical spec: the shortest item list that parse_precision_stack reads back to `s`.
std::string to_string(const PrecisionStack& s);

/// Parses one quantizer value (NAME[:OPTION]...). Throws lattice::Error.
Quantizer parse_quantizer_spec(const std::string& text);
/// The canonical spelling of a quantizer, read back by parse_quantizer_spec.
std::string to_string(const Quantizer& q);

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
