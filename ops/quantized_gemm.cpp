// Quantized GEMM (ops/quantized_gemm.h): the operand quantizers and the design-space recipe
// around the GEMM kernel, the accumulator emulation, the activation-lattice rounding of op
// outputs, and the matmul, quantize, cast and gradient_estimator ops. Forward and backward
// GEMMs run here; the loops are the kernels' (gemm, quantized_gemm, quantizer_gradient,
// hadamard, quantize).
#include "ops/quantized_gemm.h"

#include <algorithm>
#include <cstdlib>
#include <optional>
#include <utility>
#include <vector>

#include "kernels/block_scaled_gemm.h"
#include "kernels/dispatch.h"
#include "kernels/gemm.h"
#include "kernels/hadamard.h"
#include "kernels/optimizer.h"
#include "kernels/pack_fp8.h"
#include "kernels/quantized_gemm.h"
#include "kernels/quantizer_gradient.h"
#include "kernels/strided_loop.h"
#include "ops/op_support.h"
#include "ops/ops.h"
#include "tensor/precision_stack.h"
#include "tensor/random.h"
#include "tensor/tape.h"

namespace lattice {
namespace {

bool is_identity(const Quantizer& q) {
  return q == Quantizer{};
}

/// The axes of `t` from the largest stride to the smallest when its elements are a packed
/// block in that order (a permutation of a contiguous tensor), else nullopt.
std::optional<std::vector<int>> packed_order(const Tensor& t) {
  std::vector<int> order(size_t(t.rank()));
  for (int i = 0; i < t.rank(); ++i) order[size_t(i)] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return t.stride(a) > t.stride(b); });
  int64_t expected = 1;
  for (size_t i = order.size(); i-- > 0;) {
    const int axis = order[i];
    if (t.shape(axis) != 1 && t.stride(axis) != expected) return std::nullopt;
    expected *= t.shape(axis);
  }
  return order;
}

/// A packed block `t` (its axes in `order`, as packed_order gives them) seen in its storage
/// order, and q with its block axis moved along: quantizing `packed` by `along` and permuting
/// by `position` is quantizing t by q. Stochastic rounding then draws by storage position, as
/// for a packed tensor.
struct StorageOrderView {
  Tensor packed;
  Quantizer along;
  std::vector<int> position;
};

StorageOrderView storage_order_view(const Tensor& t,
                                    const std::vector<int>& order,
                                    const Quantizer& q) {
  Shape packed_shape;
  std::vector<int> position(order.size());
  for (size_t i = 0; i < order.size(); ++i) {
    packed_shape.push_back(t.shape(order[i]));
    position[size_t(order[i])] = int(i);
  }
  Quantizer along = q;
  if (along.scaling)
    along.scaling->axis = position[size_t(normalize_axis(q.scaling->axis, t.rank(), "quantize"))];
  return {t.as_strided(packed_shape, contiguous_strides(packed_shape), t.offset()), along,
          position};
}

/// Q(t) as plain values, outside autograd and the trace: the kernels' quantize-dequantize
/// labelled with an elementwise quantizer's format. Values already labelled with q's lattice
/// come back as they are (a handle on the same storage), since q leaves them unchanged.
Tensor quantized_values(const Tensor& t, const Quantizer& q, const RandomStream& random) {
  LATTICE_CHECK(t.dtype() == DType::float32, "[quantize] expects float32, got ",
                dtype_name(t.dtype()));
  if (leaves_unchanged(q, t.format())) return detach(t);
  NoGradGuard no_grad;  // the packed copy is an internal temporary
  if (const std::optional<std::vector<int>> order = packed_order(t); order && !t.is_contiguous()) {
    // A permuted view of packed values (a transposed weight): quantize them in place in their
    // packed order, blocks along the same logical axis, and view the result the same way.
    const StorageOrderView view = storage_order_view(t, *order, q);
    return quantized_values(view.packed, view.along, random).permute(view.position);
  }
  const Tensor in = t.contiguous();
  Tensor out = empty(t.shape(), DType::float32, t.device());
  const int64_t n = t.numel();
  lattice::quantize(q, std::span<const float>(in.data<float>(), size_t(n)),
                    std::span<float>(out.data<float>(), size_t(n)), t.shape(), random, t.device());
  return q.scaling ? out : out.with_format(q.element);
}

thread_local QuantizerObserver quantizer_observer;

/// A GEMM operand whose quantization is still to do: `values` quantized by `quantizer` (blocks
/// along its axis; the identity leaves them as they are) with `random`, then transposed in its
/// last two axes where `transpose`. The product quantizes it into what its GEMM reads: float32
/// values, or bf16 bits for the CPU's bf16 GEMM (no float32 copy to narrow).
struct PendingOperand {
  Tensor values;
  Quantizer quantizer;
  RandomStream random;
  bool transpose = false;
  Tensor float_values;  // Q(values) as float32 where already made (for an observer), untransposed

  /// Values to multiply as they are (implicit: any tensor is such an operand).
  PendingOperand(Tensor values) : values(std::move(values)) {}
  PendingOperand(Tensor values, Quantizer quantizer, RandomStream random)
      : values(std::move(values)), quantizer(std::move(quantizer)), random(random) {}

