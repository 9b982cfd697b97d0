// CPU quantizer-gradient kernels: the step/scale surrogate derivatives and the estimators of a
// block quantizer's gradient. Each block's maximum (smooth under softsoftmax) and scale come
// from the scalar math, the forward quantization from the block quantize kernel given those
// maxima (bit for bit the same values and random words), and the estimators run block by
// block. The surrogates and per-block scalars are kernels/quantizer_gradient_math.h, shared
// with the CUDA twins.
#include <algorithm>
#include <cmath>
#include <span>
#include <vector>

#include "core/scalar/block.h"
#include "core/scalar/round.h"
#include "kernels/cpu/parallel.h"
#include "kernels/quantize.h"
#include "kernels/quantizer_gradient.h"
#include "kernels/quantizer_gradient_math.h"

namespace lattice {

double step_derivative(StepGradient mode, double u, const Format& element) {
  return step_derivative(mode, u, make_staircase(element));
}

double scale_derivative(ScaleGradient mode, double v, const Format& scale_format) {
  return scale_derivative(mode, v, make_staircase(scale_format));
}

namespace {

/// The flat indices of one block's elements, first + r * stride for r < rows, as a range.
struct BlockSpan {
  int64_t first, rows, stride;

  size_t size() const {
    return size_t(rows);
  }
  int64_t operator[](size_t r) const {
    return first + int64_t(r) * stride;
  }
  struct Iterator {
    int64_t k, stride;
    int64_t operator*() const {
      return k;
    }
    Iterator& operator++() {
      k += stride;
      return *this;
    }
    bool operator!=(const Iterator& other) const {
      return k != other.k;
    }
  };
  Iterator begin() const {
    return {first, stride};
  }
  Iterator end() const {
    return {first + rows * stride, stride};
  }
};

/// One operand quantization rebuilt with the kernels' scalar math and random words, keeping
/// what the estimators need.
class BlockPass {
 public:
  BlockPass(const Format& element,
            const Rounding& rounding,
            const BlockScaling& scaling,
            const GemmRecipe& recipe,
            std::span<const float> x,
            const BlockLayout& layout,
            const RandomStream& random)
      : element_(element),
        rounding_(rounding),
        s_(scaling),
        recipe_(recipe),
        x_(x),
        random_(random),
        layout_(layout) {
    // As quantize_blocks_cpu: the tensor amax only where a tensor scale uses it.
    uint32_t amax_bits = 0;
    const int64_t n = int64_t(x.size());
    if (has_tensor_scale()) {
#pragma omp parallel for simd reduction(max : amax_bits) if (n > kParallelMin)
      for (int64_t i = 0; i < n; ++i)
        amax_bits = std::max(amax_bits, finite_magnitude_bits(x[size_t(i)]));
    }
    tensor_amax_ = float_from_bits(amax_bits);
    plan_ = make_block_plan(element, rounding, s_, tensor_amax_);
  }

  int64_t block_count() const {
    return layout_.block_count();
  }
  /// The largest finite magnitude, where a tensor scale uses it (has_tensor_scale), else 0.
  float tensor_amax() const {
    return tensor_amax_;
  }
  /// Whether the elements are divided by a tensor scale g = max|x| / divisor (nvfp4: s_dec,
  /// encode with ts: g).
  bool has_tensor_scale() const {
    return s_.rule == ScaleRule::nvfp4 || (s_.rule == ScaleRule::encode && s_.tensor_scale);
  }

  /// Flat indices of block b's elements (b as the kernels number blocks).
  BlockSpan span(int64_t b) const {
    const int64_t per_column = layout_.blocks_per_column(), inner = layout_.inner;
    const int64_t slab = b / inner, i = b % inner;
    const int64_t o = slab / per_column, j = slab % per_column;
    const int64_t rows = std::min(layout_.block_size, layout_.length - j * layout_.block_size);
    return {(o * layout_.length + j * layout_.block_size) * inner + i, rows, inner};
  }

  struct Block {
    uint32_t hard_max_bits;  // largest magnitude bits, specials included
    float amax;              // the max the scale is computed from (smooth under softsoftmax)
    float scale;             // rounded scale, as the kernels store it
    double unrounded;        // the scale before rounding onto the scale format
  };

  /// The maximum a block's scale is computed from (smooth under softsoftmax); its largest
  /// magnitude's bits go to hard_max_bits.
  float block_max(const BlockSpan& index, uint32_t& hard_max_bits) const {
    hard_max_bits = 0;
    for (int64_t k : index) hard_max_bits = std::max(hard_max_bits, magnitude_bits(k));
    const float hard_max = float_from_bits(hard_max_bits);
    if (recipe_.max_approx != MaxApprox::softsoftmax || hard_max_bits == 0 ||
        hard_max_bits >= 0x7F800000u)
      return hard_max;
    double total = 0.0;
    for (int64_t k : index) total += std::exp(recipe_.alpha * (std::abs(x_[k]) - hard_max));
    return float(hard_max + std::log(total) / recipe_.alpha);
  }

