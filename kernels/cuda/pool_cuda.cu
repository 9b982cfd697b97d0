// CUDA pooling and upsampling: device twins of kernels/cpu/pool_cpu.cpp, bit for bit. A thread
// per window walks its taps in the CPU's order with the same max step (kernels/pool.h). The
// backward finds each window's first maximum, then gives each pixel one thread that adds the
// gradients of the windows that picked it in window order (the CPU's order; no atomics).
#include "kernels/cuda/runtime.h"
#include "kernels/device_memory.h"
#include "kernels/pool.h"

namespace lattice {
namespace {

using cuda::grid_for;
using cuda::kThreads;

// x: (planes, height, width), maxima: (planes, out_h, out_w). One thread per window of taps
// dilation_h (dilation_w) apart; taps outside the image are skipped and the running maximum
// starts at the window's first pixel inside it, as on the CPU.
template <typename T>
__global__ void max_pool_kernel(const T* x, T* maxima, int64_t planes, Window g) {
  const int64_t n = planes * g.positions();
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < n;
       k += int64_t(gridDim.x) * blockDim.x) {
    const int64_t ow = k % g.out_w, oh = (k / g.out_w) % g.out_h, p = k / g.positions();
    const T* image = x + p * g.height * g.width;
    const int64_t top = oh * g.stride_h - g.padding_h, left = ow * g.stride_w - g.padding_w;
    T current =
        image[first_tap_inside(top, g.dilation_h) * g.width + first_tap_inside(left, g.dilation_w)];
    for (int64_t i = 0; i < g.kernel_h; ++i) {
      const int64_t ih = top + i * g.dilation_h;
      if (ih < 0 || ih >= g.height) continue;
      for (int64_t j = 0; j < g.kernel_w; ++j) {
        const int64_t iw = left + j * g.dilation_w;
        if (iw >= 0 && iw < g.width) current = max_pool_step(image[ih * g.width + iw], current);
      }
    }
    maxima[k] = current;
  }
}

// x: (planes, height, width), maxima: (planes, out_h, out_w) -> best: (planes, out_h, out_w),
// the in-plane position of each window's first pixel (row-major window order) equal to its
// maximum, or its last NaN when the maximum is NaN (PyTorch's pick, as on the CPU); -1 when
// none matches.
template <typename T>
__global__ void max_pool_argmax_kernel(
    const T* x, const T* maxima, int32_t* best, int64_t planes, Window g) {
  const int64_t n = planes * g.positions();
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < n;
       k += int64_t(gridDim.x) * blockDim.x) {
    const int64_t ow = k % g.out_w, oh = (k / g.out_w) % g.out_h, p = k / g.positions();
    const T* image = x + p * g.height * g.width;
    const int64_t top = oh * g.stride_h - g.padding_h, left = ow * g.stride_w - g.padding_w;
    const T m = maxima[k];
    // A maximum that is a number ends the search at its first match; a NaN one goes on to the
    // last NaN.
    const bool last_match = m != m;
    int32_t found = -1;
    for (int64_t i = 0; i < g.kernel_h && (found < 0 || last_match); ++i) {
      const int64_t ih = top + i * g.dilation_h;
      if (ih < 0 || ih >= g.height) continue;
      for (int64_t j = 0; j < g.kernel_w; ++j) {
        const int64_t iw = left + j * g.dilation_w;
        if (iw >= 0 && iw < g.width && max_pool_matches(image[ih * g.width + iw], m)) {
          found = int32_t(ih * g.width + iw);
          if (!last_match) break;
        }
      }
    }
    best[k] = found;
  }
}

// The first and last output positions (along one axis of `positions`) whose window spanning
// `span` pixels from o * stride - padding covers pixel `at` (with dilation a window in that
// range may step over it; those never picked it, so the caller's test skips them).
__device__ __forceinline__ void covering_windows(int64_t at,
                                                 int64_t span,
                                                 int64_t stride,
                                                 int64_t padding,
                                                 int64_t positions,
                                                 int64_t& first,
                                                 int64_t& last) {
  const int64_t lowest = at + padding - span + 1;
  first = lowest <= 0 ? 0 : (lowest + stride - 1) / stride;
  last = min((at + padding) / stride, positions - 1);
}