  /// The operand as the GEMM multiplies it, before quantization: its shape and layout.
  Tensor view() const {
    return transpose ? values.transpose(-1, -2) : values;
  }
  PendingOperand transposed() const {
    PendingOperand t = *this;
    t.transpose = !transpose;
    return t;
  }
  /// Its quantized values as float32.
  Tensor quantized() const {
    if (is_identity(quantizer)) return view();
    const Tensor out =
        float_values.defined() ? float_values : quantized_values(values, quantizer, random);
    return transpose ? out.transpose(-1, -2) : out;
  }
  /// Whether its quantization can be written in the storage order of its values (a packed
  /// block), where the GEMM's pointers into the values map onto it: as bf16 bits, or FP8 codes.
  bool quantizes_in_storage_order() const {
    return !is_identity(quantizer) && packed_order(values);
  }
  /// Its quantized values as bf16 bits in the storage order of its values, on their device:
  /// n bf16 values in a uint8 tensor of 2n bytes, and the factor they take (quantize_bf16_bits).
  std::pair<Tensor, float> quantized_bits() const {
    const StorageOrderView view = storage_order_view(values, *packed_order(values), quantizer);
    const int64_t n = values.numel();
    Tensor bits = empty({2 * n}, DType::uint8, values.device());
    const float factor = quantize_bf16_bits(
        view.along, std::span<const float>(view.packed.data<float>(), size_t(n)),
        std::span<uint16_t>(reinterpret_cast<uint16_t*>(bits.data<uint8_t>()), size_t(n)),
        view.packed.shape(), random, values.device());
    return {bits, factor};
  }
};

/// `t` as a GEMM operand quantized by `q` with blocks along `axis`, outside autograd (the
/// calling op records its own node), its random stream drawn now. Identity quantizers and
/// non-float32 tensors pass through. A quantizer observer is shown its float32 values now, as
/// `site`, in the order the callers draw them; the product still runs as it would unobserved.
PendingOperand pending_operand(const Tensor& t, Quantizer q, int axis, QuantizerSite site) {
  if (is_identity(q) || t.dtype() != DType::float32) return t;
  if (q.scaling) q.scaling->axis = axis;
  PendingOperand pending{t, q, next_random_stream()};
  if (quantizer_observer) {
    pending.float_values = pending.quantized();
    observe_quantizer(site, q, t, pending.float_values);
  }
  return pending;
}

void check_sizes(const char* op, std::span<const int64_t> shape, size_t a, size_t b) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  LATTICE_CHECK(int64_t(a) == n && int64_t(b) == n, "[", op, "] shape holds ", n,
                " elements, got arrays of ", a, " and ", b);
}

// The operand quantization of quantized_gemm.h on arrays of `device`: checks, the block
// layout, then the kernels.

void quantize_operand_on(Device device,
                         const Quantizer& q,
                         const GemmRecipe& recipe,
                         std::span<const float> x,
                         std::span<float> y,
                         std::span<const int64_t> shape,
                         const RandomStream& random) {
  if (!q.scaling || recipe.max_approx != MaxApprox::softsoftmax) {
    quantize(q, x, y, shape, random, device);
    return;
  }
  validate(q);
  check_sizes("quantize", shape, x.size(), y.size());
  LATTICE_DISPATCH(device, recipe_quantize_blocks, x.data(), y.data(),
                   block_layout(*q.scaling, shape), q.element, q.rounding, *q.scaling, recipe,
                   random);
}

void quantizer_gradient_on(Device device,
                           const Quantizer& q,
                           const GemmRecipe& recipe,
                           std::span<const float> x,
                           std::span<const float> grad_y,
                           std::span<float> grad_x,
                           std::span<const int64_t> shape,
                           const RandomStream& random) {
  check_sizes("quantizer gradient", shape, x.size(), grad_y.size());
  check_sizes("quantizer gradient", shape, x.size(), grad_x.size());
  // A straight-through recipe passes the gradient whatever the quantizer (nothing to check).
  if (!q.scaling || recipe.straight_through()) {
    LATTICE_DISPATCH(device, quantizer_gradient_elementwise, x.data(), grad_y.data(), grad_x.data(),
                     int64_t(x.size()), q.element, recipe);
    return;
  }
  validate(q);
  LATTICE_DISPATCH(device, quantizer_gradient_blocks, x.data(), grad_y.data(), grad_x.data(),
                   block_layout(*q.scaling, shape), q.element, q.rounding, *q.scaling, recipe,
                   random);
}

void hadamard_on(Device device,
                 std::span<float> x,
                 std::span<const int64_t> shape,
                 int axis,
                 int block,
                 const RandomStream& signs,
                 bool inverse) {
  LATTICE_CHECK(block >= 1 && (block & (block - 1)) == 0,
                "[hadamard] block size must be a power of two, got ", block);
  const BlockLayout layout = block_layout(BlockScaling{.block_size = block, .axis = axis}, shape);
  check_sizes("hadamard", shape, x.size(), x.size());
  LATTICE_DISPATCH(device, random_hadamard, x.data(), layout.outer, layout.length, layout.inner,
                   block, signs, inverse);
}

/// How a matrix operand reaches the GEMM without a copy: row-major with leading dimension
/// `ld`, or transposed (a column-major view, as t() of a packed matrix gives).
struct MatrixOperand {
  bool transposed = false;
  int64_t ld = 0;
};

/// The layout of the matrices in the last two axes of `m`, when the GEMM can read them in
/// place.
std::optional<MatrixOperand> gemm_layout(const Tensor& m) {
  const int64_t rows = m.shape(-2), cols = m.shape(-1), row_stride = m.stride(-2),
                col_stride = m.stride(-1);
  if (col_stride == 1 && row_stride >= std::max<int64_t>(cols, 1))
    return MatrixOperand{false, row_stride};
  if (row_stride == 1 && col_stride >= std::max<int64_t>(rows, 1))
    return MatrixOperand{true, col_stride};
  return std::nullopt;
}

/// `m` as the GEMM reads it: in place where its layout allows, else packed in the orientation
/// of its smaller stride. A strided copy of a transposed matrix is packed transposed again, so
/// the GEMM sees the same operand layout, and gives the same bits, as for its dense twin (some
/// sgemm kernels accumulate a transposed operand in another order).
std::pair<Tensor, MatrixOperand> gemm_operand(const Tensor& m) {
  if (const std::optional<MatrixOperand> layout = gemm_layout(m)) return {m, *layout};
  if (std::abs(m.stride(-2)) < std::abs(m.stride(-1)))
    return {m.transpose(-1, -2).contiguous().transpose(-1, -2),
            MatrixOperand{true, std::max<int64_t>(m.shape(-2), 1)}};
  return {m.contiguous(), MatrixOperand{false, std::max<int64_t>(m.shape(-1), 1)}};
}

