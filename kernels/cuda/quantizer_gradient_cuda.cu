// CUDA quantizer-gradient kernels: the CPU's per-block pass
// (kernels/cpu/quantizer_gradient_cpu.cpp) with one thread per block, on the shared scalar math
// (kernels/quantizer_gradient_math.h and core/scalar/). Blocks are rebuilt with the CPU's random
// words, and the tensor-scale sum is kept per block and added in block order, so results do not
// depend on the launch.
#include "core/error.h"
#include "core/scalar/bits.h"
#include "kernels/cuda/runtime.h"
#include "kernels/device_memory.h"
#include "kernels/quantizer_gradient.h"
#include "kernels/quantizer_gradient_math.h"

namespace lattice {
namespace {

using cuda::grid_for;
using cuda::kThreads;

/// One quantization as the recipe rebuilds it: the plan and what drives its rounding.
struct RecipePass {
  BlockLayout layout;
  BlockPlan plan;
  RandomStream random;
  bool stochastic_elements, stochastic_scales;
  MaxApprox max_approx;
  double alpha;
};

/// Block b's elements: k = first + r * inner for r < rows (the kernels' block numbering).
struct BlockSpan {
  int64_t first, rows, inner;
  __device__ int64_t operator[](int64_t r) const {
    return first + r * inner;
  }
};

__device__ BlockSpan block_span(const BlockLayout& layout, int64_t b) {
  const int64_t per_column = layout.blocks_per_column();
  const int64_t i = b % layout.inner, slab = b / layout.inner;
  const int64_t o = slab / per_column, j = slab % per_column;
  const int64_t rows = min(layout.block_size, layout.length - j * layout.block_size);
  return {(o * layout.length + j * layout.block_size) * layout.inner + i, rows, layout.inner};
}

struct BlockInfo {
  uint32_t hard_max_bits;  // largest magnitude bits, specials included
  float amax;              // the max the scale is computed from (smooth under softsoftmax)
  float scale;             // rounded scale
  double unrounded;        // the scale before rounding onto the scale format
};

// As BlockPass::block on the CPU.
__device__ BlockInfo block_info(const float* x,
                                const BlockSpan& span,
                                int64_t b,
                                const RecipePass& p) {
  BlockInfo out{};
  for (int64_t r = 0; r < span.rows; ++r) {
    const uint32_t bits = float_bits(x[span[r]]) & 0x7FFFFFFFu;
    out.hard_max_bits = bits > out.hard_max_bits ? bits : out.hard_max_bits;
  }
  out.amax = float_from_bits(out.hard_max_bits);
  if (p.max_approx == MaxApprox::softsoftmax && out.hard_max_bits != 0 &&
      out.hard_max_bits < 0x7F800000u) {
    double total = 0.0;
    for (int64_t r = 0; r < span.rows; ++r)
      total += std::exp(p.alpha * (std::fabs(x[span[r]]) - out.amax));
    out.amax = float(out.amax + std::log(total) / p.alpha);
  }
  const uint32_t scale_word = p.stochastic_scales ? p.random.fork().word(uint64_t(b)) : 0u;
  out.scale = block_scale(float_bits(out.amax), p.plan, scale_word);
  out.unrounded = unrounded_block_scale(out.amax, p.plan);
  return out;
}

// As BlockPass::element: x_hat of element k, its scaled value in u.
__device__ float block_element(
    const float* x, int64_t k, float scale, const RecipePass& p, double& u) {
  u = scaled_element(x[k], scale, p.plan);
  const uint32_t word = p.stochastic_elements ? p.random.word(uint64_t(k)) : 0u;
  return quantize_in_block(x[k], scale, p.plan, word);
}

// x: (n); amax_bits: () — the largest finite magnitude bits.
__global__ void finite_amax_kernel(const float* x, int64_t n, unsigned int* amax_bits) {
  unsigned int local = 0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const unsigned int bits = finite_magnitude_bits(x[i]);
    local = bits > local ? bits : local;
  }
  atomicMax(amax_bits, local);
}

// x, y: (outer, length, inner) of pass.layout; one thread per block.
__global__ void recipe_quantize_blocks_kernel(const float* x, float* y, RecipePass pass) {
  const int64_t blocks = pass.layout.block_count();
  for (int64_t b = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; b < blocks;
       b += int64_t(gridDim.x) * blockDim.x) {
    const BlockSpan span = block_span(pass.layout, b);
    const BlockInfo block = block_info(x, span, b, pass);
    double u;
    for (int64_t r = 0; r < span.rows; ++r)
      y[span[r]] = block_element(x, span[r], block.scale, pass, u);
  }
}

// x, grad_y, grad_x: (n)
__global__ void gradient_elementwise_kernel(const float* x,
                                            const float* grad_y,
                                            float* grad_x,
                                            int64_t n,
                                            StepGradient mode,
                                            Staircase element) {
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < n;
       k += int64_t(gridDim.x) * blockDim.x)
    grad_x[k] = float(step_derivative(mode, x[k], element) * grad_y[k]);
}

