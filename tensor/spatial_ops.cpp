// Spatial ops: im2col/col2im loops over (N, C) planes, convolution as one GEMM per image and
// group over the im2col columns, pooling and upsampling. Each op records one FunctionNode whose
// backward is written with ops (col2im, im2col, matmul, sum, gather, slice), so second
// derivatives flow through them too.
#include "tensor/spatial_ops.h"

#include <cmath>
#include <limits>
#include <type_traits>

#include "autograd/autograd.h"
#include "tensor/op_support.h"
#include "tensor/ops.h"

namespace lattice {
namespace {

void check_image(const Tensor& x, const char* op, const char* what = "x") {
  LATTICE_CHECK(x.rank() == 4, "[", op, "] ", what, " must be (N, C, H, W), got ", x.shape());
}

/// A sliding window over an H x W plane and the output grid it produces.
struct Window {
  int64_t kernel_h, kernel_w, stride, padding, dilation;
  int64_t height, width, out_h, out_w;
  int64_t taps() const {
    return kernel_h * kernel_w;
  }
  int64_t positions() const {
    return out_h * out_w;
  }
};

Window plan_window(const char* op,
                   const Shape& image,
                   int64_t kernel_h,
                   int64_t kernel_w,
                   int64_t stride,
                   int64_t padding,
                   int64_t dilation) {
  LATTICE_CHECK(kernel_h >= 1 && kernel_w >= 1 && stride >= 1 && padding >= 0 && dilation >= 1, "[",
                op, "] needs kernel, stride, dilation >= 1 and padding >= 0, got kernel ", kernel_h,
                "x", kernel_w, ", stride ", stride, ", padding ", padding, ", dilation ", dilation);
  Window g{kernel_h, kernel_w, stride, padding, dilation, image[2], image[3], 0, 0};
  const int64_t span_h = dilation * (kernel_h - 1) + 1, span_w = dilation * (kernel_w - 1) + 1;
  const int64_t room_h = g.height + 2 * padding - span_h, room_w = g.width + 2 * padding - span_w;
  LATTICE_CHECK(room_h >= 0 && room_w >= 0, "[", op, "] kernel ", kernel_h, "x", kernel_w,
                " (dilation ", dilation, ") does not fit input ", image, " with padding ", padding);
  g.out_h = room_h / stride + 1;
  g.out_w = room_w / stride + 1;
  return g;
}

/// One channel: x (height, width) -> cols (taps, positions), zero outside the image.
template <typename T>
void unfold_plane(const T* x, T* cols, const Window& g) {
  const int64_t L = g.positions();
  for (int64_t i = 0; i < g.kernel_h; ++i) {
    for (int64_t j = 0; j < g.kernel_w; ++j) {
      T* row = cols + (i * g.kernel_w + j) * L;
      for (int64_t oh = 0; oh < g.out_h; ++oh) {
        T* r = row + oh * g.out_w;
        const int64_t ih = oh * g.stride - g.padding + i * g.dilation;
        if (ih < 0 || ih >= g.height) {
          for (int64_t ow = 0; ow < g.out_w; ++ow) r[ow] = T(0);
          continue;
        }
        const T* line = x + ih * g.width;
        for (int64_t ow = 0; ow < g.out_w; ++ow) {
          const int64_t iw = ow * g.stride - g.padding + j * g.dilation;
          r[ow] = iw >= 0 && iw < g.width ? line[iw] : T(0);
        }
      }
    }
  }
}

/// The adjoint of unfold_plane: x (height, width) += each column entry at its source pixel.
template <typename T>
void fold_plane(const T* cols, T* x, const Window& g) {
  const int64_t L = g.positions();
  for (int64_t i = 0; i < g.kernel_h; ++i) {
    for (int64_t j = 0; j < g.kernel_w; ++j) {
      const T* row = cols + (i * g.kernel_w + j) * L;
      for (int64_t oh = 0; oh < g.out_h; ++oh) {
        const int64_t ih = oh * g.stride - g.padding + i * g.dilation;
        if (ih < 0 || ih >= g.height) continue;
        const T* r = row + oh * g.out_w;
        T* line = x + ih * g.width;
        for (int64_t ow = 0; ow < g.out_w; ++ow) {
          const int64_t iw = ow * g.stride - g.padding + j * g.dilation;
          if (iw >= 0 && iw < g.width) line[iw] += r[ow];
        }
      }
    }
  }
}

/// im2col of a packed image batch into a packed (N, C*taps, positions) tensor (no autograd).
Tensor unfold(const Tensor& x, const Window& g) {
  NoGradGuard no_grad;  // the packed copy is an internal temporary
  const Tensor in = x.contiguous();
  const int64_t planes = x.shape(0) * x.shape(1), plane = g.height * g.width;
  const int64_t block = g.taps() * g.positions();
  Tensor cols = empty({x.shape(0), x.shape(1) * g.taps(), g.positions()}, x.dtype());
  visit_floating(x, "im2col", [&]<typename T>(std::type_identity<T>) {
    const T* src = in.data<T>();
    T* dst = cols.data<T>();
#pragma omp parallel for if (planes * block > (1 << 16))
    for (int64_t p = 0; p < planes; ++p) unfold_plane(src + p * plane, dst + p * block, g);
  });
  return cols;
}

}  // namespace

Tensor im2col(const Tensor& x,
              int64_t kernel_h,
              int64_t kernel_w,
              int64_t stride,
              int64_t padding,
              int64_t dilation) {
  check_image(x, "im2col");
  const Window g = plan_window("im2col", x.shape(), kernel_h, kernel_w, stride, padding, dilation);
  Tensor out = unfold(x, g);
  record_op("im2col", out, {x}, [g](const Tensor& grad) {
    return std::vector<Tensor>{
        col2im(grad, g.height, g.width, g.kernel_h, g.kernel_w, g.stride, g.padding, g.dilation)};
  });
  return out;
}

Tensor col2im(const Tensor& cols,
              int64_t height,
              int64_t width,
              int64_t kernel_h,
              int64_t kernel_w,
              int64_t stride,
              int64_t padding,
              int64_t dilation) {
  LATTICE_CHECK(cols.rank() == 3, "[col2im] cols must be (N, C*KH*KW, L), got ", cols.shape());
  const int64_t taps = kernel_h * kernel_w;
  LATTICE_CHECK(taps >= 1 && cols.shape(1) % taps == 0, "[col2im] cols ", cols.shape(),
                ": axis 1 is not a multiple of the kernel's ", kernel_h, "x", kernel_w, " taps");
  const int64_t N = cols.shape(0), C = cols.shape(1) / taps;
  const Window g =
      plan_window("col2im", {N, C, height, width}, kernel_h, kernel_w, stride, padding, dilation);
  LATTICE_CHECK(cols.shape(2) == g.positions(), "[col2im] cols ", cols.shape(), " has ",
                cols.shape(2), " positions, the ", height, "x", width, " image gives ", g.out_h,
                "x", g.out_w);
  Tensor out = zeros({N, C, height, width}, cols.dtype());
  {
    NoGradGuard no_grad;
    const Tensor in = cols.contiguous();
    const int64_t planes = N * C, plane = height * width, block = taps * g.positions();
    visit_floating(cols, "col2im", [&]<typename T>(std::type_identity<T>) {
      const T* src = in.data<T>();
      T* dst = out.data<T>();
#pragma omp parallel for if (planes * block > (1 << 16))
      for (int64_t p = 0; p < planes; ++p) fold_plane(src + p * block, dst + p * plane, g);
    });
  }
  record_op("col2im", out, {cols}, [g](const Tensor& grad) {
    return std::vector<Tensor>{
        im2col(grad, g.kernel_h, g.kernel_w, g.stride, g.padding, g.dilation)};
  });
  return out;
}

Tensor conv2d(const Tensor& x,
              const Tensor& w,
              const Tensor& bias,
              int64_t stride,
              int64_t padding,
              int64_t dilation,
              int64_t groups) {
  LATTICE_CHECK(x.rank() == 4 && w.rank() == 4,
                "[conv2d] x must be (N, C, H, W) and w (O, C/groups, KH, KW), got ", x.shape(),
                " and ", w.shape());
  LATTICE_CHECK(x.dtype() == w.dtype() && (!bias.defined() || bias.dtype() == x.dtype()),
                "[conv2d] x, w and bias must share one dtype, got ", dtype_name(x.dtype()), " and ",
                dtype_name(w.dtype()),
                bias.defined() ? concat(" and ", dtype_name(bias.dtype())) : "");
  const int64_t N = x.shape(0), C = x.shape(1), O = w.shape(0);
  LATTICE_CHECK(groups >= 1 && C % groups == 0 && O % groups == 0, "[conv2d] groups ", groups,
                " must divide the input channels of x ", x.shape(),
                " and the output channels of w ", w.shape());
  LATTICE_CHECK(w.shape(1) == C / groups, "[conv2d] w ", w.shape(), " expects ",
                w.shape(1) * groups, " input channels with groups ", groups, ", x ", x.shape(),
                " has ", C);
  LATTICE_CHECK(!bias.defined() || (bias.rank() == 1 && bias.shape(0) == O), "[conv2d] bias ",
                bias.shape(), " must be (", O, ") for w ", w.shape());
  const Window g =
      plan_window("conv2d", x.shape(), w.shape(2), w.shape(3), stride, padding, dilation);
  const int64_t G = groups, Og = O / G, K = w.shape(1) * g.taps(), L = g.positions();

  // Composed from differentiable ops, so the GEMM goes through matmul and with it the
  // precision stack (operands quantized along K = C/groups * taps, forward and backward):
  // y[n, group] (Og, L) = w[group] (Og, K) @ cols[n, group] (K, L).
  const Tensor cols = im2col(x, w.shape(2), w.shape(3), stride, padding, dilation);
  const Tensor y = matmul(w.reshape({G, Og, K}), cols.reshape({N, G, K, L}));
  const Tensor out = y.reshape({N, O, g.out_h, g.out_w});
  return bias.defined() ? add(out, bias.reshape({O, 1, 1})) : out;
}

namespace {

/// The window of a pooling op; padding is limited to half the kernel (as PyTorch), so every
/// window holds at least one pixel.
Window plan_pool(const char* op, const Tensor& x, int64_t kernel, int64_t stride, int64_t padding) {
  check_image(x, op);
  if (stride == 0) stride = kernel;
  LATTICE_CHECK(padding <= kernel / 2, "[", op, "] padding ", padding,
                " must be at most half the kernel ", kernel);
  return plan_window(op, x.shape(), kernel, kernel, stride, padding, 1);
}

}  // namespace

Tensor max_pool2d(const Tensor& x, int64_t kernel, int64_t stride, int64_t padding) {
  const Window g = plan_pool("max_pool2d", x, kernel, stride, padding);
  const int64_t N = x.shape(0), C = x.shape(1), planes = N * C, plane = g.height * g.width;
  // The flat position of each window's maximum; out gathers x there, so backward (gather's)
  // sends each gradient to its argmax.
  Tensor argmax = empty({N, C, g.positions()}, DType::int64);
  {
    NoGradGuard no_grad;
    const Tensor in = x.contiguous();
    visit_floating(x, "max_pool2d", [&]<typename T>(std::type_identity<T>) {
      const T* src = in.data<T>();
      int64_t* at = argmax.data<int64_t>();
#pragma omp parallel for if (planes * plane > (1 << 16))
      for (int64_t p = 0; p < planes; ++p) {
        const T* image = src + p * plane;
        int64_t* pick = at + p * g.positions();
        for (int64_t oh = 0; oh < g.out_h; ++oh)
          for (int64_t ow = 0; ow < g.out_w; ++ow) {
            int64_t best = -1;
            for (int64_t i = 0; i < kernel; ++i) {
              const int64_t ih = oh * g.stride - g.padding + i;
              if (ih < 0 || ih >= g.height) continue;
              for (int64_t j = 0; j < kernel; ++j) {
                const int64_t iw = ow * g.stride - g.padding + j;
                if (iw < 0 || iw >= g.width) continue;
                const int64_t at_ij = ih * g.width + iw;
                if (best < 0 || (!std::isnan(image[best]) &&
                                 (image[at_ij] > image[best] || std::isnan(image[at_ij]))))
                  best = at_ij;
              }
            }
            pick[oh * g.out_w + ow] = best;
          }
      }
    });
  }
  return gather(x.reshape({N, C, plane}), 2, argmax).reshape({N, C, g.out_h, g.out_w});
}

Tensor avg_pool2d(const Tensor& x, int64_t kernel, int64_t stride, int64_t padding) {
  const Window g = plan_pool("avg_pool2d", x, kernel, stride, padding);
  const int64_t N = x.shape(0), C = x.shape(1);
  // Each window's taps as a column (padding reads zeros), averaged: backward is col2im of the
  // spread gradient.
  const Tensor cols =
      im2col(x.reshape({N * C, 1, g.height, g.width}), kernel, kernel, g.stride, g.padding, 1);
  return mean(cols, {1}).reshape({N, C, g.out_h, g.out_w});
}

Tensor upsample_nearest2d(const Tensor& x, int64_t scale) {
  check_image(x, "upsample_nearest2d");
  LATTICE_CHECK(scale >= 1, "[upsample_nearest2d] scale must be >= 1, got ", scale);
  const int64_t N = x.shape(0), C = x.shape(1), H = x.shape(2), W = x.shape(3);
  Tensor out = empty({N, C, H * scale, W * scale}, x.dtype());
  {
    NoGradGuard no_grad;
    const Tensor in = x.contiguous();
    visit_floating(x, "upsample_nearest2d", [&]<typename T>(std::type_identity<T>) {
      const T* src = in.data<T>();
      T* dst = out.data<T>();
      const int64_t rows = N * C * H, out_w = W * scale;
#pragma omp parallel for if (rows * W * scale * scale > (1 << 16))
      for (int64_t r = 0; r < rows; ++r) {
        T* first = dst + r * scale * out_w;
        for (int64_t w = 0; w < W; ++w)
          for (int64_t s = 0; s < scale; ++s) first[w * scale + s] = src[r * W + w];
        for (int64_t s = 1; s < scale; ++s)
          for (int64_t c = 0; c < out_w; ++c) first[s * out_w + c] = first[c];
      }
    });
  }
  record_op("upsample_nearest2d", out, {x}, [N, C, H, W, scale](const Tensor& grad) {
    return std::vector<Tensor>{sum(grad.reshape({N, C, H, scale, W, scale}), {3, 5})};
  });
  return out;
}

Tensor pad(const Tensor& x, const std::array<int64_t, 4>& padding, double value) {
  LATTICE_CHECK(x.rank() >= 2, "[pad] x must have rank >= 2, got ", x.shape());
  const auto [left, right, top, bottom] = padding;
  const int64_t H = x.shape(-2), W = x.shape(-1);
  LATTICE_CHECK(H + top + bottom >= 0 && W + left + right >= 0, "[pad] padding {", left, ", ",
                right, ", ", top, ", ", bottom, "} crops more than x ", x.shape(), " holds");
  // Negative amounts crop first (a view, differentiable); what remains pads.
  LATTICE_CHECK(is_floating(x.dtype()), "[pad] expects float32 or float64, got ",
                dtype_name(x.dtype()));
  Tensor kept = x;
  if (top < 0 || bottom < 0)
    kept = kept.slice(-2, std::max<int64_t>(-top, 0), H - std::max<int64_t>(-bottom, 0));
  if (left < 0 || right < 0)
    kept = kept.slice(-1, std::max<int64_t>(-left, 0), W - std::max<int64_t>(-right, 0));
  const int64_t t = std::max<int64_t>(top, 0), l = std::max<int64_t>(left, 0);
  Shape shape = kept.shape();
  shape[shape.size() - 2] += t + std::max<int64_t>(bottom, 0);
  shape[shape.size() - 1] += l + std::max<int64_t>(right, 0);
  Tensor out = full(shape, value, x.dtype());
  const int64_t kept_h = kept.shape(-2), kept_w = kept.shape(-1);
  {
    NoGradGuard no_grad;
    out.slice(-2, t, t + kept_h).slice(-1, l, l + kept_w).copy_(kept);
  }
  record_op("pad", out, {kept}, [t, l, kept_h, kept_w](const Tensor& grad) {
    return std::vector<Tensor>{grad.slice(-2, t, t + kept_h).slice(-1, l, l + kept_w)};
  });
  return out;
}

}  // namespace lattice