/// Whether the GEMM operand `t`, quantized by `q` (the identity: as it is), holds only bf16
/// values, by its lattice: q's, or the format t is labelled with.
bool bf16_operand(const Tensor& t, const Quantizer& q) {
  return t.dtype() == DType::float32 && (is_identity(q) ? within_bf16(t.format()) : within_bf16(q));
}

/// How an operand enters the block-scaled FP8 GEMM (kernels/block_scaled_gemm.h): the FP8
/// format its elements fit in and the exponent its blocks' largest code takes.
struct Fp8Operand {
  Fp8Format format;
  int target_exponent;
};

/// For an operand quantized by `q` along the GEMM's reduction axis: how the FP8 GEMM reads it,
/// when q is the MX rule with blocks of 32 and elements whose lattice, its top exponent moved
/// to e4m3's (to one below where its top significand exceeds e4m3's 1.75), or else to e5m2's,
/// lies on that format's lattice (MXFP8, MXFP6 and MXFP4 do). Read off the lattice, never off
/// values.
std::optional<Fp8Operand> fp8_operand(const Quantizer& q) {
  if (!q.scaling || q.scaling->rule != ScaleRule::mx || q.scaling->block_size != 32)
    return std::nullopt;
  const Format& element = q.element;
  if (element.kind != FormatKind::floating || !element.is_signed) return std::nullopt;
  const auto top_significand = [](const Format& f) {
    return 1.0 + double(f.max_mantissa_field()) / double(1u << f.mantissa_bits);
  };
  for (const Fp8Format candidate : {Fp8Format::e4m3, Fp8Format::e5m2}) {
    const Format fp8 = format_of(candidate);
    const int target =
        fp8.max_exponent() - (top_significand(element) > top_significand(fp8) ? 1 : 0);
    // Shifted by target - top, the element's finest quantum must stay on fp8's grid.
    const int shift = target - element.max_exponent();
    if (element.mantissa_bits <= fp8.mantissa_bits &&
        element.min_exponent() - element.mantissa_bits + shift >=
            fp8.min_exponent() - fp8.mantissa_bits)
      return Fp8Operand{candidate, target};
  }
  return std::nullopt;
}

/// What the GEMM may assume of its two operands, read off their lattices.
struct OperandLattices {
  bool bf16 = false;                       // every value of both is a bf16 value
  bool bf16_times_factor = false;          // ... up to a factor per operand (NVFP4's)
  std::optional<Fp8Operand> fp8_a, fp8_b;  // both FP8-exact MX blocks along K
};

/// The lattices of the GEMM operands a and b, quantized by qa and qb (identity: as they are)
/// along the reduction axis.
OperandLattices operand_lattices(const Tensor& a,
                                 const Quantizer& qa,
                                 const Tensor& b,
                                 const Quantizer& qb) {
  const auto times_factor = [](const Tensor& t, const Quantizer& q) {
    return bf16_operand(t, q) || (t.dtype() == DType::float32 && within_bf16_times_factor(q));
  };
  return {bf16_operand(a, qa) && bf16_operand(b, qb), times_factor(a, qa) && times_factor(b, qb),
          fp8_operand(qa), fp8_operand(qb)};
}

/// The lattices of b and a for the product of the transposes, b^T @ a^T.
OperandLattices swapped(const OperandLattices& lattices) {
  return {lattices.bf16, lattices.bf16_times_factor, lattices.fp8_b, lattices.fp8_a};
}

/// Whether b, a matmul operand of `rank` (as the other one: no broadcast), holds transposed
/// packed matrices (strides (1, rows) on its last two axes), as a Linear layer's w.t() does.
bool transposed_matrices(const Tensor& b, int64_t rank) {
  return b.rank() == rank && b.shape(-2) > 1 && b.shape(-1) > 1 && b.stride(-2) == 1 &&
         b.stride(-1) == b.shape(-2);
}

/// Lattices that allow at most the bf16 GEMM: where the operands may hold no whole MX blocks
/// along K (the recipe's Hadamard-mixed or encode-rule operands, the accumulator's K chunks).
OperandLattices bf16_only(bool bf16) {
  OperandLattices lattices;
  lattices.bf16 = lattices.bf16_times_factor = bf16;
  return lattices;
}

GemmPath& gemm_path_setting() {
  static GemmPath path = GemmPath::automatic;
  return path;
}

/// Whether a GEMM of bf16 operands on `device` runs as a bf16 GEMM: on a GPU always (its tensor
/// cores multiply bf16), on a CPU where it multiplies bf16 natively.
bool bf16_gemm_runs(Device device) {
  return gemm_path_setting() != GemmPath::exact_fp32 &&
         (device == Device::cuda || native_bf16_gemm_cpu());
}

/// Whether a GEMM of FP8-exact MX operands runs as the block-scaled FP8 GEMM: when asked, on
/// either device (GemmPath::fp8_blocks says why not by default).
bool fp8_gemm_runs() {
  return gemm_path_setting() == GemmPath::fp8_blocks;
}

/// One operand of fp8_block_product, read in place at `at`, laid out as `layout`: its values
/// already quantized (an identity `quantizer`), or raw values the fused quantize-and-pack
/// kernel quantizes by `quantizer` (MX, blocks of 32 along K) with `random` on the way; the
/// random words then go by offset from `at`, which must start the packed block the values are.
struct Fp8Input {
  const float* at;
  MatrixOperand layout;
  Fp8Operand fp8;
  Quantizer quantizer;
  RandomStream random;
};