/// The recipe's estimators for one gradient pass.
struct Estimators {
  StepGradient step;
  ScaleGradient scale;
  Staircase element_staircase, scale_staircase;
  bool tensor_term;  // the tensor-scale term applies
  double g_raw;      // the tensor amax
};

// x, grad_y, grad_x, tensor_terms: (outer, length, inner) of pass.layout; block_tensor_sums:
// (blocks). One thread per block: the step term, the tensor-scale terms and the block's max
// term, as the CPU's block loop.
__global__ void gradient_blocks_kernel(const float* x,
                                       const float* grad_y,
                                       float* grad_x,
                                       double* tensor_terms,
                                       double* block_tensor_sums,
                                       RecipePass pass,
                                       Estimators est) {
  const int64_t blocks = pass.layout.block_count();
  for (int64_t b = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; b < blocks;
       b += int64_t(gridDim.x) * blockDim.x) {
    const BlockSpan span = block_span(pass.layout, b);
    const BlockInfo block = block_info(x, span, b, pass);
    if (isnan(block.scale)) {  // a block holding NaN or inf: nothing to estimate
      for (int64_t r = 0; r < span.rows; ++r) grad_x[span[r]] = grad_y[span[r]];
      continue;
    }
    double block_tensor_sum = 0.0;
    for (int64_t r = 0; r < span.rows; ++r) {
      const int64_t k = span[r];
      double u;
      const double x_hat = block_element(x, k, block.scale, pass, u);
      const double derivative = step_derivative(est.step, u, est.element_staircase);
      grad_x[k] = float(derivative * grad_y[k]);
      if (est.tensor_term) {
        tensor_terms[k] = grad_y[k] * (x_hat - derivative * x[k]) / est.g_raw;
        block_tensor_sum += tensor_terms[k];
      }
    }
    if (est.tensor_term) block_tensor_sums[b] = block_tensor_sum;
    if (pass.max_approx == MaxApprox::ste || block.amax == 0.0f) continue;
    // The max term (see the CPU kernel for its derivation).
    double block_sum = 0.0;
    for (int64_t r = 0; r < span.rows; ++r) {
      const int64_t k = span[r];
      double u;
      const double x_hat = block_element(x, k, block.scale, pass, u);
      const double derivative = step_derivative(est.step, u, est.element_staircase);
      block_sum += grad_y[k] * (derivative * x[k] - x_hat);
    }
    const double coefficient = -scale_derivative(est.scale, block.unrounded, est.scale_staircase) *
                               (block.unrounded / block.scale) / block.amax * block_sum;
    if (pass.max_approx == MaxApprox::absmax) {
      int ties = 0;
      for (int64_t r = 0; r < span.rows; ++r)
        ties += (float_bits(x[span[r]]) & 0x7FFFFFFFu) == block.hard_max_bits;
      for (int64_t r = 0; r < span.rows; ++r) {
        const int64_t k = span[r];
        if ((float_bits(x[k]) & 0x7FFFFFFFu) == block.hard_max_bits)
          grad_x[k] += float(signum(x[k]) * coefficient / ties);
      }
    } else {
      const double top = float_from_bits(block.hard_max_bits);
      double total = 0.0;
      for (int64_t r = 0; r < span.rows; ++r)
        total += std::exp(pass.alpha * (std::fabs(x[span[r]]) - top));
      for (int64_t r = 0; r < span.rows; ++r) {
        const int64_t k = span[r];
        const double weight = std::exp(pass.alpha * (std::fabs(x[k]) - top)) / total;
        grad_x[k] += float(signum(x[k]) * weight * coefficient);
      }
    }
  }
}

