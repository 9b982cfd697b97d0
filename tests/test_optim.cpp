// Optimizers against double-precision re-implementations written from the formulas (SGD,
// Adam, AdamW, StableSPAM across a momentum reset), master weights on Λw with stochastic
// rounding, the optimizer-state lattice, state export, loss scaling, clipping and schedules.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "autograd/autograd.h"
#include "ops/ops.h"
#include "optim/loss_scaler.h"
#include "optim/optimizer.h"
#include "optim/schedule.h"
#include "tensor/precision_stack.h"
#include "tensor/random.h"

using namespace lattice;
using namespace lattice::optim;

namespace {

using Values = std::vector<double>;

Tensor parameter(const std::vector<float>& values) {
  Tensor p = from_vector(values);
  set_requires_grad(p);
  return p;
}

/// Stores `values` as the accumulated gradient of p, as backward would.
void set_grad(const Tensor& p, const std::vector<float>& values) {
  p.impl()->autograd->grad = from_vector(values, p.shape());
}

std::vector<float> to_floats(const Values& v) {
  return std::vector<float>(v.begin(), v.end());
}

void check_close(const Tensor& actual, const Values& expected, double tolerance = 2e-6) {
  const std::vector<float> got = actual.to_vector<float>();
  REQUIRE(got.size() == expected.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("element ", i, ": ", got[i], " vs ", expected[i]);
    CHECK(std::fabs(got[i] - expected[i]) <= tolerance * (1 + std::fabs(expected[i])));
  }
}

// Gradients of 4 steps for a 4-element parameter; step 2 carries a spike for AdaClip.
const std::vector<Values> kGrads = {{0.5, -1.0, 0.25, 2.0},
                                    {-0.3, 0.8, 0.1, -1.5},
                                    {0.2, 40.0, -0.6, 0.9},
                                    {1.1, -0.4, 0.05, -0.7},
                                    {-0.9, 0.3, 0.45, 0.6}};
const Values kStart = {1.0, -2.0, 0.5, 3.0};

}  // namespace

TEST_CASE("SGD with momentum, Nesterov and weight decay follows PyTorch's update over 5 steps") {
  for (bool nesterov : {false, true}) {
    const double lr = 0.1, momentum = 0.9, wd = 0.01, dampening = nesterov ? 0.0 : 0.2;
    Tensor p = parameter(to_floats(kStart));
    Sgd sgd(one_group({{"p", p}}, lr, wd), SgdOptions{momentum, dampening, nesterov});
    Values w = kStart, buf(4);
    for (size_t t = 0; t < kGrads.size(); ++t) {
      set_grad(p, to_floats(kGrads[t]));
      sgd.step();
      for (size_t i = 0; i < 4; ++i) {
        double g = kGrads[t][i] + wd * w[i];
        buf[i] = t == 0 ? g : momentum * buf[i] + (1 - dampening) * g;
        w[i] -= lr * (nesterov ? g + momentum * buf[i] : buf[i]);
      }
    }
    INFO("nesterov ", nesterov);
    check_close(p, w);
  }
}

TEST_CASE("Adam (L2 decay) and AdamW (decoupled decay) match the bias-corrected formulas") {
  for (bool decoupled : {false, true}) {
    const double lr = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.1;
    Tensor p = parameter(to_floats(kStart));
    Adam adam(one_group({{"p", p}}, lr, wd), AdamOptions{}, PrecisionStack{}, decoupled);
    Values w = kStart, m(4), v(4);
    for (size_t t = 1; t <= kGrads.size(); ++t) {
      set_grad(p, to_floats(kGrads[t - 1]));
      adam.step();
      for (size_t i = 0; i < 4; ++i) {
        double g = kGrads[t - 1][i];
        if (decoupled) {
          w[i] *= 1 - lr * wd;
        } else {
          g += wd * w[i];
        }
        m[i] = b1 * m[i] + (1 - b1) * g;
        v[i] = b2 * v[i] + (1 - b2) * g * g;
        const double m_hat = m[i] / (1 - std::pow(b1, t)), v_hat = v[i] / (1 - std::pow(b2, t));
        w[i] -= lr * m_hat / (std::sqrt(v_hat) + eps);
      }
    }
    INFO("decoupled ", decoupled);
    CHECK(std::string(adam.name()) == (decoupled ? "adamw" : "adam"));
    check_close(p, w);
  }
}