/// op(A) @ op(B) -> c (M, N) packed, through the block-scaled FP8 GEMM: each operand packed (a:
/// op(A) (M, K); b: op(B) (K, N)) into FP8 codes and per-block scales along K, then C = A B^T
/// with each block's partial sums promoted by its two scales. K must be a multiple of 32.
void fp8_block_product(Device device,
                       const Fp8Input& a,
                       const Fp8Input& b,
                       int64_t M,
                       int64_t N,
                       int64_t K,
                       float* c) {
  const Tensor a_codes = empty({M, K}, DType::uint8, device);
  const Tensor b_codes = empty({N, K}, DType::uint8, device);
  const Tensor a_scales = empty({M, K / 32}, DType::float32, device);
  const Tensor b_scales = empty({N, K / 32}, DType::float32, device);
  const auto pack = [&](const Fp8Input& in, int64_t rows, int64_t row_stride, int64_t k_stride,
                        const Tensor& codes, const Tensor& scales) {
    if (is_identity(in.quantizer))
      LATTICE_DISPATCH(device, pack_fp8_blocks, in.at, rows, K, row_stride, k_stride,
                       in.fp8.target_exponent, in.fp8.format, codes.data<uint8_t>(),
                       scales.data<float>(), nullptr);
    else
      LATTICE_DISPATCH(device, quantize_pack_mx, in.at, rows, K, row_stride, k_stride,
                       in.quantizer.element, in.quantizer.rounding, *in.quantizer.scaling,
                       in.random, in.fp8.target_exponent, in.fp8.format, codes.data<uint8_t>(),
                       scales.data<float>(), nullptr);
  };
  // op(A)'s (m, k) at m * ld + k, or k * ld + m when transposed; op(B)'s (k, n), read as row n
  // of B^T, at k * ld + n, or n * ld + k when transposed.
  pack(a, M, a.layout.transposed ? 1 : a.layout.ld, a.layout.transposed ? a.layout.ld : 1, a_codes,
       a_scales);
  pack(b, N, b.layout.transposed ? b.layout.ld : 1, b.layout.transposed ? 1 : b.layout.ld, b_codes,
       b_scales);
  LATTICE_DISPATCH(device, block_scaled_gemm,
                   BlockScaledGemm{M, N, K, 32, a.fp8.format, b.fp8.format, 1.0f},
                   a_codes.data<uint8_t>(), a_scales.data<float>(), b_codes.data<uint8_t>(),
                   b_scales.data<float>(), c);
}

/// The offsets, from m.data(), of the matrices in the last two axes of m (batch axes
/// `batch`, already broadcast), in batch order.
std::vector<int64_t> matrix_offsets(const Tensor& m, const Shape& batch) {
  std::vector<int64_t> offsets;
  for_each_run<1>(batch, {Strides(m.strides().begin(), m.strides().end() - 2)},
                  [&](const auto& first, int64_t count, const auto& steps) {
                    for (int64_t j = 0; j < count; ++j) offsets.push_back(first[0] + j * steps[0]);
                  });
  return offsets;
}

/// pa @ pb with batch axes broadcast, no autograd; each operand quantized on the way. float32
/// operands whose matrices are row- or column-major views (transposes, head splits, broadcast
/// batches) go to the GEMM in place, all batch entries in one batched call; others are packed
/// first. By the operands' lattices, a single matrix product of FP8-exact MX operands runs as
/// the block-scaled FP8 GEMM where fp8_gemm_runs, and a product of bf16 values as the bf16 GEMM
/// where bf16_gemm_runs (kernels/gemm.h). Where both operands can be quantized in the storage
/// order of their values (PendingOperand::quantizes_in_storage_order), the FP8 GEMM's go
/// through the fused quantize-and-pack kernel (kernels/pack_fp8.h), and the bf16 GEMM's
/// straight into bf16 bits, NVFP4's too: their element-times-block-scale values in bf16, both
/// tensor scales applied to the output, as hardware does.
Tensor batched_product(const PendingOperand& pa,
                       const PendingOperand& pb,
                       const OperandLattices& lattices) {
  const Tensor a = pa.view(), b = pb.view();
  const int64_t M = a.shape(-2), K = a.shape(-1), N = b.shape(-1);
  LATTICE_CHECK(is_floating(a.dtype()), "[matmul] expects float32 or float64, got ",
                dtype_name(a.dtype()));
  NoGradGuard no_grad;  // internal temporaries
  const Shape a_batch(a.shape().begin(), a.shape().end() - 2);
  const Shape b_batch(b.shape().begin(), b.shape().end() - 2);
  const Shape batch = broadcast_shapes(a_batch, b_batch, "matmul");
  Shape a_full = batch, b_full = batch, out_shape = batch;
  a_full.push_back(M), a_full.push_back(K);
  b_full.push_back(K), b_full.push_back(N);
  out_shape.push_back(M), out_shape.push_back(N);
  const Device device = same_device("matmul", {&a, &b});
  Tensor out = empty(out_shape, a.dtype(), device);
  const int64_t batches = numel(batch);
  if (a.dtype() == DType::float64) {  // gradient checks: the exact loop on packed operands
    const Tensor lhs = pa.quantized().expand(a_full).contiguous();
    const Tensor rhs = pb.quantized().expand(b_full).contiguous();
    LATTICE_DISPATCH(device, batched_gemm_f64, lhs.data<double>(), rhs.data<double>(),
                     out.data<double>(), batches, M, N, K);
    return out;
  }
  const bool fp8 =
      lattices.fp8_a && lattices.fp8_b && batches == 1 && K > 0 && K % 32 == 0 && fp8_gemm_runs();
  const bool bf16 = !fp8 && bf16_gemm_runs(device);
  float* y = out.data<float>();
  // Both operands quantized where the GEMM reads them, when it reads them in place: into FP8
  // codes, or into bf16 bits.
  const bool fuses = fp8 || (bf16 && lattices.bf16_times_factor);
  const Tensor a_view = a.expand(a_full), b_view = b.expand(b_full);
  const std::optional<MatrixOperand> a_layout = fuses ? gemm_layout(a_view) : std::nullopt;
  const std::optional<MatrixOperand> b_layout = fuses ? gemm_layout(b_view) : std::nullopt;
  if (a_layout && b_layout && pa.quantizes_in_storage_order() && pb.quantizes_in_storage_order()) {
    if (fp8) {
      fp8_block_product(
          device, {a.data<float>(), *a_layout, *lattices.fp8_a, pa.quantizer, pa.random},
          {b.data<float>(), *b_layout, *lattices.fp8_b, pb.quantizer, pb.random}, M, N, K, y);
      return out;
    }
    // The GEMM reads each operand where it would read its values, in a bf16 copy of them, and
    // the operands' factors scale its output (NVFP4's tensor scales, as hardware applies them).
    const auto [a_bits, a_factor] = pa.quantized_bits();
    const auto [b_bits, b_factor] = pb.quantized_bits();
    const auto pointers = [&](const Tensor& view, const Tensor& bits) {
      const auto* first = reinterpret_cast<const uint16_t*>(bits.data<uint8_t>());
      std::vector<const uint16_t*> matrices;
      for (int64_t offset : matrix_offsets(view, batch)) matrices.push_back(first + offset);
      return matrices;
    };
    const std::vector<const uint16_t*> xs = pointers(a_view, a_bits);
    const std::vector<const uint16_t*> ws = pointers(b_view, b_bits);
    const GemmShape shape{M,
                          N,
                          K,
                          a_layout->transposed,
                          b_layout->transposed,
                          a_layout->ld,
                          b_layout->ld,
                          std::max<int64_t>(N, 1)};
    LATTICE_DISPATCH(device, gemm_bf16_bits_batched, shape, xs.data(), ws.data(), y, batches);
    if (const float factor = a_factor * b_factor; factor != 1.0f)
      LATTICE_DISPATCH(device, scale_in_place, y, batches * M * N, factor);
    return out;
  }
  const auto [lhs, la] = gemm_operand(pa.quantized().expand(a_full));
  const auto [rhs, lb] = gemm_operand(pb.quantized().expand(b_full));
  const GemmShape shape{
      M, N, K, la.transposed, lb.transposed, la.ld, lb.ld, std::max<int64_t>(N, 1)};
  const float* x = lhs.data<float>();
  const float* w = rhs.data<float>();
  std::vector<const float*> xs, ws;
  for (int64_t offset : matrix_offsets(lhs, batch)) xs.push_back(x + offset);
  for (int64_t offset : matrix_offsets(rhs, batch)) ws.push_back(w + offset);
  if (fp8) {
    fp8_block_product(device, {xs[0], la, *lattices.fp8_a, Quantizer{}, {}},
                      {ws[0], lb, *lattices.fp8_b, Quantizer{}, {}}, M, N, K, y);
  } else if (bf16 && lattices.bf16) {
    LATTICE_DISPATCH(device, gemm_bf16_batched, shape, xs.data(), ws.data(), y, batches);
  } else {
    std::vector<float*> ys;
    for (int64_t i = 0; i < batches; ++i) ys.push_back(y + i * M * N);  // packed in batch order
    LATTICE_DISPATCH(device, gemm_batched, shape, 1.0f, xs.data(), ws.data(), 0.0f, ys.data(),
                     batches);
  }
  return out;
}

