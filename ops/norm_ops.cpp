// Fused normalisation ops: the statistics, the normalisation and the backward each run as one
// kernel pass (kernels/norm.h) instead of a chain of ops, with sums in double.
#include "ops/norm_ops.h"

#include <type_traits>
#include <vector>

#include "kernels/dispatch.h"
#include "kernels/norm.h"
#include "ops/op_support.h"
#include "ops/ops.h"

namespace lattice {
namespace {

void check_affine(const char* op, const Tensor& t, int64_t size) {
  LATTICE_CHECK(!t.defined() || (t.rank() == 1 && t.shape(0) == size), "[", op,
                "] weight and bias must be (", size, "), got ", t.shape());
}

}  // namespace

Tensor fused_rms_norm(const Tensor& x, const Tensor& weight, double eps) {
  check_affine("rms_norm", weight, x.shape(-1));
  LATTICE_CHECK(is_floating(x.dtype()) && (!weight.defined() || weight.dtype() == x.dtype()),
                "[rms_norm] expects float input and weight of one dtype");
  const int64_t dim = x.shape(-1), rows = dim > 0 ? x.numel() / dim : 0;
  const Tensor in = detach(x).contiguous();
  const Tensor w = weight.defined() ? detach(weight).contiguous() : Tensor{};
  const Device device = weight.defined() ? same_device("rms_norm", {&x, &weight}) : x.device();
  const Tensor inverse_rms = empty({rows}, x.dtype(), device);
  const Tensor out = empty(x.shape(), x.dtype(), device);
  visit_floating(x, "rms_norm", [&]<typename T>(std::type_identity<T>) {
    LATTICE_DISPATCH(x.device(), rms_norm_rows, in.data<T>(), w.defined() ? w.data<T>() : nullptr,
                     out.data<T>(), inverse_rms.data<T>(), rows, dim, eps);
  });
  std::vector<Tensor> inputs{x};
  if (weight.defined()) inputs.push_back(weight);
  record_op("rms_norm", out, inputs, [in, w, inverse_rms, rows, dim](const Tensor& g_out) {
    const Tensor g = g_out.contiguous(), dx = empty(in.shape(), in.dtype(), in.device());
    const Tensor dw = w.defined() ? empty(w.shape(), w.dtype(), in.device()) : Tensor{};
    visit_floating(in, "rms_norm", [&]<typename T>(std::type_identity<T>) {
      LATTICE_DISPATCH(in.device(), rms_norm_rows_backward, g.data<T>(), in.data<T>(),
                       w.defined() ? w.data<T>() : nullptr, inverse_rms.data<T>(), dx.data<T>(),
                       dw.defined() ? dw.data<T>() : nullptr, rows, dim);
    });
    return w.defined() ? std::vector<Tensor>{dx, dw} : std::vector<Tensor>{dx};
  });
  return out;
}

Tensor fused_batch_norm(const Tensor& x,
                        const Tensor& running_mean,
                        const Tensor& running_var,
                        const Tensor& weight,
                        const Tensor& bias,
                        bool training,
                        double momentum,
                        double eps) {
  LATTICE_CHECK(x.rank() >= 2 && is_floating(x.dtype()),
                "[batch_norm] input must be a float (N, C, ...), got ", x.shape());
  const int64_t batch = x.shape(0), channels = x.shape(1),
                spatial = channels > 0 && batch > 0 ? x.numel() / (batch * channels) : 0;
  check_affine("batch_norm", weight, channels);
  check_affine("batch_norm", bias, channels);
  check_affine("batch_norm", running_mean, channels);
  check_affine("batch_norm", running_var, channels);
  const int64_t count = batch * spatial;
  LATTICE_CHECK(!training || count > 1,
                "[batch_norm] training needs more than one value per channel, got ", x.shape());
  const Tensor in = detach(x).contiguous();
  const Tensor w = weight.defined() ? detach(weight).contiguous() : Tensor{};
  const Tensor b = bias.defined() ? detach(bias).contiguous() : Tensor{};
  // Per-channel statistics in double: the batch's, or the running ones.
  const Device device = x.device();
  const Tensor mean = training ? empty({channels}, DType::float64, device)
                               : detach(running_mean).to(DType::float64).contiguous();
  const Tensor variance = training ? empty({channels}, DType::float64, device)
                                   : detach(running_var).to(DType::float64).contiguous();
  const Tensor inverse_std = empty({channels}, DType::float64, device);
  if (!training)
    LATTICE_DISPATCH(x.device(), inverse_std, variance.data<double>(), inverse_std.data<double>(),
                     channels, eps);
  const Tensor out = empty(x.shape(), x.dtype(), device);
  visit_floating(x, "batch_norm", [&]<typename T>(std::type_identity<T>) {
    LATTICE_DISPATCH(x.device(), batch_norm_channels, in.data<T>(),
                     w.defined() ? w.data<T>() : nullptr, b.defined() ? b.data<T>() : nullptr,
                     out.data<T>(), mean.data<double>(), variance.data<double>(),
                     inverse_std.data<double>(), batch, channels, spatial, eps, training);
  });
  std::vector<Tensor> inputs{x};
  if (weight.defined()) inputs.push_back(weight);
  if (bias.defined()) inputs.push_back(bias);
  record_op("batch_norm", out, inputs,
            [in, w, b, mean, inverse_std, batch, channels, spatial, training](const Tensor& g_out) {
              const Device device = in.device();
              const Tensor g = g_out.contiguous(), dx = empty(in.shape(), in.dtype(), device);
              const Tensor dw = w.defined() ? empty(w.shape(), w.dtype(), device) : Tensor{};
              const Tensor db = b.defined() ? empty(b.shape(), b.dtype(), device) : Tensor{};
              visit_floating(in, "batch_norm", [&]<typename T>(std::type_identity<T>) {
                LATTICE_DISPATCH(
                    in.device(), batch_norm_channels_backward, g.data<T>(), in.data<T>(),
                    w.defined() ? w.data<T>() : nullptr, mean.data<double>(),
                    inverse_std.data<double>(), dx.data<T>(), dw.defined() ? dw.data<T>() : nullptr,
                    db.defined() ? db.data<T>() : nullptr, batch, channels, spatial, training);
              });
              std::vector<Tensor> grads{dx};
              if (dw.defined()) grads.push_back(dw);
              if (db.defined()) grads.push_back(db);
              return grads;
            });
  if (training) {  // the running statistics move toward the batch's (unbiased variance)
    NoGradGuard no_grad;
    const double unbiased = double(count) / double(count - 1);
    running_mean.copy_(scale(running_mean, 1.0 - momentum) +
                       scale(mean.to(running_mean.dtype()), momentum));
    running_var.copy_(scale(running_var, 1.0 - momentum) +
                      scale(variance.to(running_var.dtype()), momentum * unbiased));
  }
  return out;
}

}  // namespace lattice