TEST_CASE("AdamW defaults are PyTorch's: betas 0.9/0.999, eps 1e-8") {
  const AdamOptions defaults;
  CHECK(defaults.beta1 == 0.9);
  CHECK(defaults.beta2 == 0.999);
  CHECK(defaults.eps == 1e-8);
}

namespace {

/// StableSPAM in double, written from algorithms.md §1.2 with the clean reset semantics:
/// moments zeroed before the update on a reset step, t_p restarted at 1.
struct StableSpamReference {
  StableSpamOptions o;
  double lr, wd;
  Values w, m, v;
  double m_norm = 0, v_norm = 0, m_max = 0, t = 0;
  int64_t T = 0;

  void step(Values g) {
    T += 1;
    const double pi = std::acos(-1.0);
    const double scale =
        o.total_steps > 0
            ? o.eta_min + (1 - o.eta_min) * (1 + std::cos(pi * T / (o.total_steps + 1))) / 2
            : 1.0;
    for (double& x : w) x *= 1 - lr * wd;
    double gmax = 0;
    for (double x : g) gmax = std::max(gmax, std::fabs(x));
    t += 1;
    m_max = o.theta * m_max + (1 - o.theta) * gmax;
    const double m_max_hat = m_max / (1 - std::pow(o.theta, t));
    for (double& x : g)
      if (std::fabs(x) > m_max_hat) x = x / gmax * m_max_hat;
    double n = 0;
    for (double x : g) n += x * x;
    n = std::sqrt(n);
    const double g1 = o.gamma1 * scale;
    m_norm = g1 * m_norm + (1 - g1) * n;
    v_norm = o.gamma2 * v_norm + (1 - o.gamma2) * n * n;
    const double m_norm_hat = m_norm / (1 - std::pow(g1, t));
    const double v_norm_hat = v_norm / (1 - std::pow(o.gamma2, t));
    const double c = m_norm_hat / (std::sqrt(v_norm_hat) + o.eps);
    if (n > 0)
      for (double& x : g) x = x / n * c;
    if (o.reset_interval != 0 && T % o.reset_interval == 0) {
      std::fill(m.begin(), m.end(), 0.0);
      std::fill(v.begin(), v.end(), 0.0);
      t = 1;
    }
    const double b1 = o.beta1 * scale, b2 = o.beta2;
    for (size_t i = 0; i < w.size(); ++i) {
      m[i] = b1 * m[i] + (1 - b1) * g[i];
      v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
      w[i] -= lr / (1 - std::pow(b1, t)) * m[i] /
              (std::sqrt(v[i]) / std::sqrt(1 - std::pow(b2, t)) + o.eps);
    }
  }
};

}  // namespace

TEST_CASE("StableSPAM matches a double re-implementation across a momentum reset (ΔT = 3)") {
  for (int64_t total_steps : {int64_t(0), int64_t(6)}) {
    StableSpamOptions options;
    options.reset_interval = 3;
    options.total_steps = total_steps;
    const double lr = 0.01, wd = 0.05;
    Tensor p = parameter(to_floats(kStart));
    StableSpam opt(one_group({{"p", p}}, lr, wd), options);
    StableSpamReference ref{options, lr, wd, kStart, Values(4), Values(4)};
    for (size_t t = 0; t < kGrads.size(); ++t) {
      set_grad(p, to_floats(kGrads[t]));
      opt.step();
      ref.step(kGrads[t]);
      INFO("total_T ", total_steps, ", step ", t + 1);
      check_close(p, ref.w, 5e-6);
      if (t + 1 == 3) {
        // The reset step is a fresh Adam step: m = (1-β1)·ĝ, the pre-reset moments are gone.
        const OptimizerState state = opt.state();
        CHECK(state.scalars["parameters"]["p"]["step"] == 1.0);
        check_close(state.tensors[0].second, ref.m, 5e-6);
      }
    }
  }
}

TEST_CASE(
    "StableSPAM with its defaults (no reset yet) rescales a 20x gradient spike as the reference") {
  StableSpamOptions options;
  Tensor p = parameter(to_floats(kStart));
  StableSpam opt(one_group({{"p", p}}, 0.01), options);
  StableSpamReference ref{options, 0.01, 0, kStart, Values(4), Values(4)};
  for (size_t t = 0; t < kGrads.size(); ++t) {
    set_grad(p, to_floats(kGrads[t]));
    opt.step();
    ref.step(kGrads[t]);
    if (t == 2) CHECK(ref.m_max / (1 - std::pow(options.theta, ref.t)) < 40);  // AdaClip fired
  }
  check_close(p, ref.w, 5e-6);
}