/// pa @ pb through the stack's accumulator: fp32 by default; otherwise the running sum is
/// rounded onto acc.format after every acc.round_every products along K (or once at the end).
Tensor accumulated_product(const PendingOperand& pa,
                           const PendingOperand& pb,
                           const Accumulator& acc,
                           const OperandLattices& lattices) {
  if (acc == Accumulator{} || pa.values.dtype() != DType::float32)
    return batched_product(pa, pb, lattices);
  NoGradGuard no_grad;  // slices of the operands are internal temporaries
  const Tensor a = pa.quantized(), b = pb.quantized();
  const int64_t K = a.shape(-1), chunk = acc.round_every > 0 ? acc.round_every : K;
  const Quantizer onto{acc.format, Rounding{}, std::nullopt};
  Tensor total;
  for (int64_t k = 0; k < std::max<int64_t>(K, 1); k += chunk) {
    const int64_t end = std::min(K, k + chunk);
    // Chunks need not align with the MX blocks, so the FP8 GEMM stays out.
    Tensor partial =
        batched_product(a.slice(-1, k, end), b.slice(-2, k, end), bf16_only(lattices.bf16));
    if (total.defined())
      LATTICE_DISPATCH(partial.device(), add_running_sum, partial.data<float>(),
                       total.data<float>(), partial.numel());
    total = quantized_values(partial, onto, {});
  }
  return total;
}

/// `t` with a random Hadamard along `axis` (or its inverse), in a packed float32 copy labelled
/// fp32 (its values are off any lattice), outside autograd.
Tensor hadamard_along(
    const Tensor& t, int axis, int block, const RandomStream& signs, bool inverse = false) {
  NoGradGuard no_grad;
  const Tensor out = t.clone().with_format(fp32);
  hadamard_on(out.device(), std::span<float>(out.data<float>(), size_t(out.numel())), out.shape(),
              axis, block, signs, inverse);
  return out;
}

/// One GEMM operand under a recipe: its quantizer (axis set, SR applied) and the random
/// stream its quantization drew, so the backward can rebuild the quantizer's estimator.
struct RecipeOperand {
  Quantizer quantizer;
  RandomStream random;
};

RecipeOperand recipe_operand(Quantizer q, int axis, bool stochastic) {
  if (is_identity(q)) return {q, {}};
  if (q.scaling) q.scaling->axis = axis;
  if (stochastic) q.rounding.mode = RoundingMode::stochastic;
  return {q, next_random_stream()};
}

Tensor quantized_by(const Tensor& t,
                    const RecipeOperand& operand,
                    const GemmRecipe& recipe,
                    QuantizerSite site) {
  if (is_identity(operand.quantizer)) return t;
  NoGradGuard no_grad;
  const Tensor in = t.contiguous();
  Tensor out = empty(t.shape(), DType::float32, t.device());
  quantize_operand_on(out.device(), operand.quantizer, recipe,
                      std::span<const float>(in.data<float>(), size_t(t.numel())),
                      std::span<float>(out.data<float>(), size_t(t.numel())), t.shape(),
                      operand.random);
  const Tensor labelled =
      operand.quantizer.scaling ? out : out.with_format(operand.quantizer.element);
  observe_quantizer(site, operand.quantizer, t, labelled);
  return labelled;
}