// x, grad_x, tensor_terms: (n). Straight-through of g_raw = max|x|: each element is treated as
// the max for its own term.
__global__ void tensor_term_ste_kernel(const float* x,
                                       float* grad_x,
                                       const double* tensor_terms,
                                       int64_t n) {
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < n;
       k += int64_t(gridDim.x) * blockDim.x)
    grad_x[k] += float(signum(x[k]) * tensor_terms[k]);
}

// block_tensor_sums: (blocks); tensor_sum: () — added in block order by one thread.
__global__ void ordered_sum_kernel(const double* block_tensor_sums,
                                   int64_t blocks,
                                   double* tensor_sum) {
  double total = 0.0;
  for (int64_t b = 0; b < blocks; ++b) total += block_tensor_sums[b];
  *tensor_sum = total;
}

// x: (n); ties: () — how many |x_i| equal the tensor amax.
__global__ void count_ties_kernel(const float* x, int64_t n, float amax, int* ties) {
  int local = 0;
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < n;
       k += int64_t(gridDim.x) * blockDim.x)
    local += std::fabs(x[k]) == amax;
  if (local != 0) atomicAdd(ties, local);
}

// x, grad_x: (n); tensor_sum, ties: (). The hard max's gradient of g_raw, shared by ties.
__global__ void tensor_term_absmax_kernel(const float* x,
                                          float* grad_x,
                                          int64_t n,
                                          float amax,
                                          const double* tensor_sum,
                                          const int* ties) {
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < n;
       k += int64_t(gridDim.x) * blockDim.x)
    if (std::fabs(x[k]) == amax) grad_x[k] += float(signum(x[k]) * *tensor_sum / *ties);
}

bool has_tensor_scale(const BlockScaling& s) {
  return s.rule == ScaleRule::nvfp4 || (s.rule == ScaleRule::encode && s.tensor_scale);
}

/// The tensor amax (largest finite |x|) of x: (n), reduced on the device.
float tensor_amax(const float* x, int64_t n, const char* op) {
  auto* device_bits = static_cast<unsigned int*>(cuda_allocate(sizeof(unsigned int)));
  LATTICE_CUDA_CHECK(cudaMemsetAsync(device_bits, 0, sizeof(unsigned int), cuda::stream()), op);
  finite_amax_kernel<<<grid_for(n), kThreads, 0, cuda::stream()>>>(x, n, device_bits);
  LATTICE_CUDA_LAUNCHED(op);
  unsigned int bits = 0;
  copy_device_to_host(&bits, device_bits, sizeof bits);
  cuda_free(device_bits);
  return float_from_bits(bits);
}

RecipePass make_pass(float amax,
                     const BlockLayout& layout,
                     const Format& element,
                     const Rounding& rounding,
                     const BlockScaling& scaling,
                     const GemmRecipe& recipe,
                     const RandomStream& random) {
  // As quantize_blocks_cpu: the plan sees the tensor amax only where a tensor scale uses it.
  return RecipePass{
      layout,
      make_block_plan(element, rounding, scaling, has_tensor_scale(scaling) ? amax : 0.0f),
      random,
      rounding.mode == RoundingMode::stochastic,
      scaling.scale_rounding == RoundingMode::stochastic,
      recipe.max_approx,
      recipe.alpha};
}

void copy_gradient(float* grad_x, const float* grad_y, int64_t n, const char* op) {
  LATTICE_CUDA_CHECK(cudaMemcpyAsync(grad_x, grad_y, size_t(n) * sizeof(float),
                                     cudaMemcpyDeviceToDevice, cuda::stream()),
                     op);
}

}  // namespace