  Block block(int64_t b, const BlockSpan& index) const {
    Block out{};
    out.amax = block_max(index, out.hard_max_bits);
    const uint32_t scale_word =
        s_.scale_rounding == RoundingMode::stochastic ? random_.fork().word(uint64_t(b)) : 0u;
    out.scale = block_scale(float_bits(out.amax), plan_, scale_word);
    out.unrounded = unrounded_block_scale(out.amax, plan_);
    return out;
  }

  /// Element k's scaled value u, before element rounding, in a block with scale `scale`.
  float scaled(int64_t k, float scale) const {
    return scaled_element(x_[size_t(k)], scale, plan_);
  }

  /// The quantization itself, x_hat of every element, by the block quantize kernel with each
  /// block's maximum (block_max): the same values and random draws as element by element.
  /// block_amax: (block_count()); x_hat: (n).
  void quantize(const float* block_amax, float* x_hat) const {
    quantize_blocks_given_amax_cpu(x_.data(), x_hat, layout_, element_, rounding_, s_, random_,
                                   block_amax, tensor_amax_);
  }

  const BlockScaling& scaling() const {
    return s_;
  }

 private:
  uint32_t magnitude_bits(int64_t k) const {
    return float_bits(x_[size_t(k)]) & 0x7FFFFFFFu;
  }

