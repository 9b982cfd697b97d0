// CPU direct convolution through oneDNN: forward, backward-data and backward-weights
// primitives on float32, or on operands narrowed to bf16 (exactly: they hold bf16 values) with
// fp32 sums and outputs where ConvBf16 allows it. The callers' tensors are dense NCHW/OIHW
// float32; each primitive picks its own (blocked) layouts and the operands are reordered in and
// out around it, as PyTorch's mkldnn convolution does. oneDNN's primitive cache keeps the compiled
// kernels between calls; its static partition of the work over OpenMP threads makes a call
// reproducible for a given thread count (NUMERICS.md, "Determinism and threads").
#include <oneapi/dnnl/dnnl.hpp>
#include <optional>
#include <unordered_map>

#include "core/error.h"
#include "kernels/conv.h"
#include "kernels/gemm.h"

namespace lattice {
namespace {

using dnnl::memory;
using Dims = memory::dims;

dnnl::engine& conv_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

/// The geometry of one convolution in oneDNN's terms (dilation counts the gaps between taps,
/// so PyTorch's 1 is oneDNN's 0).
struct ConvDescription {
  Dims x, w, bias, y, strides, dilates, padding;
  bool plain;  // x and y stay NCHW in the primitives
  memory::desc bias_plain;
  memory::desc x_plain, w_plain, y_plain;