TEST_CASE("parameters without a gradient are skipped, and their state stays empty") {
  Tensor a = parameter({1, 2}), b = parameter({3, 4});
  AdamW opt(one_group({{"a", a}, {"b", b}}, 0.1, 0.5));
  set_grad(a, {1, 1});
  opt.step();
  CHECK(b.to_vector<float>() == std::vector<float>{3, 4});
  CHECK(a.to_vector<float>() != std::vector<float>{1, 2});
  const OptimizerState state = opt.state();
  CHECK(state.tensors.size() == 2);  // a.exp_avg, a.exp_avg_sq
  CHECK(state.tensors[0].first == "a.exp_avg");
  CHECK_FALSE(state.scalars["parameters"].contains("b"));
}

TEST_CASE("parameter groups keep their own lr and weight decay; zero_grad clears gradients") {
  Tensor a = parameter({1}), b = parameter({1});
  std::vector<ParamGroup> groups = {{{{"a", a}}, 0.1, 0.0}, {{{"b", b}}, 0.01, 0.0}};
  Sgd sgd(std::move(groups));
  set_grad(a, {1});
  set_grad(b, {1});
  sgd.step();
  CHECK(a.item<float>() == doctest::Approx(0.9));
  CHECK(b.item<float>() == doctest::Approx(0.99));
  sgd.set_lr_multiplier(0.5);
  CHECK(sgd.lr(0) == doctest::Approx(0.05));
  CHECK(sgd.lr(1) == doctest::Approx(0.005));
  sgd.zero_grad();
  CHECK_FALSE(grad(a).defined());
}

TEST_CASE("optimizer errors name the parameter and what was expected") {
  Tensor d = from_vector<double>({1.0});
  CHECK_THROWS_WITH_AS(Sgd(one_group({{"d", d}}, 0.1)),
                       "[optimizer] parameter \"d\" is float64; expected float32", Error);
  Tensor a = parameter({1});
  CHECK_THROWS_WITH_AS(Sgd(one_group({{"a", a}, {"a", a}}, 0.1)),
                       "[optimizer] parameter name \"a\" appears twice", Error);
  CHECK_THROWS_AS(Sgd(one_group({{"a", a}}, 0.1), SgdOptions{0.0, 0.0, true}), Error);
}

TEST_CASE("state export and import: a restored optimizer continues exactly") {
  Tensor p = parameter(to_floats(kStart)), q = parameter(to_floats(kStart));
  StableSpamOptions options;
  options.reset_interval = 4;
  StableSpam a(one_group({{"p", p}}, 0.01), options);
  for (size_t t = 0; t < 2; ++t) {
    set_grad(p, to_floats(kGrads[t]));
    a.step();
  }
  StableSpam b(one_group({{"p", q}}, 0.01), options);
  b.load_state(a.state());
  q.copy_(p);
  CHECK(b.step_count() == 2);
  for (size_t t = 2; t < kGrads.size(); ++t) {
    set_grad(p, to_floats(kGrads[t]));
    set_grad(q, to_floats(kGrads[t]));
    a.step();
    b.step();
  }
  CHECK(p.to_vector<float>() == q.to_vector<float>());

  OptimizerState bad = a.state();
  bad.tensors.pop_back();
  CHECK_THROWS_WITH_AS(b.load_state(bad),
                       "[stablespam] optimizer state has no tensor \"p.exp_avg_sq\"", Error);
  Adam adam(one_group({{"p", q}}, 0.01));
  CHECK_THROWS_WITH_AS(adam.load_state(a.state()),
                       "[adam] optimizer state was saved by \"stablespam\"; expected \"adam\"",
                       Error);
}

