// Attention: scaled dot-product attention against a direct double-precision loop, the causal
// mask, RoPE's rotation and relative-position property, grouped key/value heads, the learned
// temperature, the probe, and gradient checks through the whole layer.
#include <doctest/doctest.h>

#include <cmath>

#include "nn/attention.h"
#include "nn_support.h"
#include "tensor/random.h"

using namespace lattice;
using namespace lattice::nn;

namespace {

/// softmax(q k^T * scale (+ causal mask)) v for one (T, d) head, in double.
std::vector<double> reference_attention(const std::vector<double>& q,
                                        const std::vector<double>& k,
                                        const std::vector<double>& v,
                                        int64_t T,
                                        int64_t d,
                                        double scale,
                                        bool causal) {
  std::vector<double> out(static_cast<size_t>(T * d), 0.0);
  for (int64_t t = 0; t < T; ++t) {
    std::vector<double> weights;
    double largest = -INFINITY, total = 0.0;
    const int64_t visible = causal ? t + 1 : T;
    for (int64_t s = 0; s < visible; ++s) {
      double dot = 0.0;
      for (int64_t i = 0; i < d; ++i) dot += q[size_t(t * d + i)] * k[size_t(s * d + i)];
      weights.push_back(dot * scale);
      largest = std::max(largest, dot * scale);
    }
    for (double& w : weights) total += (w = std::exp(w - largest));
    for (int64_t s = 0; s < visible; ++s)
      for (int64_t i = 0; i < d; ++i)
        out[size_t(t * d + i)] += weights[size_t(s)] / total * v[size_t(s * d + i)];
  }
  return out;
}

}  // namespace

TEST_CASE("scaled_dot_product_attention matches the definition, with and without the mask") {
  const int64_t T = 5, d = 3;
  const Tensor q = randn({1, 1, T, d}, 1, DType::float64),
               k = randn({1, 1, T, d}, 2, DType::float64),
               v = randn({1, 1, T, d}, 3, DType::float64);
  for (bool causal : {false, true}) {
    const AttentionResult r = scaled_dot_product_attention(q, k, v, causal, 0.7);
    const std::vector<double> expected = reference_attention(
        q.to_vector<double>(), k.to_vector<double>(), v.to_vector<double>(), T, d, 0.7, causal);
    const std::vector<double> got = r.output.to_vector<double>();
    for (size_t i = 0; i < got.size(); ++i)
      CHECK(got[i] == doctest::Approx(expected[i]).epsilon(1e-12));
    const std::vector<double> p = r.probabilities.to_vector<double>();
    for (int64_t t = 0; t < T; ++t) {
      double row = 0.0;
      for (int64_t s = 0; s < T; ++s) row += p[size_t(t * T + s)];
      CHECK(row == doctest::Approx(1.0));
      if (causal) CHECK(p[size_t(t * T + T - 1)] == (t == T - 1 ? p[size_t(t * T + T - 1)] : 0.0));
    }
  }
}

TEST_CASE("RoPE rotates pair i at position t by t * base^(-2i/d); dot products depend on offsets") {
  // Named, not structured bindings: the gradcheck lambda below captures them.
  const auto tables = rope_tables(4, 4, 100.0);
  const Tensor& cos = tables.first;
  const Tensor& sin = tables.second;
  // x (B 1, T 4, H 1, d 4): the same vector at every position
  const Tensor x = from_vector<double>({1, 0, 0, 1}, {1, 1, 1, 4}).expand({1, 4, 1, 4});
  const std::vector<double> y = apply_rope(x, cos, sin).to_vector<double>();
  // position 3: pair 0 turns by 3 rad, pair 1 by 3 * 100^(-1/2) = 0.3 rad
  CHECK(y[12] == doctest::Approx(std::cos(3.0)).epsilon(1e-6));
  CHECK(y[13] == doctest::Approx(std::sin(3.0)).epsilon(1e-6));
  CHECK(y[14] == doctest::Approx(-std::sin(0.3)).epsilon(1e-6));
  CHECK(y[15] == doctest::Approx(std::cos(0.3)).epsilon(1e-6));
  // <R_t q, R_s k> depends on t - s only.
  const Tensor q = randn({1, 1, 1, 4}, 4, DType::float64).expand({1, 4, 1, 4});
  const Tensor k = randn({1, 1, 1, 4}, 5, DType::float64).expand({1, 4, 1, 4});
  const Tensor dots =
      matmul(apply_rope(q, cos, sin).reshape({4, 4}), apply_rope(k, cos, sin).reshape({4, 4}).t());
  const std::vector<double> g = dots.to_vector<double>();
  CHECK(g[0 * 4 + 1] == doctest::Approx(g[2 * 4 + 3]).epsilon(1e-6));  // offset -1
  CHECK(g[3 * 4 + 1] == doctest::Approx(g[2 * 4 + 0]).epsilon(1e-6));  // offset +2
  // The backward is the inverse rotation, checked against finite differences.
  test::check_gradients(
      [&](const std::vector<Tensor>& in) { return apply_rope(in[0], cos, sin); },
      {uniform({2, 3, 2, 4}, -1.0, 1.0, RandomStream{.seed = 6}, DType::float64)});
  CHECK_THROWS_WITH_AS(rope_tables(4, 3),
                       "[rope] needs positions > 0 and an even head dimension, got 4 and 3", Error);
  CHECK_THROWS_WITH_AS(apply_rope(ones({1, 5, 1, 4}), cos, sin),
                       "[rope] input (1, 5, 1, 4) does not fit tables (4, 2) (expected a float (B, "
                       "T <= 4, H, 4))",
                       Error);
}