/// dL/dx from dL/dQ(x) (summed to x's shape) through the recipe's estimators.
Tensor estimated_gradient(const Tensor& grad_q,
                          const Tensor& x,
                          const RecipeOperand& operand,
                          const GemmRecipe& recipe) {
  const Tensor g = sum_to(grad_q, x.shape());
  if (is_identity(operand.quantizer) || recipe.straight_through()) return g;
  NoGradGuard no_grad;
  const Tensor xs = x.contiguous(), gs = g.contiguous();
  Tensor out = empty(x.shape(), DType::float32, x.device());
  const size_t n = size_t(x.numel());
  quantizer_gradient_on(out.device(), operand.quantizer, recipe,
                        std::span<const float>(xs.data<float>(), n),
                        std::span<const float>(gs.data<float>(), n),
                        std::span<float>(out.data<float>(), n), x.shape(), operand.random);
  return out;
}

/// Logs a matmul when tracing: each operand's quantizer (or its own lattice) and the
/// accumulator, "bf16:k32" when it rounds every 32 products.
void trace_matmul(const char* op,
                  const Tensor& a,
                  const Quantizer& a_quantizer,
                  const Tensor& b,
                  const Quantizer& b_quantizer,
                  const Tensor& out,
                  const Accumulator& acc) {
  if (!op_trace_enabled()) return;
  const auto operand = [](const Tensor& t, const Quantizer& quantizer) {
    return is_identity(quantizer) ? describe_for_trace(t)
                                  : concat(to_string(quantizer), " ", t.shape());
  };
  trace_op(
      op,
      [&] {
        return std::vector<std::string>{operand(a, a_quantizer), operand(b, b_quantizer)};
      },
      out,
      acc.round_every > 0 ? concat(format_name(acc.format), ":k", acc.round_every)
                          : format_name(acc.format));
}

/// matmul under a non-default GemmRecipe (algorithms.md §4.4-4.9). Forward:
/// y = Q_x(a T) Q_w(T^T b) with T = diag(s) H along K when the Hadamard covers all GEMMs.
/// Backward: dL/dQ(a T) ~ Q_dy(g T2) Q_bw(T2^T (T^T b)^T) and dL/dQ(T^T b) ~ Q_bx((a T)^T T3)
/// Q_dy(T3^T g), T2 and T3 fresh Hadamards along N and M when the Hadamard covers backward;
/// each then goes through its forward quantizer's estimator and T^T back to a and b.
Tensor recipe_matmul(const Tensor& a,
                     const Tensor& b,
                     const GemmQuantizers& q,
                     const Accumulator& acc) {
  const GemmRecipe& recipe = q.recipe;
  const StochasticRounding sr = recipe.stochastic_rounding;
  const bool forward_hadamard = recipe.hadamard == HadamardPlacement::all;
  const bool backward_hadamard = recipe.hadamard != HadamardPlacement::none;
  const int forward_block = hadamard_block(q.input);
  const RandomStream forward_signs = forward_hadamard ? next_random_stream() : RandomStream{};
  const Tensor at = forward_hadamard ? hadamard_along(a, -1, forward_block, forward_signs) : a;
  const Tensor bt = forward_hadamard ? hadamard_along(b, -2, forward_block, forward_signs) : b;
  const RecipeOperand x = recipe_operand(q.input, -1, sr == StochasticRounding::all);
  const RecipeOperand w = recipe_operand(q.weight, -2, sr == StochasticRounding::all);
  const Tensor out = on_activation_lattice(accumulated_product(
      quantized_by(at, x, recipe, QuantizerSite::gemm_input),
      quantized_by(bt, w, recipe, QuantizerSite::gemm_weight), acc,
      bf16_only(bf16_operand(at, x.quantizer) && bf16_operand(bt, w.quantizer))));
  trace_matmul("matmul", a, x.quantizer, b, w.quantizer, out, acc);
  record_op(
      "matmul", out, {a, b},
      [at = detach(at), bt = detach(bt), q, acc, x, w, forward_hadamard, backward_hadamard,
       forward_block, forward_signs](const Tensor& g) {
        const GemmRecipe& recipe = q.recipe;
        const StochasticRounding sr = recipe.stochastic_rounding;
        const bool sr_dy = sr != StochasticRounding::none;
        const int block = hadamard_block(q.output_grad);
        // dgrad: reduces over N.
        const RandomStream dgrad_signs = backward_hadamard ? next_random_stream() : RandomStream{};
        const Tensor g_d = backward_hadamard ? hadamard_along(g, -1, block, dgrad_signs) : g;
        const Tensor w_d = backward_hadamard ? hadamard_along(bt, -1, block, dgrad_signs) : bt;
        const RecipeOperand dy_d = recipe_operand(q.output_grad, -1, sr_dy);
        const RecipeOperand saved_w =
            recipe_operand(q.saved_weight, -1, sr == StochasticRounding::all);
        const Tensor grad_qa = accumulated_product(
            quantized_by(g_d, dy_d, recipe, QuantizerSite::gemm_output_grad),
            quantized_by(w_d, saved_w, recipe, QuantizerSite::gemm_saved_weight).transpose(-1, -2),
            acc,
            bf16_only(bf16_operand(g_d, dy_d.quantizer) && bf16_operand(w_d, saved_w.quantizer)));
        trace_matmul("matmul.dgrad", g_d, dy_d.quantizer, w_d, saved_w.quantizer, grad_qa, acc);
        // wgrad: reduces over M.
        const RandomStream wgrad_signs = backward_hadamard ? next_random_stream() : RandomStream{};
        const Tensor a_w = backward_hadamard ? hadamard_along(at, -2, block, wgrad_signs) : at;
        const Tensor g_w = backward_hadamard ? hadamard_along(g, -2, block, wgrad_signs) : g;
        const RecipeOperand saved_x =
            recipe_operand(q.saved_input, -2,
                           sr == StochasticRounding::all || sr == StochasticRounding::intel_fp4);
        const RecipeOperand dy_w = recipe_operand(q.output_grad, -2, sr_dy);
        const Tensor grad_qb = accumulated_product(
            quantized_by(a_w, saved_x, recipe, QuantizerSite::gemm_saved_input).transpose(-1, -2),
            quantized_by(g_w, dy_w, recipe, QuantizerSite::gemm_output_grad), acc,
            bf16_only(bf16_operand(a_w, saved_x.quantizer) && bf16_operand(g_w, dy_w.quantizer)));
        trace_matmul("matmul.wgrad", a_w, saved_x.quantizer, g_w, dy_w.quantizer, grad_qb, acc);
        Tensor da = estimated_gradient(grad_qa, at, x, recipe);
        Tensor db = estimated_gradient(grad_qb, bt, w, recipe);
        if (forward_hadamard) {
          da = hadamard_along(da, -1, forward_block, forward_signs, true);
          db = hadamard_along(db, -2, forward_block, forward_signs, true);
        }
        return std::vector<Tensor>{da, db};
      });
  return out;
}

}  // namespace

