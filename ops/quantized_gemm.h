// Quantized GEMM, in one place: matmul (ops.h; nn::linear and conv2d go through it) quantizes
// its operands with the precision stack's GEMM quantizers along their reduction axes, under the
// design-space recipe (random Hadamard transforms, stochastic rounding, gradient estimators),
// runs the GEMM through the accumulator's emulation and rounds its output onto the activation
// lattice. The same rounding puts every other op's output on that lattice, and the quantize,
// cast and gradient_estimator ops (ops.h) share the operand quantizers defined here.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "core/philox.h"
#include "tensor/gemm_recipe.h"
#include "tensor/precision_stack.h"
#include "tensor/quantizer.h"
#include "tensor/tensor.h"

namespace lattice {

/// How a GEMM runs when its operands' lattices allow a narrower one, which matmul reads off
/// them (the quantizer it applies, or the lattice an unquantized operand is labelled with),
/// never off the values.
enum class GemmPath {
  /// When every value of both operands is a bf16 value (within_bf16), a bf16 GEMM (exact
  /// products, fp32 sums): cuBLAS's on a GPU, oneDNN's where this CPU multiplies bf16 natively
  /// (native_bf16_gemm_cpu: AVX512-BF16 or AMX); fp32 sgemm on other CPUs. MX operands are
  /// bf16 values too, and on Hopper cuBLAS's bf16 GEMM outruns the block-scaled FP8 GEMMs
  /// (H200, 4096^3: 714 TFLOP/s against 298 for the wgmma kernel; bench_block_gemm), so they
  /// take it. NVFP4 operands too: element times block scale in bf16, the fp32 tensor scales
  /// applied to the output (NUMERICS.md). The default.
  automatic,
  /// Always fp32 sgemm: the sums of a machine without native bf16 (NUMERICS.md).
  exact_fp32,
  /// automatic, and on every device a single GEMM of two operands MX-quantized along K into
  /// FP8-exact blocks of 32 (MXFP8, MXFP6, MXFP4) as the block-scaled FP8 GEMM
  /// (kernels/block_scaled_gemm.h: codes and per-block scales, each block's partial sum
  /// promoted by its scales): on a GPU the FP8 tensor cores, on a CPU the golden model that
  /// shows the GPU's sums, slowly.
  fp8_blocks,
};

/// The process-wide GEMM path (trainers' and benchmarks' --gemm).
void set_gemm_path(GemmPath path);
GemmPath gemm_path();
/// "auto", "exact-fp32" or "fp8-blocks"; throws lattice::Error "[gemm] ..." naming them
/// otherwise.
GemmPath parse_gemm_path(const std::string& text);
/// What the path does on `device` of this machine, for run summaries, e.g. "block-scaled fp8 for
/// MX operands, bf16 for bf16 operands, else fp32" or "fp32".
std::string describe_gemm_path(Device device);

/// matmul's quantized GEMM in pieces, for an op that records its own node around it (conv2d
/// over patch rows, which folds the input gradient itself): the GEMM quantizers and accumulator
/// of the stack, captured when the forward runs, since backward may run after its scope ended.
/// Each piece quantizes its operands along their reduction axes (drawing their streams in
/// matmul's order), multiplies through the accumulator's emulation on the path their lattices
/// allow, and traces itself as matmul does. Without a GemmRecipe (matmul handles recipes).
struct QuantizedGemm {
  GemmQuantizers quantizers;
  Accumulator accumulator;

  /// The current stack's (the identity while a backward runs).
  static QuantizedGemm current();
  /// a (..., M, K) @ b (..., K, N), rounded onto Λa.
  Tensor product(const Tensor& a, const Tensor& b) const;
  /// For the gradient g (..., M, N) of a @ b: dA = g @ b^T.
  Tensor input_gradient(const Tensor& g, const Tensor& b) const;
  /// dA's operands unmultiplied: g and b quantized along N, and whether their product may run in
  /// bf16 (both hold bf16 values and the GEMM path is not exact-fp32).
  struct DgradOperands {
    Tensor grad, weight;
    bool bf16;
  };
  DgradOperands input_gradient_operands(const Tensor& g, const Tensor& b) const;
  /// dB = a^T @ g, in b's layout where b is a transposed view.
  Tensor weight_gradient(const Tensor& g, const Tensor& a, const Tensor& b) const;
};

/// Whether a product of the unquantized operands a and b may multiply in bf16 as matmul's
/// automatic path does: every value of both is a bf16 value by the lattices they are labelled
/// with, and the path is not exact-fp32. For the ops that call their own GEMM-like kernels (the
/// direct convolution); the device decides whether it does.
bool bf16_products(const Tensor& a, const Tensor& b);

/// How an op's output reaches the current stack's activation lattice (Λa).
enum class ActivationRounding {
  /// Inside the op, before it records its node (the ops in ops/): the gradient reaches the op
  /// unrounded, blocks run along the last axis, and backward rules are not rounded.
  inside_op,
  /// As a quantize op of its own after the op's node (the fused ops of nn/): the stack's block
  /// axis, traced as "quantize", and its straight-through node is one more place where the
  /// engine rounds the gradient onto Λg (drawing a random stream).
  recorded,
};

/// `out` rounded onto the current stack's activation lattice; float32 outputs only, and none
/// when the stack's activation quantizer is the identity. The two forms draw the same random
/// stream but differ as ActivationRounding says; each caller keeps the form its seeded runs
/// were recorded with.
Tensor on_activation_lattice(const Tensor& out,
                             ActivationRounding rounding = ActivationRounding::inside_op);

// Operand quantization on host arrays of `shape` (row-major), as the GEMM applies it; throw
// lattice::Error on sizes that do not match `shape`.

/// y = Q(x) along q.scaling->axis as the recipe's max approximation sees it: the quantize
/// kernels' result bit for bit, except under softsoftmax, whose blocks take the smooth max.
void quantize_operand(const Quantizer& q,
                      const GemmRecipe& recipe,
                      std::span<const float> x,
                      std::span<float> y,
                      std::span<const int64_t> shape,
                      const RandomStream& random);

/// dL/dx from dL/dy for y = quantize_operand(q, recipe, x, ..., random): the recipe's step,
/// scale, max and tensor-scale estimators (straight-through where they are STE).
void quantizer_gradient(const Quantizer& q,
                        const GemmRecipe& recipe,
                        std::span<const float> x,
                        std::span<const float> grad_y,
                        std::span<float> grad_x,
                        std::span<const int64_t> shape,
                        const RandomStream& random);

/// In place along `axis`: every full run of `block` elements (a power of two) v becomes
/// H (s ⊙ v), or s ⊙ (H v) when `inverse` (kernels/hadamard.h).
void random_hadamard(std::span<float> x,
                     std::span<const int64_t> shape,
                     int axis,
                     int block,
                     const RandomStream& signs,
                     bool inverse);

}  // namespace lattice