TEST_CASE("master weights: bf16 stochastic rounding of the fp32 master is unbiased (seed 7)") {
  // 2^16 weights at 1.0 step by 0.3 bf16 ulps per update; after 3 updates the master holds
  // 1 + 0.9 ulp. SR puts each working weight on 1 or 1 + ulp with P(up) = 0.9: the mean
  // offset in ulps has standard deviation sqrt(0.09 / 2^16) = 0.0012; we allow 5 of those.
  manual_seed(7);
  const int64_t n = int64_t(1) << 16;
  const float ulp = 1.0f / 128;  // bf16 at [1, 2)
  const float delta = 0.3f * ulp;
  for (const char* spec : {"w=bf16:sr", "w=bf16"}) {
    Tensor p = ones({n});
    set_requires_grad(p);
    Sgd sgd(one_group({{"w", p}}, 1.0), SgdOptions{}, parse_precision_stack(spec));
    for (int t = 0; t < 3; ++t) {
      p.impl()->autograd->grad = full({n}, -delta);
      sgd.step();
    }
    const std::vector<float> w = p.to_vector<float>();
    double mean_offset = 0;
    bool on_lattice = true;
    for (float x : w) {
      on_lattice = on_lattice && (x == 1.0f || x == 1.0f + ulp);
      mean_offset += (x - 1.0f) / ulp;
    }
    mean_offset /= double(n);
    const OptimizerState state = sgd.state();
    REQUIRE(state.tensors.size() == 1);
    CHECK(state.tensors[0].first == "w.master");
    const float master = state.tensors[0].second.to_vector<float>()[0];
    CHECK(master == 1.0f + delta + delta + delta);
    INFO(spec, ": mean offset ", mean_offset, " ulp");
    CHECK(on_lattice);
    if (std::string(spec) == "w=bf16:sr") {
      CHECK(std::fabs(mean_offset - (master - 1.0f) / ulp) < 5 * 0.0012);
    } else {
      CHECK(mean_offset == 1.0);  // nearest-even: always up from 1 + 0.9 ulp, a bias of 0.1 ulp
    }
  }
}

TEST_CASE("working weights are projected onto Λw at construction; fp32 stacks keep no master") {
  Tensor p = parameter({1.0f + 1.0f / 512, 3.14159f});
  Sgd sgd(one_group({{"w", p}}, 0.1), SgdOptions{}, parse_precision_stack("w=bf16"));
  CHECK(p.to_vector<float>() == std::vector<float>{1.0f, 3.140625f});
  p.copy_(from_vector<float>({2.0f, 4.0f}));  // weights loaded from elsewhere
  sgd.refresh_master_weights();
  CHECK(sgd.state().tensors[0].second.to_vector<float>() == std::vector<float>{2.0f, 4.0f});
  Tensor q = parameter({1.0f + 1.0f / 512});
  Sgd plain(one_group({{"w", q}}, 0.1));
  CHECK(q.item<float>() == 1.0f + 1.0f / 512);
  CHECK(plain.state().tensors.empty());
}

TEST_CASE("working weights carry Λw's label, which copy_ and fill_ replace with their values'") {
  // The label is what lets matmul run bf16 weights as a bf16 GEMM, so it must follow the values.
  Tensor p = parameter({1.0f + 1.0f / 512, 3.14159f});
  Sgd sgd(one_group({{"w", p}}, 0.1), SgdOptions{}, parse_precision_stack("w=bf16"));
  CHECK(p.format() == bf16);
  set_grad(p, {0.5f, 0.25f});
  sgd.step();
  CHECK(p.format() == bf16);
  p.copy_(from_vector<float>({1.0f / 3, 4.0f}));  // fp32 values loaded from elsewhere
  CHECK(p.format() == fp32);
  p.copy_(cast(from_vector<float>({1.0f / 3, 4.0f}), e4m3));
  CHECK(p.format() == e4m3);
  p.fill_(0.1);
  CHECK(p.format() == fp32);
  sgd.set_precision(parse_precision_stack("w=mxfp8"));  // block values: no elementwise label
  CHECK(p.format() == fp32);
  sgd.set_precision(parse_precision_stack("w=e4m3"));
  CHECK(p.format() == e4m3);
  sgd.set_precision(PrecisionStack{});  // the fp32 masters come back, labelled fp32
  CHECK(p.format() == fp32);
  // Weights loaded with a label (from a BF16 checkpoint) and then trained in fp32 lose it: the
  // updates write fp32 values in place.
  Tensor q = parameter({1.0f, 2.0f});
  q.copy_(cast(from_vector<float>({1.0f, 2.0f}), bf16));
  REQUIRE(q.format() == bf16);
  Sgd plain(one_group({{"q", q}}, 0.1));
  CHECK(q.format() == fp32);
  // So do weights loaded after the optimizer was made, at its first update.
  q.copy_(cast(from_vector<float>({1.0f, 2.0f}), bf16));
  set_grad(q, {0.01f, 0.01f});
  plain.step();
  CHECK(q.format() == fp32);
}