Tensor on_activation_lattice(const Tensor& out, ActivationRounding rounding) {
  if (rounding == ActivationRounding::inside_op && in_backward()) return out;
  Quantizer q = current_precision().activations;
  if (is_identity(q) || out.dtype() != DType::float32) return out;
  if (rounding == ActivationRounding::recorded) {
    const Tensor rounded = quantize(out, q, next_random_stream());
    observe_quantizer(QuantizerSite::activation, q, out, rounded);
    return rounded;
  }
  if (q.scaling) q.scaling->axis = -1;
  const Tensor rounded = quantized_values(out, q, next_random_stream());
  observe_quantizer(QuantizerSite::activation, q, out, rounded);
  return rounded;
}

const char* site_name(QuantizerSite site) {
  switch (site) {
    case QuantizerSite::gemm_input:
      return "gemm.x";
    case QuantizerSite::gemm_weight:
      return "gemm.w";
    case QuantizerSite::gemm_output_grad:
      return "gemm.dy";
    case QuantizerSite::gemm_saved_input:
      return "gemm.bwd.x";
    case QuantizerSite::gemm_saved_weight:
      return "gemm.bwd.w";
    case QuantizerSite::activation:
      return "a";
    case QuantizerSite::gradient:
      return "g";
    case QuantizerSite::weight:
      return "w";
  }
  return "?";
}

QuantizerObserver set_quantizer_observer(QuantizerObserver observer) {
  return std::exchange(quantizer_observer, std::move(observer));
}

void observe_quantizer(QuantizerSite site,
                       const Quantizer& q,
                       const Tensor& input,
                       const Tensor& output) {
  if (quantizer_observer) quantizer_observer(site, q, input, output);
}

void quantize_operand(const Quantizer& q,
                      const GemmRecipe& recipe,
                      std::span<const float> x,
                      std::span<float> y,
                      std::span<const int64_t> shape,
                      const RandomStream& random) {
  quantize_operand_on(Device::cpu, q, recipe, x, y, shape, random);
}

void quantizer_gradient(const Quantizer& q,
                        const GemmRecipe& recipe,
                        std::span<const float> x,
                        std::span<const float> grad_y,
                        std::span<float> grad_x,
                        std::span<const int64_t> shape,
                        const RandomStream& random) {
  quantizer_gradient_on(Device::cpu, q, recipe, x, grad_y, grad_x, shape, random);
}

void random_hadamard(std::span<float> x,
                     std::span<const int64_t> shape,
                     int axis,
                     int block,
                     const RandomStream& signs,
                     bool inverse) {
  hadamard_on(Device::cpu, x, shape, axis, block, signs, inverse);
}

bool bf16_products(const Tensor& a, const Tensor& b) {
  return gemm_path_setting() != GemmPath::exact_fp32 && bf16_operand(a, Quantizer{}) &&
         bf16_operand(b, Quantizer{});
}

void set_gemm_path(GemmPath path) {
  gemm_path_setting() = path;
}

GemmPath gemm_path() {
  return gemm_path_setting();
}

GemmPath parse_gemm_path(const std::string& text) {
  if (text == "auto") return GemmPath::automatic;
  if (text == "exact-fp32") return GemmPath::exact_fp32;
  if (text == "fp8-blocks") return GemmPath::fp8_blocks;
  throw Error(
      concat("[gemm] unknown GEMM path \"", text, "\" (expected auto, exact-fp32 or fp8-blocks)"));
}

std::string describe_gemm_path(Device device) {
  std::string paths = fp8_gemm_runs() ? "block-scaled fp8 for MX operands, " : "";
  if (bf16_gemm_runs(device)) paths += "bf16 for bf16 operands, ";
  return paths.empty() ? "fp32" : paths + "else fp32";
}

Tensor matmul(const Tensor& a, const Tensor& b) {
  LATTICE_CHECK(a.rank() >= 1 && b.rank() >= 1, "[matmul] operands need rank >= 1, got ", a.shape(),
                " @ ", b.shape());
  LATTICE_CHECK(a.shape(-1) == b.shape(b.rank() == 1 ? 0 : -2),
                "[matmul] inner dimensions differ: ", a.shape(), " @ ", b.shape());
  // PyTorch's promotion of a vector: a (K) is the matrix (1, K), b (K) the matrix (K, 1), and the
  // axis added is removed from the product (views, so autograd runs through them).
  if (a.rank() == 1 || b.rank() == 1) {
    Tensor product = matmul(a.rank() == 1 ? a.unsqueeze(0) : a, b.rank() == 1 ? b.unsqueeze(1) : b);
    if (b.rank() == 1) product = product.squeeze(-1);
    if (a.rank() == 1) product = product.squeeze(b.rank() == 1 ? -1 : -2);
    return product;
  }
  LATTICE_CHECK(a.dtype() == b.dtype(), "[matmul] operands are ", dtype_name(a.dtype()), " and ",
                dtype_name(b.dtype()));
  const QuantizedGemm gemm = QuantizedGemm::current();
  if (!(gemm.quantizers.recipe == GemmRecipe{}) && a.dtype() == DType::float32)
    return recipe_matmul(a, b, gemm.quantizers, gemm.accumulator);
  const Tensor out = gemm.product(a, b);
  // Only the gradients some input needs are computed (a network's first layer needs no dgrad).
  const bool need_da = requires_grad(a), need_db = requires_grad(b);
  record_op("matmul", out, {a, b},
            [a = detach(a), b = detach(b), gemm, need_da, need_db](const Tensor& g) {
              // The engine sums broadcast batch axes away.
              return std::vector<Tensor>{need_da ? gemm.input_gradient(g, b) : Tensor{},
                                         need_db ? gemm.weight_gradient(g, a, b) : Tensor{}};
            });
  return out;
}