// grad, best: (planes, out_h, out_w), dx: (planes, height, width). One thread per pixel writes
// the sum, from zero, of the gradients of the windows whose best is that pixel, in window order.
template <typename T>
__global__ void max_pool_backward_kernel(
    const int32_t* best, const T* grad, T* dx, int64_t planes, Window g) {
  const int64_t plane = g.height * g.width, n = planes * plane;
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < n;
       k += int64_t(gridDim.x) * blockDim.x) {
    const int64_t w = k % g.width, h = (k / g.width) % g.height, p = k / plane;
    int64_t oh_first, oh_last, ow_first, ow_last;
    covering_windows(h, g.dilation_h * (g.kernel_h - 1) + 1, g.stride_h, g.padding_h, g.out_h,
                     oh_first, oh_last);
    covering_windows(w, g.dilation_w * (g.kernel_w - 1) + 1, g.stride_w, g.padding_w, g.out_w,
                     ow_first, ow_last);
    const int32_t pixel = int32_t(h * g.width + w);
    const int32_t* plane_best = best + p * g.positions();
    const T* plane_grad = grad + p * g.positions();
    T total = T(0);
    for (int64_t oh = oh_first; oh <= oh_last; ++oh)
      for (int64_t ow = ow_first; ow <= ow_last; ++ow)
        if (plane_best[oh * g.out_w + ow] == pixel) total = total + plane_grad[oh * g.out_w + ow];
    dx[k] = total;
  }
}

// x: (rows, width), y: (rows, scale, width * scale). One thread per output element.
template <typename T>
__global__ void upsample_nearest_kernel(
    const T* x, T* y, int64_t rows, int64_t width, int64_t scale) {
  const int64_t out_w = width * scale, n = rows * scale * out_w;
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < n;
       k += int64_t(gridDim.x) * blockDim.x)
    y[k] = x[(k / (scale * out_w)) * width + (k % out_w) / scale];
}

}  // namespace

template <typename T>
void max_pool_planes_cuda(const T* x, T* maxima, int64_t planes, const Window& g) {
  const int64_t n = planes * g.positions();
  if (n == 0) return;
  max_pool_kernel<<<grid_for(n), kThreads, 0, cuda::stream()>>>(x, maxima, planes, g);
  LATTICE_CUDA_LAUNCHED("max_pool_planes_cuda");
}

template <typename T>
void max_pool_planes_backward_cuda(
    const T* x, const T* maxima, const T* grad, T* dx, int64_t planes, const Window& g) {
  const int64_t outputs = planes * g.positions(), pixels = planes * g.height * g.width;
  if (outputs == 0 || pixels == 0) return;
  auto* best = static_cast<int32_t*>(cuda_allocate(outputs * int64_t(sizeof(int32_t))));
  max_pool_argmax_kernel<<<grid_for(outputs), kThreads, 0, cuda::stream()>>>(x, maxima, best,
                                                                             planes, g);
  LATTICE_CUDA_LAUNCHED("max_pool_planes_backward_cuda");
  max_pool_backward_kernel<<<grid_for(pixels), kThreads, 0, cuda::stream()>>>(best, grad, dx,
                                                                              planes, g);
  LATTICE_CUDA_LAUNCHED("max_pool_planes_backward_cuda");
  cuda_free(best);
}

template <typename T>
void upsample_nearest_cuda(const T* x, T* y, int64_t rows, int64_t width, int64_t scale) {
  const int64_t n = rows * scale * width * scale;
  if (n == 0) return;
  upsample_nearest_kernel<<<grid_for(n), kThreads, 0, cuda::stream()>>>(x, y, rows, width, scale);
  LATTICE_CUDA_LAUNCHED("upsample_nearest_cuda");
}

template void max_pool_planes_cuda(const float*, float*, int64_t, const Window&);
template void max_pool_planes_cuda(const double*, double*, int64_t, const Window&);
template void max_pool_planes_backward_cuda(
    const float*, const float*, const float*, float*, int64_t, const Window&);
template void max_pool_planes_backward_cuda(
    const double*, const double*, const double*, double*, int64_t, const Window&);
template void upsample_nearest_cuda(const float*, float*, int64_t, int64_t, int64_t);
template void upsample_nearest_cuda(const double*, double*, int64_t, int64_t, int64_t);

}  // namespace lattice