TEST_CASE("optimizer state is rounded onto Γopt after each update") {
  Tensor p = parameter(to_floats(kStart));
  AdamW opt(one_group({{"p", p}}, 0.01), AdamOptions{}, parse_precision_stack("opt=bf16"));
  set_grad(p, {0.123456f, -1.000123f, 0.3333333f, 2.718281f});
  opt.step();
  for (const auto& named : opt.state().tensors) {
    const Tensor& tensor = named.second;
    INFO(named.first);
    CHECK(tensor.to_vector<float>() == cast(tensor, bf16).to_vector<float>());
    CHECK(tensor.to_vector<float>()[0] != 0.0f);
  }
}

// ---- Loss scaling and clipping

TEST_CASE("dynamic loss scaling skips exactly the steps with inf/NaN gradients and backs off") {
  Tensor p = parameter({1.0f, 2.0f});
  Sgd sgd(one_group({{"p", p}}, 0.1));
  LossScaler scaler = LossScaler::dynamic(DynamicLossScaling{
      .initial_scale = 8, .growth_factor = 2, .growth_interval = 3, .backoff_factor = 0.5});
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<bool> bad = {false, false, true, false, false, false, true, false};
  std::vector<double> scales;
  for (size_t t = 0; t < bad.size(); ++t) {
    const float s = float(scaler.scale());
    set_grad(p, {1.0f * s, bad[t] ? (t == 6 ? std::nanf("") : inf) : 1.0f * s});
    const std::vector<float> before = p.to_vector<float>();
    const bool stepped = scaler.step(sgd);
    CHECK(stepped == !bad[t]);
    if (bad[t]) CHECK(p.to_vector<float>() == before);
    if (!bad[t]) CHECK(p.to_vector<float>()[0] == doctest::Approx(before[0] - 0.1));
    scales.push_back(scaler.scale());
  }
  CHECK(scaler.skipped_steps() == 2);
  CHECK(sgd.step_count() == 6);
  // 8, 8, backoff 4, 4, 4, grow after 3 good steps 8, backoff 4, 4.
  CHECK(scales == std::vector<double>{8, 8, 4, 4, 4, 8, 4, 4});
}

TEST_CASE("loss scaling scales the loss and unscale divides the gradients once") {
  Tensor p = parameter({2.0f});
  Sgd sgd(one_group({{"p", p}}, 0.1));
  LossScaler scaler = LossScaler::constant(4);
  backward(scaler.scale_loss(sum(mul(p, p))));
  CHECK(grad(p).item<float>() == 16.0f);  // 4 * 2p
  CHECK(scaler.unscale(sgd));
  CHECK(scaler.unscale(sgd));  // second call before step: no second division
  CHECK(grad(p).item<float>() == 4.0f);
  CHECK(scaler.step(sgd));
  CHECK(p.item<float>() == doctest::Approx(1.6));
  CHECK(scaler.scale() == 4.0);
  CHECK_THROWS_WITH_AS(LossScaler::constant(0), "[loss_scaler] scale 0 must be finite and > 0",
                       Error);
}

TEST_CASE("loss scaler state round-trips through JSON") {
  LossScaler a = LossScaler::dynamic();
  Tensor p = parameter({1});
  Sgd sgd(one_group({{"p", p}}, 0.1));
  set_grad(p, {std::numeric_limits<float>::infinity()});
  a.step(sgd);
  LossScaler b;
  b.load_state(a.state());
  CHECK(b.scale() == 512);
  CHECK(b.is_dynamic());
  CHECK(b.skipped_steps() == 1);
  CHECK_THROWS_WITH_AS(b.load_state(nlohmann::json{{"dynamic", true}}),
                       "[loss_scaler] state has no number \"scale\"", Error);
}