  const Format& element_;
  const Rounding& rounding_;
  const BlockScaling& s_;
  const GemmRecipe& recipe_;
  std::span<const float> x_;
  RandomStream random_;
  BlockLayout layout_;
  BlockPlan plan_;
  float tensor_amax_ = 0.0f;
};

}  // namespace

void recipe_quantize_blocks_cpu(const float* x,
                                float* y,
                                const BlockLayout& layout,
                                const Format& element,
                                const Rounding& rounding,
                                const BlockScaling& scaling,
                                const GemmRecipe& recipe,
                                const RandomStream& random) {
  // Each block's maximum (smooth under softsoftmax), then the block quantize kernel's loops.
  const int64_t n = layout.outer * layout.length * layout.inner;
  const BlockPass pass(element, rounding, scaling, recipe, std::span<const float>(x, size_t(n)),
                       layout, random);
  const int64_t blocks = pass.block_count();
  std::vector<float> block_amax(static_cast<size_t>(blocks));
#pragma omp parallel if (n > kParallelMin)
  {
    uint32_t hard_max_bits;
#pragma omp for schedule(static)
    for (int64_t b = 0; b < blocks; ++b) {
      block_amax[size_t(b)] = pass.block_max(pass.span(b), hard_max_bits);
    }
  }
  pass.quantize(block_amax.data(), y);
}

void quantizer_gradient_elementwise_cpu(const float* x,
                                        const float* grad_y,
                                        float* grad_x,
                                        int64_t n,
                                        const Format& element,
                                        const GemmRecipe& recipe) {
  if (recipe.straight_through()) {
    std::copy(grad_y, grad_y + n, grad_x);
    return;
  }
  const Staircase staircase = make_staircase(element);  // only the step surrogate applies, at u = x
  for (int64_t k = 0; k < n; ++k)
    grad_x[k] = float(step_derivative(recipe.step_gradient, x[k], staircase) * grad_y[k]);
}

void quantizer_gradient_blocks_cpu(const float* x_data,
                                   const float* grad_y_data,
                                   float* grad_x_data,
                                   const BlockLayout& layout,
                                   const Format& element_format,
                                   const Rounding& rounding,
                                   const BlockScaling& scaling,
                                   const GemmRecipe& recipe,
                                   const RandomStream& random) {
  const size_t n = size_t(layout.outer * layout.length * layout.inner);
  const std::span<const float> x(x_data, n), grad_y(grad_y_data, n);
  const std::span<float> grad_x(grad_x_data, n);
  if (recipe.straight_through()) {
    std::copy(grad_y.begin(), grad_y.end(), grad_x.begin());
    return;
  }
  const Staircase element = make_staircase(element_format);
  const BlockPass pass(element_format, rounding, scaling, recipe, x, layout, random);
  const Staircase scale = make_staircase(pass.scaling().scale_format);
  // Tensor-scale term (§4.7): dx_hat_i/dg_raw = (x_hat_i - Q'(u_i) x_i) / g_raw with g
  // treated as independent of the block scales, as the reference does.
  const double g_raw = pass.tensor_amax();
  const bool tensor_term = recipe.tensor_scale_gradient != TensorScaleGradient::ignore &&
                           pass.has_tensor_scale() && g_raw > 0.0;
  double tensor_sum = 0.0;  // sum_i G_i (x_hat_i - Q'_i x_i) / g_raw, for absmax
  std::vector<double> tensor_terms;
  if (tensor_term) tensor_terms.assign(x.size(), 0.0);

  // Each block's maxima and scales, then the forward quantization by the block kernel, then
  // the estimators block by block. Blocks are independent; the tensor-scale sum is kept per
  // block and added in block order, so the result does not depend on the thread count.
  const int64_t blocks = pass.block_count();
  std::vector<BlockPass::Block> block_of(static_cast<size_t>(blocks));
  std::vector<float> block_amax(static_cast<size_t>(blocks));
  std::vector<float> quantized(x.size());
  std::vector<double> block_tensor_sums(tensor_term ? size_t(blocks) : 0, 0.0);
#pragma omp parallel if (int64_t(x.size()) > kParallelMin)
  {
#pragma omp for schedule(static)
    for (int64_t b = 0; b < blocks; ++b) {
      block_of[size_t(b)] = pass.block(b, pass.span(b));
      block_amax[size_t(b)] = block_of[size_t(b)].amax;
    }
  }
  pass.quantize(block_amax.data(), quantized.data());
#pragma omp parallel if (int64_t(x.size()) > kParallelMin)
  {
    std::vector<double> derivative, x_hat, exps;
#pragma omp for schedule(static)
    for (int64_t b = 0; b < blocks; ++b) {
      const BlockSpan index = pass.span(b);
      const BlockPass::Block& block = block_of[size_t(b)];
      if (std::isnan(block.scale)) {  // a block holding NaN or inf: nothing to estimate
        for (int64_t k : index) grad_x[size_t(k)] = grad_y[size_t(k)];
        continue;
      }
      derivative.resize(index.size());
      x_hat.resize(index.size());
      for (size_t i = 0; i < index.size(); ++i) {
        x_hat[i] = quantized[size_t(index[i])];
        derivative[i] =
            step_derivative(recipe.step_gradient, pass.scaled(index[i], block.scale), element);
        const size_t k = size_t(index[i]);
        grad_x[k] = float(derivative[i] * grad_y[k]);
        if (tensor_term) {
          tensor_terms[k] = grad_y[k] * (x_hat[i] - derivative[i] * x[k]) / g_raw;
          block_tensor_sums[size_t(b)] += tensor_terms[k];
        }
      }
      if (recipe.max_approx == MaxApprox::ste || block.amax == 0.0f) continue;
      // Max term (§4.4), re-derived rather than transcribed: with x_hat_i = Q(x_i m) / m and
      // the multiplier m a function of the rounded scale r = R(r_hat(amax)),
      //   dx_hat_i/damax = -(Q'_i x_i - x_hat_i) R'(r_hat) (r_hat / r) / amax
      // for every rule (mx, nvfp4 and encode alike), and damax/dx_j = w_j below.
      double block_sum = 0.0;
      for (size_t i = 0; i < index.size(); ++i)
        block_sum += grad_y[size_t(index[i])] * (derivative[i] * x[size_t(index[i])] - x_hat[i]);
      const double coefficient = -scale_derivative(recipe.scale_gradient, block.unrounded, scale) *
                                 (block.unrounded / block.scale) / block.amax * block_sum;
      if (recipe.max_approx == MaxApprox::absmax) {
        // The hard max's gradient, shared equally by ties (as lattice::max).
        int ties = 0;
        for (int64_t k : index)
          ties += (float_bits(x[size_t(k)]) & 0x7FFFFFFFu) == block.hard_max_bits;
        for (int64_t k : index)
          if ((float_bits(x[size_t(k)]) & 0x7FFFFFFFu) == block.hard_max_bits)
            grad_x[size_t(k)] += float(signum(x[size_t(k)]) * coefficient / ties);
      } else {
        // softmax(alpha |x|) sign(x): the exact gradient of the smooth max (softsoftmax), used
        // as a surrogate for the hard max (hardsoftmax).
        const double top = float_from_bits(block.hard_max_bits);
        double total = 0.0;
        exps.resize(index.size());
        for (size_t i = 0; i < index.size(); ++i)
          total += exps[i] = std::exp(recipe.alpha * (std::abs(x[size_t(index[i])]) - top));
        for (size_t i = 0; i < index.size(); ++i) {
          const size_t k = size_t(index[i]);
          grad_x[k] += float(signum(x[k]) * (exps[i] / total) * coefficient);
        }
      }
    }
  }
  if (!tensor_term) return;
  for (double partial : block_tensor_sums) tensor_sum += partial;
  if (recipe.tensor_scale_gradient == TensorScaleGradient::ste) {
    // Straight-through of g_raw = max|x|: each element is treated as the max for its own term.
    for (size_t k = 0; k < x.size(); ++k) grad_x[k] += float(signum(x[k]) * tensor_terms[k]);
    return;
  }
  int ties = 0;
  for (float v : x) ties += std::abs(v) == float(g_raw);
  for (size_t k = 0; k < x.size(); ++k)
    if (std::abs(x[k]) == float(g_raw)) grad_x[k] += float(signum(x[k]) * tensor_sum / ties);
}

}  // namespace lattice