TEST_CASE("grouped key/value heads equal full attention with the key/value heads repeated") {
  manual_seed(6);
  MultiHeadAttention grouped(8, 4, {.kv_heads = 2, .causal = true, .rope = true});
  MultiHeadAttention full(8, 4, {.causal = true, .rope = true});
  full.wq->weight.copy_(grouped.wq->weight);
  full.wo->weight.copy_(grouped.wo->weight);
  // Query heads 0,1 read key/value head 0; heads 2,3 head 1 (head_dim 2 rows each).
  for (auto [dst, src] : {std::pair{full.wk, grouped.wk}, std::pair{full.wv, grouped.wv}})
    for (int64_t head = 0; head < 4; ++head)
      dst->weight.narrow(0, head * 2, 2).copy_(src->weight.narrow(0, head / 2 * 2, 2));
  const Tensor x = randn({2, 3, 8}, 7);
  const std::vector<float> a = grouped(x).to_vector<float>(), b = full(x).to_vector<float>();
  for (size_t i = 0; i < a.size(); ++i) CHECK(a[i] == doctest::Approx(b[i]).epsilon(1e-5));
  CHECK(grouped.wk->weight.shape() == Shape{4, 8});
}

TEST_CASE("learned temperature starts at sqrt(d_k), equals fixed scaling there, and trains") {
  manual_seed(9);
  MultiHeadAttention learned(8, 2, {.learned_temperature = true});
  manual_seed(9);
  MultiHeadAttention fixed(8, 2);
  CHECK(learned.temperature().to_vector<float>() ==
        std::vector<float>{std::sqrt(4.0f), std::sqrt(4.0f)});
  CHECK(fixed.temperature().to_vector<float>() == std::vector<float>{2.0f, 2.0f});
  const Tensor x = randn({1, 4, 8}, 10);
  const std::vector<float> a = learned(x).to_vector<float>(), b = fixed(x).to_vector<float>();
  for (size_t i = 0; i < a.size(); ++i) CHECK(a[i] == doctest::Approx(b[i]).epsilon(1e-5));
  backward(sum(learned(x) * randn({1, 4, 8}, 11)));
  CHECK(test::parameters_without_gradient(learned).empty());
  CHECK(learned.named_parameters().front().first == "log_temperature");
}

TEST_CASE(
    "the probe sees Q, K, V, S and P with their shapes; causal P is zero above the diagonal") {
  MultiHeadAttention attention(8, 2, {.causal = true});
  AttentionInternals seen;
  attention.set_probe([&](const AttentionInternals& internals) { seen = internals; });
  attention(randn({3, 5, 8}, 12));
  CHECK(seen.q.shape() == Shape{3, 2, 5, 4});
  CHECK(seen.v.shape() == Shape{3, 2, 5, 4});
  CHECK(seen.scores.shape() == Shape{3, 2, 5, 5});
  const std::vector<float> p = seen.probabilities.to_vector<float>();
  CHECK(p[1] == 0.0f);  // query 0, key 1
  CHECK(p[0] == 1.0f);  // query 0 sees itself only
  CHECK_THROWS_WITH_AS(attention(ones({3, 5, 6})),
                       "[MultiHeadAttention] expects (B, T, 8), got (3, 5, 6)", Error);
}

TEST_CASE("gradients through attention with RoPE, grouped heads, causal mask and temperature") {
  MultiHeadAttention attention(
      4, 2,
      {.kv_heads = 1, .causal = true, .rope = true, .learned_temperature = true, .bias = true});
  const Tensor x = test::random64({2, 3, 4}, 13);
  test::check_module_gradients(attention, {x}, [&] { return attention(x); });
}