TEST_CASE("loss scaler state out of range is refused, and the scaler is left as it was") {
  LossScaler scaler = LossScaler::dynamic({.initial_scale = 8, .growth_interval = 5});
  const nlohmann::json good = scaler.state();
  auto error_with = [&](const char* key, const nlohmann::json& value) {
    nlohmann::json bad = good;
    bad[key] = value;
    try {
      scaler.load_state(bad);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  // 1e300 as an int64 is undefined behaviour; a zero backoff pins the scale at 0.
  CHECK(error_with("growth_interval", 1e300) ==
        "[loss_scaler] state has \"growth_interval\" 1e+300; expected an integer in [1, "
        "9223372036854775807]");
  CHECK(error_with("growth_interval", 0).find("expected an integer in [1, ") != std::string::npos);
  CHECK(error_with("backoff_factor", 0) == "[loss_scaler] backoff factor 0 must lie in (0, 1)");
  CHECK(error_with("backoff_factor", 1) == "[loss_scaler] backoff factor 1 must lie in (0, 1)");
  CHECK(error_with("growth_factor", 0.5) ==
        "[loss_scaler] growth factor 0.5 must be finite and >= 1");
  CHECK(error_with("scale", 0) == "[loss_scaler] scale 0 must be finite and > 0");
  CHECK(error_with("growth_tracker", 5) ==
        "[loss_scaler] state has \"growth_tracker\" 5; expected an integer in [0, 4]");
  CHECK(error_with("skipped_steps", -1).find("\"skipped_steps\" -1; expected") !=
        std::string::npos);
  CHECK(error_with("dynamic", "yes") == "[loss_scaler] state has no boolean \"dynamic\"");
  CHECK(scaler.state() == good);
  scaler.load_state(good);
  CHECK(scaler.state() == good);
}

TEST_CASE("a malformed optimizer step or learning rate is refused before the state changes") {
  Tensor p = parameter(to_floats(kStart)), q = parameter(to_floats(kStart));
  Adam a(one_group({{"p", p}}, 0.01));
  set_grad(p, to_floats(kGrads[0]));
  a.step();
  Adam b(one_group({{"p", q}}, 0.02));
  const nlohmann::json before = b.state().scalars;
  for (const auto& [key, value] :
       std::vector<std::pair<std::string, nlohmann::json>>{{"step", "3"},
                                                           {"step", -1},
                                                           {"step", 2.5},
                                                           {"lr", nlohmann::json::array({"x"})},
                                                           {"lr", nlohmann::json::array({-1})}}) {
    OptimizerState bad = a.state();
    bad.scalars[key] = value;
    const std::string scenario = key + " = " + value.dump();
    INFO(scenario);
    CHECK_THROWS_AS(b.load_state(bad), Error);
    CHECK(b.state().scalars == before);  // no parameter state was taken over
    CHECK(b.state().tensors.empty());
  }
}

TEST_CASE("clip_grad_norm returns the global norm and rescales to max_norm") {
  Tensor a = parameter({0, 0}), b = parameter({0}), c = parameter({0});
  set_grad(a, {3, 4});
  set_grad(b, {12});
  CHECK(clip_grad_norm({a, b, c}, 100) == doctest::Approx(13));
  CHECK(grad(a).to_vector<float>() == std::vector<float>{3, 4});
  CHECK(clip_grad_norm({a, b, c}, 6.5) == doctest::Approx(13));
  CHECK(grad(a).to_vector<float>()[0] == doctest::Approx(1.5));
  CHECK(grad(b).item<float>() == doctest::Approx(6));
  set_grad(b, {std::numeric_limits<float>::infinity()});
  CHECK(std::isinf(clip_grad_norm({a, b}, 1)));
  CHECK_FALSE(gradients_finite({a, b}));
}

// ---- Schedules

TEST_CASE("schedules: warmup, cosine to a floor, linear, warmup-stable-decay") {
  const Schedule warm_cos = parse_schedule("warmup:4,cosine:0.1", 104);
  CHECK(warm_cos.multiplier(0) == doctest::Approx(0.25));
  CHECK(warm_cos.multiplier(3) == doctest::Approx(1.0));
  CHECK(warm_cos.multiplier(4) == doctest::Approx(1.0));
  CHECK(warm_cos.multiplier(54) == doctest::Approx(0.55));  // halfway: 0.1 + 0.9/2
  CHECK(warm_cos.multiplier(104) == doctest::Approx(0.1));
  CHECK(warm_cos.multiplier(500) == doctest::Approx(0.1));
  CHECK(parse_schedule("constant").multiplier(12345) == 1.0);
  CHECK(parse_schedule("").multiplier(0) == 1.0);
  CHECK(parse_schedule("warmup:10").multiplier(4) == doctest::Approx(0.5));
  CHECK(parse_schedule("linear", 10).multiplier(5) == doctest::Approx(0.5));
  const Schedule wsd = parse_schedule("wsd:10:0.2", 100);
  CHECK(wsd.multiplier(4) == doctest::Approx(0.5));
  CHECK(wsd.multiplier(50) == 1.0);
  CHECK(wsd.multiplier(79) == 1.0);
  CHECK(wsd.multiplier(90) == doctest::Approx(0.5));
  CHECK(wsd.multiplier(100) == 0.0);
  for (const char* spec : {"constant", "warmup:100,cosine", "wsd:100:0.2:0.1", "linear:0.5"})
    CHECK(to_string(parse_schedule(spec, 1000)) == spec);
}

TEST_CASE("schedules drive the optimizer's group learning rates") {
  Tensor p = parameter({1});
  AdamW opt(one_group({{"p", p}}, 0.02));
  const Schedule s = parse_schedule("warmup:2,cosine", 10);
  apply_schedule(s, opt, 0);
  CHECK(opt.lr() == doctest::Approx(0.01));
  apply_schedule(s, opt, 1);
  CHECK(opt.lr() == doctest::Approx(0.02));
  CHECK(opt.base_lr() == 0.02);
}

TEST_CASE("bad schedule specs give one-line errors naming the item") {
  CHECK_THROWS_WITH_AS(parse_schedule("cosine"),
                       doctest::Contains("item \"cosine\" needs the run's total step count"),
                       Error);
  CHECK_THROWS_WITH_AS(parse_schedule("warmup:ten,constant"),
                       doctest::Contains("has \"ten\" where a step count >= 0 was expected"),
                       Error);
  CHECK_THROWS_WITH_AS(parse_schedule("cosine,linear", 10),
                       doctest::Contains("item \"linear\" adds a second shape"), Error);
  CHECK_THROWS_WITH_AS(parse_schedule("wsd:10", 10),
                       doctest::Contains("item \"wsd:10\" takes 2 to 3 arguments"), Error);
  CHECK_THROWS_WITH_AS(parse_schedule("cosine:2", 10),
                       doctest::Contains("where a number in [0, 1] was expected"), Error);
  CHECK_THROWS_WITH_AS(parse_schedule("exp", 10), doctest::Contains("is not one of"), Error);
}

TEST_CASE("a non-fp32 master format rounds the masters; working weights follow Λw (e4m3)") {
  Tensor p = parameter({1.0f, 3.0f});
  Sgd sgd(one_group({{"w", p}}, 1.0), SgdOptions{}, parse_precision_stack("w=e4m3,master=bf16"));
  set_grad(p, {-0.0123f, 0.3001f});
  sgd.step();
  const Tensor master = sgd.state().tensors[0].second;
  CHECK(master.to_vector<float>() == cast(master, bf16).to_vector<float>());
  CHECK(master.to_vector<float>() == std::vector<float>{1.015625f, 2.703125f});
  CHECK(p.to_vector<float>() == std::vector<float>{1.0f, 2.75f});  // e4m3: 1, ..., 2.75, 3
}

TEST_CASE(
    "master=bf16:sr rounds each updated master stochastically: a quarter-ULP step is kept "
    "on average, where round-to-nearest loses it") {
  // 1 + 2^-9 is a quarter of bf16's ULP at 1 (2^-7) above it: RNE rounds every master back to
  // 1, SR rounds a quarter of them up to 1 + 2^-7.
  const int64_t n = 4096;
  const double step = std::ldexp(1.0, -9), ulp = std::ldexp(1.0, -7);
  for (const char* rounding : {"", ":sr"}) {
    CAPTURE(rounding);
    manual_seed(3);
    Tensor p = parameter(std::vector<float>(size_t(n), 1.0f));
    Sgd sgd(one_group({{"w", p}}, 1.0), SgdOptions{},
            parse_precision_stack(std::string("w=bf16,master=bf16") + rounding));
    set_grad(p, std::vector<float>(size_t(n), -float(step)));
    sgd.step();
    const std::vector<float> master = sgd.state().tensors[0].second.to_vector<float>();
    int64_t up = 0;
    for (float v : master) {
      CHECK((v == 1.0f || v == float(1.0 + ulp)));
      up += v != 1.0f;
    }
    if (*rounding) {
      // Binomial(4096, 1/4): mean 1024, standard deviation 27.7; 5 of them either side.
      CHECK(up > 1024 - 139);
      CHECK(up < 1024 + 139);
      CHECK(p.to_vector<float>() == master);  // bf16 masters are on Λw already
    } else {
      CHECK(up == 0);
    }
  }
}