QuantizedGemm QuantizedGemm::current() {
  // Identity while a backward runs: the GEMMs of backward rules are not quantized again.
  return in_backward() ? QuantizedGemm{}
                       : QuantizedGemm{current_precision().gemm, current_precision().accumulator};
}

Tensor QuantizedGemm::product(const Tensor& a, const Tensor& b) const {
  const GemmQuantizers& q = quantizers;
  // w's stream is drawn before x's (as GCC evaluated them when they were arguments of one
  // call), and so below, so that seeded runs keep their bits.
  const PendingOperand wq = pending_operand(b, q.weight, -2, QuantizerSite::gemm_weight);
  const PendingOperand xq = pending_operand(a, q.input, -1, QuantizerSite::gemm_input);
  const Tensor out = on_activation_lattice(
      accumulated_product(xq, wq, accumulator, operand_lattices(a, q.input, b, q.weight)));
  trace_matmul("matmul", a, q.input, b, q.weight, out, accumulator);
  return out;
}

namespace {

/// The dgrad's operands of a @ b for the gradient g: g and b quantized along N, b's stream
/// drawn first, as in QuantizedGemm::product.
std::pair<PendingOperand, PendingOperand> dgrad_operands(const GemmQuantizers& q,
                                                         const Tensor& g,
                                                         const Tensor& b) {
  const PendingOperand wq =
      pending_operand(b, q.saved_weight, -1, QuantizerSite::gemm_saved_weight);
  const PendingOperand gq = pending_operand(g, q.output_grad, -1, QuantizerSite::gemm_output_grad);
  return {gq, wq};
}

}  // namespace

QuantizedGemm::DgradOperands QuantizedGemm::input_gradient_operands(const Tensor& g,
                                                                    const Tensor& b) const {
  const GemmQuantizers& q = quantizers;
  const auto [gq, wq] = dgrad_operands(q, g, b);
  return {gq.quantized(), wq.quantized(),
          operand_lattices(g, q.output_grad, b, q.saved_weight).bf16 &&
              gemm_path_setting() != GemmPath::exact_fp32};
}

Tensor QuantizedGemm::input_gradient(const Tensor& g, const Tensor& b) const {
  const GemmQuantizers& q = quantizers;
  const auto [gq, wq] = dgrad_operands(q, g, b);
  // dA = g @ B^T, reducing over N.
  const Tensor da = accumulated_product(gq, wq.transposed(), accumulator,
                                        operand_lattices(g, q.output_grad, b, q.saved_weight));
  trace_matmul("matmul.dgrad", g, q.output_grad, b, q.saved_weight, da, accumulator);
  return da;
}

Tensor QuantizedGemm::weight_gradient(const Tensor& g, const Tensor& a, const Tensor& b) const {
  const GemmQuantizers& q = quantizers;
  const PendingOperand grad =
      pending_operand(g, q.output_grad, -2, QuantizerSite::gemm_output_grad);
  const PendingOperand saved =
      pending_operand(a, q.saved_input, -2, QuantizerSite::gemm_saved_input);
  const OperandLattices lattices = operand_lattices(a, q.saved_input, g, q.output_grad);
  // dB = A^T @ g, reducing over M. A transposed B (a Linear layer's w.t(), attention's k^T) gets
  // its gradient in its own layout, (g^T @ A)^T: packed, the view hands it to w or k without a
  // transposing copy (PyTorch's mm backward does the same).
  const Tensor db =
      transposed_matrices(b, a.rank())
          ? accumulated_product(grad.transposed(), saved, accumulator, swapped(lattices))
                .transpose(-1, -2)
          : accumulated_product(saved.transposed(), grad, accumulator, lattices);
  trace_matmul("matmul.wgrad", a, q.saved_input, g, q.output_grad, db, accumulator);
  return db;
}

Tensor quantize(const Tensor& x,
                const Quantizer& q,
                const RandomStream& random,
                const QuantizerBackward& backward) {
  const Tensor out = quantized_values(x, q, random);
  trace_op(
      "quantize", [&] { return std::vector<std::string>{describe_for_trace(x)}; }, out);
  if (backward) {
    record_op("quantize", out, {x}, [backward, x = detach(x), y = detach(out)](const Tensor& g) {
      return std::vector<Tensor>{backward(g, x, y)};
    });
  } else {
    record_op("quantize", out, {x}, [](const Tensor& g) { return std::vector<Tensor>{g}; });
  }
  return out;
}

QuantizerBackward gradient_estimator(const Quantizer& q,
                                     const GemmRecipe& recipe,
                                     const RandomStream& random) {
  return [operand = RecipeOperand{q, random}, recipe](const Tensor& g, const Tensor& x,
                                                      const Tensor&) {
    return estimated_gradient(g, x, operand, recipe);
  };
}

Tensor cast(const Tensor& x,
            const Format& format,
            const Rounding& rounding,
            const RandomStream& random) {
  return quantize(x, Quantizer{format, rounding, std::nullopt}, random);
}

}  // namespace lattice
