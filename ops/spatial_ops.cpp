// Spatial ops: patch rows (im2col's transpose) and their adjoint per image, convolution as a
// direct convolution (kernels/conv.h) or as one GEMM per group over the whole batch's patch
// rows, pooling and upsampling. Each op records one FunctionNode; backward rules are written
// with ops (col2im, im2col, matmul, sum, gather, slice) or, for the convolutions and pooling,
// with their kernels.
#include "ops/spatial_ops.h"

#include <algorithm>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/conv.h"
#include "kernels/dispatch.h"
#include "kernels/pool.h"
#include "ops/op_support.h"
#include "ops/ops.h"
#include "ops/quantized_gemm.h"
#include "tensor/precision_stack.h"
#include "tensor/tape.h"

namespace lattice {
namespace {

void check_image(const Tensor& x, const char* op, const char* what = "x") {
  LATTICE_CHECK(x.rank() == 4, "[", op, "] ", what, " must be (N, C, H, W), got ", x.shape());
}

/// "2" for an amount equal on both axes, "2x1" otherwise (for messages).
std::string describe(Size2d amount) {
  return amount.h == amount.w ? std::to_string(amount.h) : concat(amount.h, "x", amount.w);
}

/// Output positions along one axis, PyTorch's formula: floor((size + 2*padding - span) /
/// stride) + 1, or with `ceil_mode` the ceiling, less one when the last window would start in
/// the far padding (so every window starts inside the image or its leading padding).
int64_t positions_along(
    int64_t size, int64_t span, int64_t stride, int64_t padding, bool ceil_mode) {
  const int64_t room = size + 2 * padding - span;
  int64_t positions = (ceil_mode ? room + stride - 1 : room) / stride + 1;
  if (ceil_mode && (positions - 1) * stride >= size + padding) --positions;
  return positions;
}

Window plan_window(const char* op,
                   const Shape& image,
                   Size2d kernel,
                   Size2d stride,
                   Size2d padding,
                   Size2d dilation,
                   bool ceil_mode = false) {
  LATTICE_CHECK(kernel.h >= 1 && kernel.w >= 1 && stride.h >= 1 && stride.w >= 1 &&
                    padding.h >= 0 && padding.w >= 0 && dilation.h >= 1 && dilation.w >= 1,
                "[", op, "] needs kernel, stride, dilation >= 1 and padding >= 0, got kernel ",
                kernel.h, "x", kernel.w, ", stride ", describe(stride), ", padding ",
                describe(padding), ", dilation ", describe(dilation));
  const int64_t span_h = dilation.h * (kernel.h - 1) + 1, span_w = dilation.w * (kernel.w - 1) + 1;
  const int64_t height = image[2], width = image[3];
  LATTICE_CHECK(height + 2 * padding.h >= span_h && width + 2 * padding.w >= span_w, "[", op,
                "] kernel ", kernel.h, "x", kernel.w, " (dilation ", describe(dilation),
                ") does not fit input ", image, " with padding ", describe(padding));
  return Window{kernel.h,
                kernel.w,
                stride.h,
                stride.w,
                padding.h,
                padding.w,
                dilation.h,
                dilation.w,
                height,
                width,
                positions_along(height, span_h, stride.h, padding.h, ceil_mode),
                positions_along(width, span_w, stride.w, padding.w, ceil_mode)};
}

Tensor image_from_rows(const Tensor& rows, const Window& g, int64_t channels);

/// x (N, C, H, W) -> patch rows (N, positions, C * taps), images in parallel. Backward:
/// image_from_rows.
Tensor patch_rows(const Tensor& x, const Window& g) {
  const int64_t N = x.shape(0), C = x.shape(1), width = C * g.taps();
  Tensor rows = empty({N, g.positions(), width}, x.dtype(), x.device());
  {
    NoGradGuard no_grad;  // the packed copy is an internal temporary
    const Tensor in = x.contiguous();
    visit_floating(x, "im2col", [&]<typename T>(std::type_identity<T>) {
      LATTICE_DISPATCH(x.device(), unfold_images, in.data<T>(), rows.data<T>(), N, C, g);
    });
  }
  record_op("im2col", rows, {x}, [g, C](const Tensor& grad) {
    return std::vector<Tensor>{image_from_rows(grad, g, C)};
  });
  return rows;
}

/// The adjoint of patch_rows: rows (N, positions, channels * taps) -> (N, channels, H, W).
/// Backward: patch_rows.
Tensor image_from_rows(const Tensor& rows, const Window& g, int64_t channels) {
  const int64_t N = rows.shape(0);
  Tensor out = zeros({N, channels, g.height, g.width}, rows.dtype(), rows.device());
  {
    NoGradGuard no_grad;
    const Tensor in = rows.contiguous();
    visit_floating(rows, "col2im", [&]<typename T>(std::type_identity<T>) {
      LATTICE_DISPATCH(rows.device(), fold_images, in.data<T>(), out.data<T>(), N, channels, g);
    });
  }
  record_op("col2im", out, {rows},
            [g](const Tensor& grad) { return std::vector<Tensor>{patch_rows(grad, g)}; });
  return out;
}

/// A convolution's GEMM output y (N * positions, O) as images (N, O, OH, OW), plus the bias
/// (O) when defined: the bias add packs the result; without a bias, a copy.
Tensor images_from_positions(
    const Tensor& y, int64_t N, const Window& g, int64_t O, const Tensor& bias) {
  const Tensor out = y.reshape({N, g.out_h, g.out_w, O}).permute({0, 3, 1, 2});
  return bias.defined() ? add(out, bias.reshape({O, 1, 1})) : out.contiguous();
}

/// Whether conv2d runs as a direct convolution (kernels/conv.h): float32 on the CPU, or on a GPU
/// where the build has cuDNN, under a stack that quantizes none of the GEMM's operands and
/// emulates no accumulator. Its elementwise lattices apply as to any op: the output is rounded
/// onto Λa, the gradients reaching x, w and the bias onto Λg. Every other convolution goes
/// through patch rows and matmul, where the operand quantizers live.
bool direct_convolution(const Tensor& x, const Tensor& w) {
  if (x.dtype() != DType::float32 || x.numel() == 0 || w.numel() == 0) return false;
  if (x.device() != Device::cpu && !(x.device() == Device::cuda && cudnn_convolution_built()))
    return false;
  const PrecisionStack& stack = current_precision();
  return stack.gemm == GemmQuantizers{} && stack.accumulator == Accumulator{};
}

/// t as a dense float32 operand for the direct convolution: contiguous and, on the GPU, 16-byte
/// aligned (a view may start at any element; cuDNN's vectorised kernels want aligned rows).
Tensor dense_operand(const Tensor& t) {
  Tensor dense = t.contiguous();
  if (dense.device() == Device::cuda && reinterpret_cast<uintptr_t>(dense.data<float>()) % 16 != 0)
    dense = dense.clone();
  return dense;
}

/// conv2d on oneDNN's primitives (CPU) or cuDNN's (CUDA), outputs on x's device: one node whose
/// backward runs backward-data (when x needs a gradient) and backward-weights (when w or the
/// bias does; the bias gradient comes with it). A pass whose operands are bf16 values by their
/// lattices may multiply in bf16 (ConvBf16). Under a stack that rounds activations, the output is
/// rounded onto Λa before the bias is added, as an add of its own (rounded again), as the patch
/// rows' matmul and bias add do.
Tensor direct_conv2d(const Tensor& x,
                     const Tensor& w,
                     const Tensor& given_bias,
                     const ConvShape& s) {
  const Device device = x.device();
  const bool rounds_output = current_precision().activations != Quantizer{};
  const Tensor bias = rounds_output ? Tensor{} : given_bias;
  const Tensor xc = dense_operand(x), wc = dense_operand(w);
  const Tensor bc = bias.defined() ? dense_operand(bias) : Tensor{};
  Tensor out =
      empty({s.images, s.out_channels, s.window.out_h, s.window.out_w}, DType::float32, device);
  LATTICE_DISPATCH(device, conv2d_forward, s, xc.data<float>(), wc.data<float>(),
                   bias.defined() ? bc.data<float>() : nullptr, out.data<float>(),
                   ConvBf16{.forward = bf16_products(x, w)});
  out = on_activation_lattice(out);
  trace_op(
      "conv2d",
      [&] {
        return std::vector<std::string>{describe_for_trace(x), describe_for_trace(w)};
      },
      out);
  const bool need_dx = requires_grad(x), need_dw = requires_grad(w),
             need_dbias = bias.defined() && requires_grad(bias);
  std::vector<Tensor> inputs{x, w};
  if (bias.defined()) inputs.push_back(bias);
  // Each saved operand only where a gradient needs it: x for the weights' (and the bias's,
  // which comes with them), w for x's.
  const bool need_weights = need_dw || need_dbias;
  record_op("conv2d", out, inputs,
            [s, device, need_dx, need_weights, need_dbias, inputs = inputs.size(),
             x = need_weights ? detach(xc) : Tensor{},
             w = need_dx ? detach(wc) : Tensor{}](const Tensor& grad) {
              const Tensor g = dense_operand(grad);
              const ConvBf16 bf16{.backward_data = need_dx && bf16_products(grad, w),
                                  .backward_weights = need_weights && bf16_products(x, grad)};
              std::vector<Tensor> grads(inputs);
              if (need_dx)
                grads[0] = empty({s.images, s.channels, s.window.height, s.window.width},
                                 DType::float32, device);
              if (need_weights)
                grads[1] = empty(
                    {s.out_channels, s.channels / s.groups, s.window.kernel_h, s.window.kernel_w},
                    DType::float32, device);
              if (need_dbias) grads[2] = empty({s.out_channels}, DType::float32, device);
              // Undefined (not needed, not saved) tensors go to the kernel as null.
              const auto data_or_null = [](const Tensor& t) {
                return t.defined() ? t.data<float>() : nullptr;
              };
              LATTICE_DISPATCH(device, conv2d_backward, s, data_or_null(x), data_or_null(w),
                               g.data<float>(), data_or_null(grads[0]), data_or_null(grads[1]),
                               need_dbias ? grads[2].data<float>() : nullptr, bf16);
              const auto described = [](const Tensor& a, const Tensor& b) {
                return std::vector<std::string>{describe_for_trace(a), describe_for_trace(b)};
              };
              if (need_dx)
                trace_op(
                    "conv2d.dgrad", [&] { return described(g, w); }, grads[0]);
              if (need_weights)
                trace_op(
                    "conv2d.wgrad", [&] { return described(x, g); }, grads[1]);
              return grads;
            });
  return given_bias.defined() && rounds_output
             ? add(out, given_bias.reshape({s.out_channels, 1, 1}))
             : out;
}

/// conv2d over patch rows as one node, on the CPU for one group under a stack without a GEMM
/// recipe or accumulator emulation, off the fp8-blocks path (whose golden model the dgrad GEMM
/// would not show): forward, matmul's quantized GEMM of the patch rows and the
/// weight; backward, the weight's gradient as matmul computes it, and the input's as the
/// backward-data convolution of matmul's dgrad operands (dy and w, each quantized along the
/// output channels): the sums the dgrad GEMM and the fold of the patch rows' gradients made,
/// without forming those gradients (N * positions * C * taps floats).
Tensor patch_row_conv2d(const Tensor& x,
                        const Tensor& w,
                        const Tensor& bias,
                        const ConvShape& s,
                        const QuantizedGemm& gemm) {
  const Window& g = s.window;
  const int64_t N = s.images, O = s.out_channels, K = w.shape(1) * g.taps(), L = g.positions();
  Tensor rows, weights, y;
  {
    NoGradGuard no_grad;  // internal: the node recorded below stands for all of it
    rows = patch_rows(detach(x), g).reshape({N * L, K});
    weights = detach(w).reshape({O, K}).t();
    y = gemm.product(rows, weights);
  }
  const bool need_dx = requires_grad(x), need_dw = requires_grad(w);
  record_op(
      "conv2d", y, {x, w},
      [s, gemm, need_dx, weights, rows = need_dw ? rows : Tensor{},
       w_shape = w.shape()](const Tensor& grad) {
        Tensor dx, dw;
        if (need_dx) {  // first, as matmul draws dgrad's streams before wgrad's
          const QuantizedGemm::DgradOperands operands = gemm.input_gradient_operands(grad, weights);
          const Window& g = s.window;
          const Tensor dy = operands.grad.reshape({s.images, g.out_h, g.out_w, s.out_channels})
                                .permute({0, 3, 1, 2})
                                .contiguous();
          const Tensor w_oihw = operands.weight.t().contiguous();  // (O, C * taps)
          dx = empty({s.images, s.channels, g.height, g.width}, DType::float32, Device::cpu);
          conv2d_backward_cpu(s, nullptr, w_oihw.data<float>(), dy.data<float>(), dx.data<float>(),
                              nullptr, nullptr, ConvBf16{.backward_data = operands.bf16});
          trace_op(
              "conv2d.dgrad",
              [&] {
                return std::vector<std::string>{describe_for_trace(dy), describe_for_trace(w_oihw)};
              },
              dx);
        }
        if (rows.defined()) dw = gemm.weight_gradient(grad, rows, weights).t().reshape(w_shape);
        return std::vector<Tensor>{dx, dw};
      });
  return images_from_positions(y, N, g, O, bias);
}

}  // namespace

Tensor im2col(const Tensor& x,
              int64_t kernel_h,
              int64_t kernel_w,
              Size2d stride,
              Size2d padding,
              Size2d dilation) {
  check_image(x, "im2col");
  const Window g =
      plan_window("im2col", x.shape(), {kernel_h, kernel_w}, stride, padding, dilation);
  return patch_rows(x, g).transpose(1, 2);
}

Tensor col2im(const Tensor& cols,
              int64_t height,
              int64_t width,
              int64_t kernel_h,
              int64_t kernel_w,
              Size2d stride,
              Size2d padding,
              Size2d dilation) {
  LATTICE_CHECK(cols.rank() == 3, "[col2im] cols must be (N, C*KH*KW, L), got ", cols.shape());
  const int64_t taps = kernel_h * kernel_w;
  LATTICE_CHECK(taps >= 1 && cols.shape(1) % taps == 0, "[col2im] cols ", cols.shape(),
                ": axis 1 is not a multiple of the kernel's ", kernel_h, "x", kernel_w, " taps");
  const int64_t N = cols.shape(0), C = cols.shape(1) / taps;
  const Window g =
      plan_window("col2im", {N, C, height, width}, {kernel_h, kernel_w}, stride, padding, dilation);
  LATTICE_CHECK(cols.shape(2) == g.positions(), "[col2im] cols ", cols.shape(), " has ",
                cols.shape(2), " positions, the ", height, "x", width, " image gives ", g.out_h,
                "x", g.out_w);
  return image_from_rows(cols.transpose(1, 2), g, C);
}

Tensor conv2d(const Tensor& x,
              const Tensor& w,
              const Tensor& bias,
              Size2d stride,
              Size2d padding,
              Size2d dilation,
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
      plan_window("conv2d", x.shape(), {w.shape(2), w.shape(3)}, stride, padding, dilation);
  if (direct_convolution(x, w)) return direct_conv2d(x, w, bias, ConvShape{N, C, O, groups, g});
  if (const QuantizedGemm gemm = QuantizedGemm::current();
      groups == 1 && x.dtype() == DType::float32 && x.device() == Device::cpu && x.numel() > 0 &&
      w.numel() > 0 && gemm.quantizers.recipe == GemmRecipe{} &&
      gemm.accumulator == Accumulator{} && gemm_path() != GemmPath::fp8_blocks)
    return patch_row_conv2d(x, w, bias, ConvShape{N, C, O, 1, g}, gemm);
  const int64_t G = groups, Og = O / G, K = w.shape(1) * g.taps(), L = g.positions();

  // Elsewhere (a GPU, groups, a GEMM recipe, an emulated accumulator) composed from
  // differentiable ops, so the GEMM goes through matmul and with it the precision stack, exactly
  // as a Linear layer: the patch rows are the input and w the weight,
  // both quantized along K = C/groups * taps, forward and backward. One GEMM for the whole
  // batch (per group): y (N*L, Og) = rows (N*L, K) @ w[group]^T (K, Og).
  const Tensor unfolded = patch_rows(x, g);
  const Tensor weights = G == 1 ? w.reshape({O, K}).t() : w.reshape({G, Og, K}).transpose(1, 2);
  Tensor y;
  {
    // Still one op for Λg, as the direct convolution: gradients are rounded where they reach x
    // (leaving patch_rows) and w, not where the matmul hands the patch rows theirs.
    PrecisionStack unrounded_inside = current_precision();
    unrounded_inside.gradients = Quantizer{};
    const PrecisionScope scope(unrounded_inside);
    const Tensor rows = unfolded.reshape({N * L, G, K});
    y = G == 1 ? matmul(rows.reshape({N * L, K}), weights)
               : matmul(rows.transpose(0, 1), weights).transpose(0, 1).reshape({N * L, O});
  }
  return images_from_positions(y, N, g, O, bias);
}

namespace {

/// Whether some window along one axis of `size` pixels holds only padding: one starting in the
/// leading padding whose dilated taps step from there over the whole image.
bool window_misses_image(int64_t size,
                         int64_t kernel,
                         int64_t stride,
                         int64_t padding,
                         int64_t dilation,
                         int64_t positions) {
  for (int64_t o = 0; o < positions && o * stride < padding; ++o) {
    const int64_t start = o * stride - padding, first = first_tap_inside(start, dilation);
    if (first >= size || (first - start) / dilation >= kernel) return true;
  }
  return false;
}

/// The window of a pooling op; padding is limited to half the kernel per axis (as PyTorch), and
/// every window must hold at least one pixel (without dilation the padding limit ensures it).
Window plan_pool(const char* op,
                 const Tensor& x,
                 Size2d kernel,
                 Size2d stride,
                 Size2d padding,
                 Size2d dilation,
                 bool ceil_mode) {
  check_image(x, op);
  if (stride.h == 0) stride.h = kernel.h;
  if (stride.w == 0) stride.w = kernel.w;
  LATTICE_CHECK(padding.h <= kernel.h / 2 && padding.w <= kernel.w / 2, "[", op, "] padding ",
                describe(padding), " must be at most half the kernel ", describe(kernel));
  const Window g = plan_window(op, x.shape(), kernel, stride, padding, dilation, ceil_mode);
  LATTICE_CHECK(
      !window_misses_image(g.height, g.kernel_h, g.stride_h, g.padding_h, g.dilation_h, g.out_h) &&
          !window_misses_image(g.width, g.kernel_w, g.stride_w, g.padding_w, g.dilation_w, g.out_w),
      "[", op, "] a window of kernel ", describe(kernel), " with dilation ", describe(dilation),
      " and padding ", describe(padding), " misses every pixel of input ", x.shape());
  return g;
}

}  // namespace

Tensor max_pool2d(const Tensor& x,
                  Size2d kernel,
                  Size2d stride,
                  Size2d padding,
                  Size2d dilation,
                  bool ceil_mode) {
  const Window g = plan_pool("max_pool2d", x, kernel, stride, padding, dilation, ceil_mode);
  const int64_t N = x.shape(0), C = x.shape(1), planes = N * C, plane = g.height * g.width;
  Tensor out = empty({N, C, g.out_h, g.out_w}, x.dtype(), x.device());
  Tensor in;
  {
    NoGradGuard no_grad;  // the packed copy is an internal temporary
    in = detach(x).contiguous();
    visit_floating(x, "max_pool2d", [&]<typename T>(std::type_identity<T>) {
      LATTICE_DISPATCH(x.device(), max_pool_planes, in.data<T>(), out.data<T>(), planes, g);
    });
  }
  out = on_lattice_of(out, x);  // x's values (a bf16 convolution after it can tell)
  // The gradient of each window goes to its first maximum, found again from the saved input
  // and output (the forward loop stays a pure maximum, which vectorises best).
  LATTICE_CHECK(plane < (int64_t(1) << 31), "[max_pool2d] planes of ", plane,
                " pixels are beyond 32-bit positions");
  record_op("max_pool2d", out, {x}, [in, maxima = detach(out), g, planes](const Tensor& grad) {
    const Tensor packed = grad.contiguous();
    Tensor dx = empty(in.shape(), packed.dtype(), packed.device());  // the kernel writes it all
    visit_floating(packed, "max_pool2d", [&]<typename T>(std::type_identity<T>) {
      LATTICE_DISPATCH(packed.device(), max_pool_planes_backward, in.data<T>(), maxima.data<T>(),
                       packed.data<T>(), dx.data<T>(), planes, g);
    });
    return std::vector<Tensor>{dx};
  });
  return out;
}

Tensor avg_pool2d(const Tensor& x,
                  Size2d kernel,
                  Size2d stride,
                  Size2d padding,
                  bool ceil_mode,
                  bool count_include_pad) {
  const Window g = plan_pool("avg_pool2d", x, kernel, stride, padding, 1, ceil_mode);
  const int64_t N = x.shape(0), C = x.shape(1);
  // PyTorch's divisor per output position: the window clipped to the padded image
  // (count_include_pad) or to the image itself.
  std::vector<double> reciprocals(size_t(g.positions()));
  bool uniform = true;
  for (int64_t oh = 0; oh < g.out_h; ++oh)
    for (int64_t ow = 0; ow < g.out_w; ++ow) {
      const int64_t top = oh * g.stride_h - g.padding_h, left = ow * g.stride_w - g.padding_w;
      const int64_t bottom = std::min(top + g.kernel_h, g.height + g.padding_h),
                    right = std::min(left + g.kernel_w, g.width + g.padding_w);
      const int64_t divisor = count_include_pad
                                  ? (bottom - top) * (right - left)
                                  : (std::min(bottom, g.height) - std::max<int64_t>(top, 0)) *
                                        (std::min(right, g.width) - std::max<int64_t>(left, 0));
      uniform = uniform && divisor == g.taps();
      reciprocals[size_t(oh * g.out_w + ow)] = 1.0 / double(divisor);
    }
  // Each window's taps as a column of patch rows (padding reads zeros), summed; backward is the
  // fold of the spread gradient. A uniform divisor scales by a constant, as a mean does.
  const Tensor sums =
      sum(patch_rows(x.reshape({N * C, 1, g.height, g.width}), g).transpose(1, 2), {1});
  const Tensor means =
      uniform ? scale(sums, 1.0 / double(g.taps()))
              : mul(sums,
                    from_vector<double>(reciprocals, {g.positions()}).to(x.dtype()).to(x.device()));
  return means.reshape({N, C, g.out_h, g.out_w});
}

Tensor upsample_nearest2d(const Tensor& x, int64_t scale) {
  check_image(x, "upsample_nearest2d");
  LATTICE_CHECK(scale >= 1, "[upsample_nearest2d] scale must be >= 1, got ", scale);
  const int64_t N = x.shape(0), C = x.shape(1), H = x.shape(2), W = x.shape(3);
  Tensor out = empty({N, C, H * scale, W * scale}, x.dtype(), x.device());
  {
    NoGradGuard no_grad;
    const Tensor in = x.contiguous();
    visit_floating(x, "upsample_nearest2d", [&]<typename T>(std::type_identity<T>) {
      LATTICE_DISPATCH(x.device(), upsample_nearest, in.data<T>(), out.data<T>(), N * C * H, W,
                       scale);
    });
  }
  out = on_lattice_of(out, x);
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
  Tensor out = full(shape, value, x.dtype(), x.device());
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
