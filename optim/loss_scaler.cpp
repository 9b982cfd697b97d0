// Loss scaler and global-norm gradient clipping: one pass over each gradient's fp32 data (the
// loops in kernels/optimizer.h).
#include "optim/loss_scaler.h"

#include <cmath>
#include <limits>

#include "autograd/autograd.h"
#include "kernels/dispatch.h"
#include "kernels/optimizer.h"
#include "ops/ops.h"

namespace lattice::optim {
namespace {

/// p's gradient (undefined when it has none), which the loops here read as fp32.
Tensor float32_gradient(const Tensor& p) {
  const Tensor g = lattice::grad(p);
  LATTICE_CHECK(!g.defined() || g.dtype() == DType::float32, "[grad] gradient is ",
                dtype_name(g.dtype()), "; expected float32");
  return g;
}

/// Calls edit(device, float* data, n) on the packed fp32 gradient of every parameter that has one,
/// and writes the result back when the gradient was a strided view.
template <typename Edit>
void edit_gradients(const std::vector<Tensor>& params, Edit edit) {
  for (const Tensor& p : params) {
    const Tensor g = float32_gradient(p);
    if (!g.defined()) continue;
    if (g.is_contiguous()) {
      edit(g.device(), g.data<float>(), g.numel());
    } else {
      const Tensor packed = g.clone();
      edit(packed.device(), packed.data<float>(), packed.numel());
      g.copy_(packed);
    }
  }
}

}  // namespace

LossScaler LossScaler::constant(double scale) {
  LATTICE_CHECK(scale > 0 && std::isfinite(scale), "[loss_scaler] scale ", scale,
                " must be finite and > 0");
  LossScaler s;
  s.scale_ = scale;
  return s;
}

LossScaler LossScaler::dynamic(DynamicLossScaling options) {
  LATTICE_CHECK(options.initial_scale > 0 && std::isfinite(options.initial_scale),
                "[loss_scaler] initial scale ", options.initial_scale, " must be finite and > 0");
  LATTICE_CHECK(options.growth_factor >= 1, "[loss_scaler] growth factor ", options.growth_factor,
                " must be >= 1");
  LATTICE_CHECK(options.backoff_factor > 0 && options.backoff_factor < 1,
                "[loss_scaler] backoff factor ", options.backoff_factor, " must lie in (0, 1)");
  LATTICE_CHECK(options.growth_interval > 0, "[loss_scaler] growth interval ",
                options.growth_interval, " must be > 0");
  LossScaler s;
  s.scale_ = options.initial_scale;
  s.dynamic_ = true;
  s.options_ = options;
  return s;
}

Tensor LossScaler::scale_loss(const Tensor& loss) const {
  return mul(loss, scalar_tensor(scale_, loss.dtype(), loss.device()));
}

bool LossScaler::unscale(Optimizer& optimizer) {
  if (unscaled_) return finite_;
  const float inverse = float(1.0 / scale_);
  if (scale_ != 1.0)
    edit_gradients(optimizer.parameters(), [&](Device device, float* g, int64_t n) {
      LATTICE_DISPATCH(device, scale_in_place, g, n, inverse);
    });
  const bool finite = gradients_finite(optimizer.parameters());
  unscaled_ = true;
  finite_ = finite;
  return finite;
}

bool LossScaler::step(Optimizer& optimizer) {
  const bool finite = unscale(optimizer);
  unscaled_ = false;
  if (finite) {
    optimizer.step();
  } else {
    ++skipped_steps_;
  }
  if (!dynamic_) return finite;
  if (!finite) {
    scale_ *= options_.backoff_factor;
    growth_tracker_ = 0;
  } else if (++growth_tracker_ == options_.growth_interval) {
    scale_ *= options_.growth_factor;
    growth_tracker_ = 0;
  }
  return finite;
}

nlohmann::json LossScaler::state() const {
  return {{"scale", scale_},
          {"dynamic", dynamic_},
          {"growth_factor", options_.growth_factor},
          {"growth_interval", options_.growth_interval},
          {"backoff_factor", options_.backoff_factor},
          {"growth_tracker", growth_tracker_},
          {"skipped_steps", skipped_steps_}};
}

void LossScaler::load_state(const nlohmann::json& state) {
  LATTICE_CHECK(state.is_object(), "[loss_scaler] state is ", state.type_name(),
                "; expected an object");
  auto number = [&](const char* key) {
    LATTICE_CHECK(state.contains(key) && state.at(key).is_number(),
                  "[loss_scaler] state has no number \"", key, "\"");
    return state.at(key).get<double>();
  };
  // An integer field in [low, high]; checked as JSON, since converting 1e300 to int64 is UB.
  auto integer = [&](const char* key, int64_t low, int64_t high) {
    const nlohmann::json& value = state.contains(key) ? state.at(key) : nlohmann::json();
    const bool in_range =
        value.is_number_integer() &&
        (value.is_number_unsigned()
             ? value.get<uint64_t>() <= uint64_t(high) && int64_t(value.get<uint64_t>()) >= low
             : value.get<int64_t>() >= low && value.get<int64_t>() <= high);
    LATTICE_CHECK(in_range, "[loss_scaler] state has \"", key, "\" ", value.dump(),
                  "; expected an integer in [", low, ", ", high, "]");
    return value.get<int64_t>();
  };
  LATTICE_CHECK(state.contains("dynamic") && state.at("dynamic").is_boolean(),
                "[loss_scaler] state has no boolean \"dynamic\"");
  // The same bounds as dynamic() puts on its options, so a loaded scaler is one it could build.
  LossScaler loaded;
  loaded.dynamic_ = state.at("dynamic").get<bool>();
  loaded.scale_ = number("scale");
  LATTICE_CHECK(loaded.scale_ > 0 && std::isfinite(loaded.scale_), "[loss_scaler] scale ",
                loaded.scale_, " must be finite and > 0");
  loaded.options_.initial_scale = loaded.scale_;
  loaded.options_.growth_factor = number("growth_factor");
  LATTICE_CHECK(loaded.options_.growth_factor >= 1 && std::isfinite(loaded.options_.growth_factor),
                "[loss_scaler] growth factor ", loaded.options_.growth_factor,
                " must be finite and >= 1");
  loaded.options_.backoff_factor = number("backoff_factor");
  LATTICE_CHECK(loaded.options_.backoff_factor > 0 && loaded.options_.backoff_factor < 1,
                "[loss_scaler] backoff factor ", loaded.options_.backoff_factor,
                " must lie in (0, 1)");
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  loaded.options_.growth_interval = integer("growth_interval", 1, kMax);
  loaded.growth_tracker_ = integer("growth_tracker", 0, loaded.options_.growth_interval - 1);
  loaded.skipped_steps_ = integer("skipped_steps", 0, kMax);
  *this = loaded;
}

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  LATTICE_CHECK(max_norm > 0, "[clip_grad_norm] max norm ", max_norm, " must be > 0");
  double total_squares = 0;
  edit_gradients(params, [&](Device device, float* g, int64_t n) {
    total_squares += LATTICE_DISPATCH(device, sum_of_squares, g, n);
  });
  const double norm = std::sqrt(total_squares);
  if (!std::isfinite(norm) || norm <= max_norm) return norm;
  const float coefficient = float(max_norm / (norm + 1e-6));
  edit_gradients(params, [&](Device device, float* g, int64_t n) {
    LATTICE_DISPATCH(device, scale_in_place, g, n, coefficient);
  });
  return norm;
}

bool gradients_finite(const std::vector<Tensor>& params) {
  // One check per device over all its gradients: a GPU answers with a single read back.
  std::vector<Tensor> gradients[2];
  for (const Tensor& p : params)
    if (const Tensor g = float32_gradient(p); g.defined())
      gradients[size_t(g.device())].push_back(g.contiguous());
  for (Device device : {Device::cpu, Device::cuda}) {
    std::vector<const float*> arrays;
    std::vector<int64_t> sizes;
    for (const Tensor& g : gradients[size_t(device)]) {
      arrays.push_back(g.data<float>());
      sizes.push_back(g.numel());
    }
    if (!arrays.empty() &&
        !LATTICE_DISPATCH(device, all_finite, arrays.data(), sizes.data(), int64_t(arrays.size())))
      return false;
  }
  return true;
}

}  // namespace lattice::optim