void recipe_quantize_blocks_cuda(const float* x,
                                 float* y,
                                 const BlockLayout& layout,
                                 const Format& element,
                                 const Rounding& rounding,
                                 const BlockScaling& scaling,
                                 const GemmRecipe& recipe,
                                 const RandomStream& random) {
  const int64_t n = layout.outer * layout.length * layout.inner;
  if (n == 0) return;
  const float amax = has_tensor_scale(scaling) ? tensor_amax(x, n, "recipe_quantize_blocks") : 0.0f;
  const RecipePass pass = make_pass(amax, layout, element, rounding, scaling, recipe, random);
  recipe_quantize_blocks_kernel<<<grid_for(layout.block_count()), kThreads, 0, cuda::stream()>>>(
      x, y, pass);
  LATTICE_CUDA_LAUNCHED("recipe_quantize_blocks");
}

void quantizer_gradient_elementwise_cuda(const float* x,
                                         const float* grad_y,
                                         float* grad_x,
                                         int64_t n,
                                         const Format& element,
                                         const GemmRecipe& recipe) {
  if (n == 0) return;
  if (recipe.straight_through()) return copy_gradient(grad_x, grad_y, n, "quantizer_gradient");
  gradient_elementwise_kernel<<<grid_for(n), kThreads, 0, cuda::stream()>>>(
      x, grad_y, grad_x, n, recipe.step_gradient, make_staircase(element));
  LATTICE_CUDA_LAUNCHED("quantizer_gradient");
}

void quantizer_gradient_blocks_cuda(const float* x,
                                    const float* grad_y,
                                    float* grad_x,
                                    const BlockLayout& layout,
                                    const Format& element,
                                    const Rounding& rounding,
                                    const BlockScaling& scaling,
                                    const GemmRecipe& recipe,
                                    const RandomStream& random) {
  const char* op = "quantizer_gradient";
  const int64_t n = layout.outer * layout.length * layout.inner;
  if (n == 0) return;
  if (recipe.straight_through()) return copy_gradient(grad_x, grad_y, n, op);
  const float amax = tensor_amax(x, n, op);
  const RecipePass pass = make_pass(amax, layout, element, rounding, scaling, recipe, random);
  // Tensor-scale term (§4.7), with g treated as independent of the block scales.
  const double g_raw = amax;
  const bool tensor_term = recipe.tensor_scale_gradient != TensorScaleGradient::ignore &&
                           has_tensor_scale(scaling) && g_raw > 0.0;
  const Estimators est{recipe.step_gradient,
                       recipe.scale_gradient,
                       make_staircase(element),
                       make_staircase(scaling.scale_format),
                       tensor_term,
                       g_raw};
  const int64_t blocks = layout.block_count();
  // Scratch: the per-element terms (zero where a block is skipped, as on the CPU), the per-block
  // sums, their total and the tie count.
  double* terms = nullptr;
  if (tensor_term) {
    terms = static_cast<double*>(cuda_allocate((n + blocks + 2) * int64_t(sizeof(double))));
    LATTICE_CUDA_CHECK(
        cudaMemsetAsync(terms, 0, size_t(n + blocks + 2) * sizeof(double), cuda::stream()), op);
  }
  double* block_sums = tensor_term ? terms + n : nullptr;
  gradient_blocks_kernel<<<grid_for(blocks), kThreads, 0, cuda::stream()>>>(
      x, grad_y, grad_x, terms, block_sums, pass, est);
  LATTICE_CUDA_LAUNCHED(op);
  if (!tensor_term) return;
  if (recipe.tensor_scale_gradient == TensorScaleGradient::ste) {
    tensor_term_ste_kernel<<<grid_for(n), kThreads, 0, cuda::stream()>>>(x, grad_x, terms, n);
    LATTICE_CUDA_LAUNCHED(op);
  } else {
    double* tensor_sum = block_sums + blocks;
    int* ties = reinterpret_cast<int*>(tensor_sum + 1);
    ordered_sum_kernel<<<1, 1, 0, cuda::stream()>>>(block_sums, blocks, tensor_sum);
    LATTICE_CUDA_LAUNCHED(op);
    count_ties_kernel<<<grid_for(n), kThreads, 0, cuda::stream()>>>(x, n, amax, ties);
    LATTICE_CUDA_LAUNCHED(op);
    tensor_term_absmax_kernel<<<grid_for(n), kThreads, 0, cuda::stream()>>>(x, grad_x, n, amax,
                                                                            tensor_sum, ties);
    LATTICE_CUDA_LAUNCHED(op);
  }
  cuda_free(terms);
}

}  // namespace lattice