  /// An operand of `dims` (x, w or y) for a primitive to lay out as it likes, in bf16 or f32.
  memory::desc chosen(const Dims& dims, bool bf16) const {
    return memory::desc(dims, bf16 ? memory::data_type::bf16 : memory::data_type::f32,
                        plain && dims != w ? memory::format_tag::nchw : memory::format_tag::any);
  }
};

ConvDescription describe_conv(const ConvShape& s) {
  const Window& g = s.window;
  ConvDescription d;
  d.x = {s.images, s.channels, g.height, g.width};
  d.y = {s.images, s.out_channels, g.out_h, g.out_w};
  d.bias = {s.out_channels};
  const bool grouped = s.groups > 1;
  d.w = grouped ? Dims{s.groups, s.out_channels / s.groups, s.channels / s.groups, g.kernel_h,
                       g.kernel_w}
                : Dims{s.out_channels, s.channels, g.kernel_h, g.kernel_w};
  d.strides = {g.stride_h, g.stride_w};
  d.dilates = {g.dilation_h - 1, g.dilation_w - 1};
  d.padding = {g.padding_h, g.padding_w};
  const auto f32 = memory::data_type::f32;
  using tag = memory::format_tag;
  // A single input channel (a grayscale first layer) keeps the plain layouts: the blocked
  // kernels pad it to 8 channels, and the plain path (oneDNN's own patch GEMM) measured 1.7x
  // faster for mnist's first layer, reorders included; with 3 channels blocked was faster.
  d.plain = s.channels == 1;
  d.bias_plain = memory::desc(d.bias, f32, tag::x);
  d.x_plain = memory::desc(d.x, f32, tag::nchw);
  d.w_plain = memory::desc(d.w, f32, grouped ? tag::goihw : tag::oihw);
  d.y_plain = memory::desc(d.y, f32, tag::nchw);
  return d;
}

/// The forward primitive, its x and w read in bf16 when `bf16` (y and the bias stay f32); also
/// the hint the backward primitives of the same operand types are planned from.
dnnl::convolution_forward::primitive_desc forward_plan(const ConvDescription& d,
                                                       bool bias,
                                                       bool bf16) {
  const dnnl::convolution_forward::desc op(
      dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, d.chosen(d.x, bf16),
      d.chosen(d.w, bf16), bias ? d.bias_plain : memory::desc(), d.chosen(d.y, false), d.strides,
      d.dilates, d.padding, d.padding);
  return {op, conv_engine()};
}

/// The backward primitives, planned from `hint`, the forward primitive of the same operand types.
dnnl::convolution_backward_data::primitive_desc backward_data_plan(
    const ConvDescription& d, const dnnl::convolution_forward::primitive_desc& hint, bool bf16) {
  return {dnnl::convolution_backward_data::desc(
              dnnl::algorithm::convolution_direct, d.chosen(d.x, false), d.chosen(d.w, bf16),
              d.chosen(d.y, bf16), d.strides, d.dilates, d.padding, d.padding),
          conv_engine(), hint};
}

dnnl::convolution_backward_weights::primitive_desc backward_weights_plan(
    const ConvDescription& d,
    bool bias,
    const dnnl::convolution_forward::primitive_desc& hint,
    bool bf16) {
  return {dnnl::convolution_backward_weights::desc(
              dnnl::algorithm::convolution_direct, d.chosen(d.x, bf16), d.chosen(d.w, false),
              bias ? d.bias_plain : memory::desc(), d.chosen(d.y, bf16), d.strides, d.dilates,
              d.padding, d.padding),
          conv_engine(), hint};
}

/// A pass's plan: bf16 where it may multiply in bf16 (ConvBf16) and this CPU does so natively,
/// unless oneDNN has no bf16 implementation for the geometry; f32 otherwise.
template <typename Plan>
auto planned(bool allowed, const Plan& plan) {
  if (allowed && native_bf16_gemm_cpu()) {
    try {
      return plan(true);
    } catch (const dnnl::error& e) {
      if (e.status != dnnl_unimplemented) throw;
    }
  }
  return plan(false);
}

/// A plain operand in the primitive's layout: the caller's memory itself when they agree, a
/// reordered copy otherwise (`from_plain`: copy in now; otherwise the caller copies out later).
/// The reorder narrows an operand the primitive reads in bf16, exactly for bf16 values.
struct Operand {
  memory plain, used;
  Operand(const memory::desc& plain_desc,
          const memory::desc& wanted,
          const float* data,
          dnnl::stream& stream,
          bool from_plain)
      : plain(plain_desc, conv_engine(), const_cast<float*>(data)),
        used(plain_desc == wanted ? plain : memory(wanted, conv_engine())) {
    if (from_plain && used != plain) dnnl::reorder(plain, used).execute(stream, plain, used);
  }
  void copy_out(dnnl::stream& stream) {
    if (used != plain) dnnl::reorder(used, plain).execute(stream, used, plain);
  }
};

/// Runs `body` and turns oneDNN's exceptions into lattice errors naming the op.
template <typename Body>
void with_onednn(const char* what, Body&& body) {
  try {
    body();
  } catch (const dnnl::error& e) {
    throw Error(
        concat("[conv2d] oneDNN ", what, " failed: ", e.what(), " (status ", int(e.status), ")"));
  }
}

}  // namespace

void conv2d_forward_cpu(const ConvShape& s,
                        const float* x,
                        const float* w,
                        const float* bias,
                        float* y,
                        ConvBf16 bf16) {
  with_onednn("forward convolution", [&] {
    const ConvDescription d = describe_conv(s);
    const auto plan = planned(
        bf16.forward, [&](bool in_bf16) { return forward_plan(d, bias != nullptr, in_bf16); });
    dnnl::stream stream(conv_engine());
    Operand src(d.x_plain, plan.src_desc(), x, stream, true);
    Operand weights(d.w_plain, plan.weights_desc(), w, stream, true);
    Operand dst(d.y_plain, plan.dst_desc(), y, stream, false);
    std::unordered_map<int, memory> args{
        {DNNL_ARG_SRC, src.used}, {DNNL_ARG_WEIGHTS, weights.used}, {DNNL_ARG_DST, dst.used}};
    if (bias)
      args.emplace(DNNL_ARG_BIAS, memory(d.bias_plain, conv_engine(), const_cast<float*>(bias)));
    dnnl::convolution_forward(plan).execute(stream, args);
    dst.copy_out(stream);
    stream.wait();
  });
}

void conv2d_backward_cpu(const ConvShape& s,
                         const float* x,
                         const float* w,
                         const float* grad_y,
                         float* grad_x,
                         float* grad_w,
                         float* grad_bias,
                         ConvBf16 bf16) {
  with_onednn("backward convolution", [&] {
    const ConvDescription d = describe_conv(s);
    const bool bias = grad_bias != nullptr;
    dnnl::stream stream(conv_engine());
    // The forward plan each pass is planned from, made once per operand type for both passes.
    std::optional<dnnl::convolution_forward::primitive_desc> hints[2];
    const auto hint = [&](bool in_bf16) -> const dnnl::convolution_forward::primitive_desc& {
      std::optional<dnnl::convolution_forward::primitive_desc>& slot = hints[in_bf16];
      if (!slot) slot = forward_plan(d, bias, in_bf16);
      return *slot;
    };
    // grad_y in the first primitive's layout, reused by the second when it wants the same.
    std::optional<Operand> diff_dst;
    const auto diff_dst_as = [&](const memory::desc& wanted) {
      if (!diff_dst || diff_dst->used.get_desc() != wanted)
        diff_dst.emplace(d.y_plain, wanted, grad_y, stream, true);
      return diff_dst->used;
    };
    if (grad_x) {
      const auto plan = planned(bf16.backward_data, [&](bool in_bf16) {
        return backward_data_plan(d, hint(in_bf16), in_bf16);
      });
      Operand weights(d.w_plain, plan.weights_desc(), w, stream, true);
      Operand diff_src(d.x_plain, plan.diff_src_desc(), grad_x, stream, false);
      dnnl::convolution_backward_data(plan).execute(
          stream, {{DNNL_ARG_DIFF_DST, diff_dst_as(plan.diff_dst_desc())},
                   {DNNL_ARG_WEIGHTS, weights.used},
                   {DNNL_ARG_DIFF_SRC, diff_src.used}});
      diff_src.copy_out(stream);
    }
    if (grad_w) {
      const auto plan = planned(bf16.backward_weights, [&](bool in_bf16) {
        return backward_weights_plan(d, bias, hint(in_bf16), in_bf16);
      });
      Operand src(d.x_plain, plan.src_desc(), x, stream, true);
      Operand diff_weights(d.w_plain, plan.diff_weights_desc(), grad_w, stream, false);
      std::unordered_map<int, memory> args{{DNNL_ARG_SRC, src.used},
                                           {DNNL_ARG_DIFF_DST, diff_dst_as(plan.diff_dst_desc())},
                                           {DNNL_ARG_DIFF_WEIGHTS, diff_weights.used}};
      if (bias) args.emplace(DNNL_ARG_DIFF_BIAS, memory(d.bias_plain, conv_engine(), grad_bias));
      dnnl::convolution_backward_weights(plan).execute(stream, args);
      diff_weights.copy_out(stream);
    }
    stream.wait();
  });
}

}  // namespace lattice
