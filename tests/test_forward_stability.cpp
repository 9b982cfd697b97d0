// diagnostics/forward_stability: κ_score, κ_softmax, κ(V), κ_eff, ρ_LN, C_LN and the combined
// predictor against dense references in double (the softmax Jacobian by finite differences and
// its Jacobi eigenvalues, singular values of matrices built with known ones), and the
// LayerNorm-ε policy of Algorithm 1 (spec parsing, the rule, restoring, the input hooks).
#include <doctest/doctest.h>

#include <cmath>
#include <memory>

#include "dense_reference.h"
#include "diagnostics/forward_stability.h"
#include "ops/ops.h"
#include "tensor/tape.h"

using namespace lattice;
using namespace lattice::diagnostics;
using lattice::test::Matrix;

namespace {

std::vector<double> softmax_row(const std::vector<double>& s) {
  double largest = s[0];
  for (double value : s) largest = std::max(largest, value);
  std::vector<double> p(s.size());
  double total = 0;
  for (size_t i = 0; i < s.size(); ++i) total += (p[i] = std::exp(s[i] - largest));
  for (double& value : p) value /= total;
  return p;
}

// The softmax Jacobian ∂p_i/∂s_j at s by central differences (no use of Diag(p) - pp^T).
Matrix finite_difference_jacobian(const std::vector<double>& s) {
  const int64_t n = int64_t(s.size());
  const double h = 1e-5;
  Matrix jacobian(n, n);
  for (int64_t j = 0; j < n; ++j) {
    std::vector<double> up = s, down = s;
    up[size_t(j)] += h;
    down[size_t(j)] -= h;
    const std::vector<double> p_up = softmax_row(up), p_down = softmax_row(down);
    for (int64_t i = 0; i < n; ++i)
      jacobian(i, j) = (p_up[size_t(i)] - p_down[size_t(i)]) / (2 * h);
  }
  return jacobian;
}

double norm(const std::vector<double>& x) {
  double sum = 0;
  for (double value : x) sum += value * value;
  return std::sqrt(sum);
}

double dense_jacobian_norm(const std::vector<double>& s) {
  return test::jacobi_eigenvalues(finite_difference_jacobian(s)).front();
}

// A small attention layer's internals with every diagnostic computed densely in double.
struct AttentionCase {
  int64_t batch = 2, heads = 2, length = 5, head_dim = 3;
  std::vector<double> tau = {std::sqrt(3.0), std::sqrt(3.0)};
  bool causal = false;
  std::vector<double> q, k, v, scores, probabilities;  // (B, H, T, d) and (B, H, T, T)

  void build() {
    const int64_t qkv = batch * heads * length * head_dim;
    q.resize(size_t(qkv));
    k.resize(size_t(qkv));
    v.resize(size_t(qkv));
    for (int64_t i = 0; i < qkv; ++i) {
      q[size_t(i)] = 1.5 * std::sin(0.37 * double(i) + 0.1);
      k[size_t(i)] = 1.2 * std::cos(0.53 * double(i) + 0.4);
      v[size_t(i)] = std::sin(0.71 * double(i) * double(i) + 1.0);
    }
    scores.assign(size_t(batch * heads * length * length), 0.0);
    probabilities = scores;
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t h = 0; h < heads; ++h)
        for (int64_t i = 0; i < length; ++i) {
          std::vector<double> visible;
          for (int64_t j = 0; j < length; ++j) {
            double dot = 0;
            for (int64_t c = 0; c < head_dim; ++c) dot += at(q, b, h, i, c) * at(k, b, h, j, c);
            score(b, h, i, j) = dot / tau[size_t(h)];
            if (!causal || j <= i) visible.push_back(score(b, h, i, j));
          }
          const std::vector<double> p = softmax_row(visible);
          for (size_t j = 0; j < p.size(); ++j) probability(b, h, i, int64_t(j)) = p[j];
        }
  }
  double at(const std::vector<double>& x, int64_t b, int64_t h, int64_t t, int64_t c) const {
    return x[size_t(((b * heads + h) * length + t) * head_dim + c)];
  }
  double& score(int64_t b, int64_t h, int64_t i, int64_t j) {
    return scores[size_t(((b * heads + h) * length + i) * length + j)];
  }
  double& probability(int64_t b, int64_t h, int64_t i, int64_t j) {
    return probabilities[size_t(((b * heads + h) * length + i) * length + j)];
  }
  Matrix head_matrix(const std::vector<double>& x, int64_t b, int64_t h) const {
    Matrix m(length, head_dim);
    for (int64_t t = 0; t < length; ++t)
      for (int64_t c = 0; c < head_dim; ++c) m(t, c) = at(x, b, h, t, c);
    return m;
  }
  int64_t visible(int64_t i) const {
    return causal ? i + 1 : length;
  }
  std::vector<double> score_row(int64_t b, int64_t h, int64_t i) {
    std::vector<double> row;
    for (int64_t j = 0; j < visible(i); ++j) row.push_back(score(b, h, i, j));
    return row;
  }
  std::vector<double> probability_row(int64_t b, int64_t h, int64_t i) {
    std::vector<double> row;
    for (int64_t j = 0; j < visible(i); ++j) row.push_back(probability(b, h, i, j));
    return row;
  }

  nn::AttentionInternals internals(DType dtype = DType::float64) const {
    const Shape qkv_shape = {batch, heads, length, head_dim};
    const Shape score_shape = {batch, heads, length, length};
    return {from_vector(q, qkv_shape).to(dtype), from_vector(k, qkv_shape).to(dtype),
            from_vector(v, qkv_shape).to(dtype), from_vector(scores, score_shape).to(dtype),
            from_vector(probabilities, score_shape).to(dtype)};
  }
  Tensor temperature() const {
    return from_vector(tau, {heads});
  }

  // κ_softmax of head h: max over examples and over all rows (or the top `rows` by ||S_i||)
  // of the finite-difference Jacobian's top eigenvalue · ||S_i|| / ||P_i||.
  double kappa_softmax(int64_t h, int64_t rows = 0) {
    double result = 0;
    for (int64_t b = 0; b < batch; ++b) {
      std::vector<std::pair<double, int64_t>> by_norm;
      for (int64_t i = 0; i < length; ++i) by_norm.push_back({norm(score_row(b, h, i)), i});
      std::sort(by_norm.rbegin(), by_norm.rend());
      const int64_t count = rows > 0 ? rows : length;
      for (int64_t r = 0; r < count; ++r) {
        const int64_t i = by_norm[size_t(r)].second;
        // The Jacobian of the visible scores' softmax, at the visible scores.
        result = std::max(result, dense_jacobian_norm(score_row(b, h, i)) *
                                      norm(score_row(b, h, i)) / norm(probability_row(b, h, i)));
      }
    }
    return result;
  }
  // κ_score of head h, max over examples, Frobenius or spectral (Jacobi singular values).
  double kappa_score(int64_t h, bool spectral) const {
    double result = 0;
    for (int64_t b = 0; b < batch; ++b) {
      Matrix s(length, length);
      for (int64_t i = 0; i < length; ++i)
        for (int64_t j = 0; j < length; ++j)
          s(i, j) = scores[size_t(((b * heads + h) * length + i) * length + j)];
      const auto matrix_norm = [&](const Matrix& m) {
        return spectral ? test::jacobi_singular_values(m).front() : norm(m.values);
      };
      result =
          std::max(result, matrix_norm(head_matrix(q, b, h)) * matrix_norm(head_matrix(k, b, h)) /
                               (matrix_norm(s) * tau[size_t(h)]));
    }
    return result;
  }
  // κ(V) of head h, max over the first `examples` examples (0: all).
  double kappa_v(int64_t h, int64_t examples = 0) const {
    double result = 0;
    for (int64_t b = 0; b < (examples > 0 ? examples : batch); ++b) {
      const std::vector<double> singular = test::jacobi_singular_values(head_matrix(v, b, h));
      result = std::max(result, singular.front() / (singular.back() + 1e-6));
    }
    return result;
  }
};

Tensor to_tensor(const Matrix& m) {
  return from_vector(m.values, {m.rows, m.cols});
}

}  // namespace

TEST_CASE(
    "||J(p)||2 is 1/2 at a two-way tie and 1/n at the uniform row, exactly and by power "
    "iteration") {
  const std::vector<double> tie = {0.5, 0.5, 0.0, 0.0};
  CHECK(softmax_jacobian_norm_exact(tie) == doctest::Approx(0.5).epsilon(1e-14));
  CHECK(softmax_jacobian_norm(tie, 1) == doctest::Approx(0.5).epsilon(1e-14));
  const std::vector<double> uniform(8, 1.0 / 8);
  CHECK(softmax_jacobian_norm_exact(uniform) == doctest::Approx(1.0 / 8).epsilon(1e-13));
  CHECK(softmax_jacobian_norm(uniform, 3) == doctest::Approx(1.0 / 8).epsilon(1e-13));
  CHECK(softmax_jacobian_norm(std::vector<double>{1.0}, 3) == 0.0);
}

TEST_CASE(
    "||J(p)||2 matches the top eigenvalue of the finite-difference softmax Jacobian; power "
    "iteration rises monotonically towards it from below") {
  const std::vector<std::vector<double>> score_rows = {
      {0.3, -1.2, 2.0, 0.7, 1.9}, {4.0, 0.0, -1.0}, {0.1, 0.2, 0.15, 0.05, 0.12, 0.3}};
  for (const std::vector<double>& s : score_rows) {
    CAPTURE(s.size());
    const std::vector<double> p = softmax_row(s);
    const double dense = dense_jacobian_norm(s);
    CHECK(dense <= 0.5);
    CHECK(softmax_jacobian_norm_exact(p) == doctest::Approx(dense).epsilon(1e-8));
    CHECK(softmax_jacobian_norm(p, 500) == doctest::Approx(dense).epsilon(1e-8));
    double previous = 0;
    for (int steps = 1; steps <= 6; ++steps) {
      const double estimate = softmax_jacobian_norm(p, steps);
      CHECK(estimate >= previous - 1e-15);
      CHECK(estimate <= dense * (1 + 1e-8));
      previous = estimate;
    }
  }
}

TEST_CASE(
    "attention_stability matches dense κ_softmax, κ_score and κ(V) per head, max over "
    "the batch and over heads") {
  AttentionCase c;
  c.build();
  StabilityOptions options{.softmax_rows = 0, .softmax_exact = true};
  const AttentionStability found = attention_stability(c.internals(), {}, options);
  REQUIRE(found.kappa_softmax_per_head.size() == 2);
  double softmax = 0, score = 0, value = 0;
  for (int64_t h = 0; h < 2; ++h) {
    CAPTURE(h);
    const double dense_softmax = c.kappa_softmax(h), dense_score = c.kappa_score(h, false);
    CHECK(found.kappa_softmax_per_head[size_t(h)] == doctest::Approx(dense_softmax).epsilon(1e-7));
    CHECK(found.kappa_score_per_head[size_t(h)] == doctest::Approx(dense_score).epsilon(1e-12));
    CHECK(found.kappa_v_per_head[size_t(h)] == doctest::Approx(c.kappa_v(h)).epsilon(1e-9));
    CHECK(dense_score >= 1.0);  // ||QK^T||_F <= ||Q||_F ||K||_F
    softmax = std::max(softmax, dense_softmax);
    score = std::max(score, dense_score);
    value = std::max(value, c.kappa_v(h));
  }
  CHECK(found.kappa_softmax == doctest::Approx(softmax).epsilon(1e-7));
  CHECK(found.kappa_score == doctest::Approx(score).epsilon(1e-12));
  CHECK(found.kappa_v == doctest::Approx(value).epsilon(1e-9));

  options.heads = HeadAggregation::sum;
  const AttentionStability summed = attention_stability(c.internals(), {}, options);
  CHECK(summed.kappa_v == doctest::Approx(c.kappa_v(0) + c.kappa_v(1)).epsilon(1e-9));
}

TEST_CASE(
    "κ_softmax over the top-M rows by ||S_i|| equals the dense value over those rows; "
    "3 power steps stay below the exact value") {
  AttentionCase c;
  c.build();
  for (int64_t rows : {1, 2}) {
    CAPTURE(rows);
    const AttentionStability found =
        attention_stability(c.internals(), {}, {.softmax_rows = rows, .softmax_exact = true});
    for (int64_t h = 0; h < 2; ++h)
      CHECK(found.kappa_softmax_per_head[size_t(h)] ==
            doctest::Approx(c.kappa_softmax(h, rows)).epsilon(1e-7));
  }
  const AttentionStability power = attention_stability(c.internals(), {}, {.softmax_rows = 0});
  for (int64_t h = 0; h < 2; ++h) {
    CHECK(power.kappa_softmax_per_head[size_t(h)] <= c.kappa_softmax(h) * (1 + 1e-8));
    CHECK(power.kappa_softmax_per_head[size_t(h)] > 0.5 * c.kappa_softmax(h));
  }
}

TEST_CASE("κ_softmax under a causal mask uses only the visible keys of each row") {
  AttentionCase c;
  c.causal = true;
  c.build();
  const AttentionStability found = attention_stability(
      c.internals(), {}, {.softmax_rows = 0, .softmax_exact = true, .causal = true});
  for (int64_t h = 0; h < 2; ++h)
    CHECK(found.kappa_softmax_per_head[size_t(h)] ==
          doctest::Approx(c.kappa_softmax(h)).epsilon(1e-7));

  // Large scores above the diagonal, which the mask hides, must not enter ||S_i||.
  const std::vector<std::vector<double>> visible = {{0.4}, {1.0, 0.8}, {0.2, -0.5, 0.9}};
  DenseMatrix scores{3, 3, std::vector<double>(9, 50.0)}, probabilities{3, 3, {}};
  probabilities.values.assign(9, 0.0);
  double expected = 0;
  for (int64_t i = 0; i < 3; ++i) {
    const std::vector<double> p = softmax_row(visible[size_t(i)]);
    for (int64_t j = 0; j <= i; ++j) {
      scores.values[size_t(i * 3 + j)] = visible[size_t(i)][size_t(j)];
      probabilities.values[size_t(i * 3 + j)] = p[size_t(j)];
    }
    expected = std::max(
        expected, dense_jacobian_norm(visible[size_t(i)]) * norm(visible[size_t(i)]) / norm(p));
  }
  CHECK(kappa_softmax(scores, probabilities, {.softmax_rows = 0, .causal = true}) ==
        doctest::Approx(expected).epsilon(1e-7));
}

TEST_CASE("κ_score divides by the given per-head temperature and has a spectral form") {
  AttentionCase c;
  c.tau = {0.8, 2.5};
  c.build();
  const AttentionStability frobenius = attention_stability(c.internals(), c.temperature());
  const AttentionStability spectral =
      attention_stability(c.internals(), c.temperature(),
                          {.score_norm = MatrixNorm::spectral, .spectral = {.iterations = 2000}});
  for (int64_t h = 0; h < 2; ++h) {
    CHECK(frobenius.kappa_score_per_head[size_t(h)] ==
          doctest::Approx(c.kappa_score(h, false)).epsilon(1e-12));
    CHECK(spectral.kappa_score_per_head[size_t(h)] ==
          doctest::Approx(c.kappa_score(h, true)).epsilon(1e-6));
  }
}

TEST_CASE("attention_stability reads float32 internals to within float32 rounding") {
  AttentionCase c;
  c.build();
  const StabilityOptions options{.softmax_rows = 0, .softmax_exact = true};
  const AttentionStability single = attention_stability(c.internals(DType::float32), {}, options);
  const AttentionStability twice = attention_stability(c.internals(), {}, options);
  CHECK(single.kappa_softmax == doctest::Approx(twice.kappa_softmax).epsilon(1e-5));
  CHECK(single.kappa_score == doctest::Approx(twice.kappa_score).epsilon(1e-5));
  CHECK(single.kappa_v == doctest::Approx(twice.kappa_v).epsilon(1e-4));
}

TEST_CASE("attention_stability names the inconsistent shapes") {
  AttentionCase c;
  c.build();
  nn::AttentionInternals internals = c.internals();
  internals.probabilities = internals.probabilities.narrow(3, 0, 4);
  CHECK_THROWS_WITH_AS(attention_stability(internals),
                       doctest::Contains("[attention_stability] inconsistent shapes"), Error);
  CHECK_THROWS_WITH_AS(attention_stability(c.internals(), from_vector<double>({1.0, 2.0, 3.0})),
                       "[attention_stability] temperature must have 2 values (one per head), got "
                       "shape (3)",
                       Error);
}

TEST_CASE(
    "ρ_LN = σ²/ε·d·ε_mach and C_LN follow Proposition 1 in the ε-dominated regime and "
    "fall to C3 outside it") {
  const double fp16 = std::ldexp(1.0, -10);
  // σ² = 1e-4, ε = 1e-2, d = 64: ρ = 1e-2 · 64 · 2^-10 = 6.25e-4.
  CHECK(layer_norm_rho(1e-4, 1e-2, 64, fp16) == doctest::Approx(6.25e-4).epsilon(1e-14));
  const NormInputStatistics dominated{.dim = 64, .rows = 10, .median_variance = 1e-4, .eps = 1e-2};
  CHECK(c_ln(dominated, fp16) == doctest::Approx(0.1 + 0.01 + 1).epsilon(1e-14));
  CHECK(c_ln(dominated, fp16, {.c1 = 2, .c2 = 3, .c3 = 0.5}) ==
        doctest::Approx(0.2 + 0.03 + 0.5).epsilon(1e-14));
  // σ² = 1, ε = 1e-5: ρ = 1e5 · 64 · 2^-10 = 6250, not dominated.
  const NormInputStatistics normal{.dim = 64, .rows = 10, .median_variance = 1.0, .eps = 1e-5};
  CHECK(c_ln(normal, fp16, {.c1 = 2, .c2 = 3, .c3 = 0.5}) == 0.5);
  CHECK_THROWS_WITH_AS(c_ln({.dim = 64, .eps = 0}, fp16),
                       "[c_ln] needs dim > 0 and eps > 0, got dim 64, eps 0", Error);
}

TEST_CASE(
    "norm_input_statistics takes the median of per-row variances (LayerNorm) or mean "
    "squares (RMSNorm), over the first examples when sampling") {
  // Row r = mean_r + a_r (1, -1, 1, -1): variance a_r², mean square mean_r² + a_r².
  const std::vector<double> amplitude = {1, 3, 2, 5, 4, 0.5}, offset = {2, -1, 0, 1, 3, 0};
  std::vector<double> values;
  for (size_t r = 0; r < 6; ++r)
    for (int j = 0; j < 4; ++j) values.push_back(offset[r] + amplitude[r] * (j % 2 ? -1 : 1));
  const Tensor x = from_vector(values, {2, 3, 4});
  const NormInputStatistics all = norm_input_statistics(x, 1e-5, false);
  CHECK(all.dim == 4);
  CHECK(all.rows == 6);
  CHECK(all.eps == 1e-5);
  CHECK(all.median_variance ==
        doctest::Approx((4.0 + 9.0) / 2).epsilon(1e-14));  // {.25,1,4,9,16,25}
  const NormInputStatistics first = norm_input_statistics(x, 1e-5, false, 1);
  CHECK(first.rows == 3);
  CHECK(first.median_variance == doctest::Approx(4.0).epsilon(1e-14));  // {1, 9, 4}
  const NormInputStatistics rms = norm_input_statistics(x.to(DType::float32), 1e-5, true, 1);
  CHECK(rms.median_variance == doctest::Approx(5.0).epsilon(1e-7));  // {5, 10, 4}
}

TEST_CASE(
    "κ_eff sums the ridged condition numbers of the FFN weights; block_stability combines "
    "the diagnostics into the Exp-1 predictor and Theorem 3's bracket") {
  AttentionCase c;
  c.build();
  const Matrix w_o = test::with_singular_values(6, 6, {3.0, 2.0, 1.0, 1.0, 0.5, 0.25});
  const Matrix w1 = test::with_singular_values(8, 6, {4.0, 2.0, 1.0, 1.0, 1.0, 0.1});
  const Matrix w2 = test::with_singular_values(6, 8, {2.0, 1.0, 1.0, 1.0, 1.0, 0.5});
  const double ridge = 1e-6;
  const double kappa_w1 = 4.0 / (0.1 + ridge), kappa_w2 = 2.0 / (0.5 + ridge);
  CHECK(kappa_eff({to_tensor(w1), to_tensor(w2)}) ==
        doctest::Approx(kappa_w1 + kappa_w2).epsilon(1e-10));

  const double fp16 = std::ldexp(1.0, -10);
  const std::map<std::string, NormInputStatistics> norms = {
      {"blocks.0.norm1", {.dim = 6, .rows = 5, .median_variance = 1e-4, .eps = 1e-2}},
      {"blocks.0.norm2", {.dim = 6, .rows = 5, .median_variance = 2.0, .eps = 1e-5}}};
  const StabilityOptions options{.softmax_rows = 0, .softmax_exact = true};
  const BlockStability block = block_stability(
      c.internals(), {}, to_tensor(w_o), {to_tensor(w1), to_tensor(w2)}, norms, fp16, options);
  const double softmax = std::max(c.kappa_softmax(0), c.kappa_softmax(1));
  const double score = std::max(c.kappa_score(0, false), c.kappa_score(1, false));
  const double value = std::max(c.kappa_v(0), c.kappa_v(1));
  const double layer_norm = (std::sqrt(1e-2) + 1e-2 + 1) + 1;  // norm1 dominated, norm2 not
  CHECK(block.wo_norm == doctest::Approx(3.0).epsilon(1e-9));
  CHECK(block.kappa_wo == doctest::Approx(3.0 / (0.25 + ridge)).epsilon(1e-10));
  CHECK(block.kappa_eff == doctest::Approx(kappa_w1 + kappa_w2).epsilon(1e-10));
  CHECK(block.kappa_eff_unified ==
        doctest::Approx(kappa_w1 + kappa_w2 + 3.0 / (0.25 + ridge)).epsilon(1e-10));
  REQUIRE(block.norms.size() == 2);
  CHECK(block.norms[0].name == "blocks.0.norm1");
  CHECK(block.norms[0].rho_ln == doctest::Approx(1e-2 * 6 * fp16).epsilon(1e-14));
  CHECK(block.norms[1].rho_ln == doctest::Approx(2.0 / 1e-5 * 6 * fp16).epsilon(1e-14));
  CHECK(block.c_ln == doctest::Approx(layer_norm).epsilon(1e-14));
  CHECK(block.predictor ==
        doctest::Approx(softmax * (1 + score) * value * 3.0 + kappa_w1 + kappa_w2 + layer_norm)
            .epsilon(1e-7));
  CHECK(block.unified_term == doctest::Approx(kappa_w1 + kappa_w2 + 3.0 / (0.25 + ridge) +
                                              softmax * (1 + score) * value + layer_norm)
                                  .epsilon(1e-7));
}

TEST_CASE(
    "block_stability of a TransformerBlock reads W_O, the temperature and the FFN weights "
    "from the block") {
  nn::TransformerBlock block(8, 2, 16,
                             {.norm = nn::TransformerBlockOptions::Norm::layer,
                              .feed_forward = nn::TransformerBlockOptions::FeedForward::gelu});
  nn::AttentionInternals seen;
  block.attention->set_probe([&](const nn::AttentionInternals& internals) { seen = internals; });
  const Tensor x = randn({2, 5, 8}, RandomStream{.seed = 3});
  std::map<std::string, NormInputStatistics> norms;
  {
    NoGradGuard no_grad;
    norms = measure_norm_inputs(block, [&] { block(x); });
  }
  const BlockStability from_block = block_stability(block, seen, norms, std::ldexp(1.0, -10));
  const auto* mlp = dynamic_cast<const nn::GeluMLP*>(block.feed_forward.get());
  REQUIRE(mlp);
  const BlockStability from_parts =
      block_stability(seen, {}, block.attention->wo->weight, {mlp->fc1->weight, mlp->fc2->weight},
                      norms, std::ldexp(1.0, -10));
  CHECK(from_block.predictor == doctest::Approx(from_parts.predictor).epsilon(1e-12));
  const auto dense = [](const Tensor& w) {
    Matrix m(w.shape(0), w.shape(1));
    m.values = w.to_vector<double>();
    const std::vector<double> s = test::jacobi_singular_values(m);
    return s.front() / (s.back() + 1e-6);
  };
  CHECK(from_block.kappa_eff ==
        doctest::Approx(dense(mlp->fc1->weight) + dense(mlp->fc2->weight)).epsilon(1e-6));
  CHECK(from_block.norms.size() == 2);
}

TEST_CASE(
    "measure_norm_inputs hooks every LayerNorm and RMSNorm, reports their input "
    "statistics and ε, and passes on an exception from forward") {
  nn::TransformerBlock block(8, 2, 16,
                             {.norm = nn::TransformerBlockOptions::Norm::layer,
                              .norm_eps = 3e-4,
                              .feed_forward = nn::TransformerBlockOptions::FeedForward::gelu});
  const Tensor x = randn({3, 4, 8}, RandomStream{.seed = 5});
  std::map<std::string, NormInputStatistics> found;
  {
    NoGradGuard no_grad;
    found = measure_norm_inputs(
        block, [&] { block(x); }, 2);
  }
  REQUIRE(found.size() == 2);
  REQUIRE(found.count("norm1"));
  REQUIRE(found.count("norm2"));
  // Independent: norm1 sees x, norm2 sees x + attention(norm1(x)); variances taken here.
  const auto median_variance = [](const Tensor& input) {
    const std::vector<double> values = input.narrow(0, 0, 2).to_vector<double>();
    std::vector<double> variances;
    for (size_t r = 0; r < values.size() / 8; ++r) {
      double mean = 0, squares = 0;
      for (size_t j = 0; j < 8; ++j) mean += values[r * 8 + j] / 8;
      for (size_t j = 0; j < 8; ++j) squares += std::pow(values[r * 8 + j] - mean, 2);
      variances.push_back(squares / 8);
    }
    std::sort(variances.begin(), variances.end());
    return 0.5 * (variances[variances.size() / 2 - 1] + variances[variances.size() / 2]);
  };
  NoGradGuard no_grad;
  const Tensor hidden = add(x, (*block.attention)((*block.norm1)(x)));
  CHECK(found["norm1"].median_variance == doctest::Approx(median_variance(x)).epsilon(1e-6));
  CHECK(found["norm2"].median_variance == doctest::Approx(median_variance(hidden)).epsilon(1e-6));
  CHECK(found["norm1"].rows == 8);
  CHECK(found["norm1"].dim == 8);
  CHECK(found["norm1"].eps == 3e-4);

  nn::Sequential model({std::make_shared<nn::RMSNorm>(4, 1e-3)});
  CHECK_THROWS_WITH_AS(measure_norm_inputs(model, [] { throw Error("forward failed"); }),
                       "forward failed", Error);
  // A hook left behind by the throwing call would write through a dangling pointer here (the
  // sanitizer build catches it).
  const Tensor rows = from_vector<float>({1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3}, {3, 4});
  const auto measured = measure_norm_inputs(model, [&] { model(rows); });
  CHECK(measured.at("0").rows == 3);
  CHECK(measured.at("0").median_variance == doctest::Approx(4.0).epsilon(1e-12));  // mean square
}

TEST_CASE("the ε policy spec parses with defaults and prints back to itself") {
  const LayerNormEpsilonPolicy policy = LayerNormEpsilonPolicy::parse("rho=0.6,cap=1e-2,every=5");
  CHECK(policy.target_rho == 0.6);
  CHECK(policy.eps_max == 1e-2);
  CHECK(policy.every == 5);
  CHECK(policy.eps_min == 1e-6);
  CHECK(policy.sample == 16);
  const LayerNormEpsilonPolicy full =
      LayerNormEpsilonPolicy::parse("every=3,rho=0.5,cap=5e-3,floor=1e-7,sample=8");
  CHECK(full.eps_min == 1e-7);
  CHECK(full.sample == 8);
  CHECK(full.spec() == "rho=0.5,cap=0.005,every=3,floor=1e-07,sample=8");
  const LayerNormEpsilonPolicy again = LayerNormEpsilonPolicy::parse(full.spec());
  CHECK(again.target_rho == full.target_rho);
  CHECK(again.eps_max == full.eps_max);
  CHECK(again.every == full.every);
  CHECK(again.eps_min == full.eps_min);
  CHECK(again.sample == full.sample);
  CHECK(policy.due(5));
  CHECK(policy.due(10));
  CHECK_FALSE(policy.due(0));
  CHECK_FALSE(policy.due(7));
}

TEST_CASE(
    "a malformed ε policy spec is rejected in one line naming the item and what was "
    "expected") {
  const auto message = [](const std::string& spec) {
    try {
      LayerNormEpsilonPolicy::parse(spec);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("(accepted)");
  };
  CHECK(message("rho=0.6,cap=1e-2") ==
        "[ln-eps-policy] \"rho=0.6,cap=1e-2\": missing \"every=\" (expected "
        "rho=R,cap=C,every=N[,floor=F][,sample=N])");
  CHECK(message("rho=abc,cap=1e-2,every=5") ==
        "[ln-eps-policy] \"rho=abc,cap=1e-2,every=5\": rho=abc is not a number (the target ρ* "
        "in (0, 1))");
  CHECK(message("rho=1.5,cap=1e-2,every=5") ==
        "[ln-eps-policy] \"rho=1.5,cap=1e-2,every=5\": rho=1.5 must lie in (0, 1)");
  CHECK(message("rho=0.6,cap=1e-2,every=0") ==
        "[ln-eps-policy] \"rho=0.6,cap=1e-2,every=0\": every=0 is not a whole number >= 1");
  CHECK(message("rho=0.6,cap=1e-2,every=2.5") ==
        "[ln-eps-policy] \"rho=0.6,cap=1e-2,every=2.5\": every=2.5 is not a whole number >= 1");
  CHECK(message("rho=0.6,cap=1e-2,every=5,size=3") ==
        "[ln-eps-policy] \"rho=0.6,cap=1e-2,every=5,size=3\": unknown key \"size\" (known: rho, "
        "cap, every, floor, sample)");
  CHECK(message("rho=0.6,cap,every=5") ==
        "[ln-eps-policy] \"rho=0.6,cap,every=5\": item \"cap\" is not key=value (expected "
        "rho=R,cap=C,every=N[,floor=F][,sample=N])");
  CHECK(message("rho=0.6,rho=0.7,cap=1e-2,every=5") ==
        "[ln-eps-policy] \"rho=0.6,rho=0.7,cap=1e-2,every=5\": \"rho\" given twice");
  CHECK(message("rho=0.6,cap=1e-7,every=5") ==
        "[ln-eps-policy] \"rho=0.6,cap=1e-7,every=5\": floor 1e-06 exceeds cap 1e-07");
  CHECK(message("rho=0.6,cap=1e-2,every=5,") ==
        "[ln-eps-policy] \"rho=0.6,cap=1e-2,every=5,\": empty item at the end (expected "
        "rho=R,cap=C,every=N[,floor=F][,sample=N])");
}

TEST_CASE(
    "Algorithm 1 raises ε of an ε-dominated norm to σ²·d·ε_mach/ρ* within [floor, cap], "
    "never lowers it, logs each change and restores the originals") {
  const double fp16 = std::ldexp(1.0, -10);
  auto layer_norm = std::make_shared<nn::LayerNorm>(64, 1e-3);
  auto rms_norm = std::make_shared<nn::RMSNorm>(64, 1e-7);
  auto untouched = std::make_shared<nn::LayerNorm>(64, 1e-5);
  nn::Sequential model({layer_norm, rms_norm, untouched});
  LayerNormEpsilonController controller(LayerNormEpsilonPolicy::parse("rho=0.6,cap=1e-2,every=5"));
  // "0": ρ_LN = 0.0128 / 1e-3 · 64 · 2^-10 = 0.8 in (ρ*, 1): ε -> 0.0128 · 64 · 2^-10 / 0.6.
  // "1": σ² = 1e-12 gives a candidate below the floor: ε 1e-7 -> the floor 1e-6.
  // "2": σ² = 1 gives ρ_LN = 6250 >= 1: not dominated, unchanged.
  const std::map<std::string, NormInputStatistics> statistics = {
      {"0", {.dim = 64, .rows = 16, .median_variance = 0.0128, .eps = 1e-3}},
      {"1", {.dim = 64, .rows = 16, .median_variance = 1e-12, .eps = 1e-7}},
      {"2", {.dim = 64, .rows = 16, .median_variance = 1.0, .eps = 1e-5}}};
  const std::vector<EpsilonChange> changes = controller.apply(model, statistics, fp16);
  REQUIRE(changes.size() == 2);
  const double raised = 0.0128 * 64 * fp16 / 0.6;
  CHECK(changes[0].module == "0");
  CHECK(changes[0].old_eps == 1e-3);
  CHECK(changes[0].new_eps == doctest::Approx(raised).epsilon(1e-14));
  CHECK(changes[0].rho_ln == doctest::Approx(0.8).epsilon(1e-14));
  CHECK(layer_norm->eps == doctest::Approx(raised).epsilon(1e-14));
  CHECK(layer_norm_rho(0.0128, layer_norm->eps, 64, fp16) == doctest::Approx(0.6).epsilon(1e-14));
  CHECK(changes[1].module == "1");
  CHECK(rms_norm->eps == 1e-6);
  CHECK(untouched->eps == 1e-5);

  // Again with the same statistics: ρ_LN now equals ρ*, the candidate equals ε, nothing moves.
  CHECK(controller.apply(model, statistics, fp16).empty());
  // A smaller variance gives a smaller candidate: ε is never lowered.
  const std::map<std::string, NormInputStatistics> quieter = {
      {"0", {.dim = 64, .rows = 16, .median_variance = 1e-3, .eps = raised}}};
  CHECK(controller.apply(model, quieter, fp16).empty());
  CHECK(layer_norm->eps == doctest::Approx(raised).epsilon(1e-14));
  // The cap clips the candidate.
  LayerNormEpsilonController capped(LayerNormEpsilonPolicy::parse("rho=0.5,cap=2e-3,every=1"));
  const std::map<std::string, NormInputStatistics> louder = {
      {"0", {.dim = 64, .rows = 16, .median_variance = 0.0196, .eps = raised}}};
  REQUIRE(capped.apply(model, louder, fp16).size() == 1);  // ρ_LN 0.897, candidate 2.45e-3
  CHECK(layer_norm->eps == 2e-3);

  const std::vector<EpsilonChange> undone = controller.restore(model);
  CHECK(undone.size() == 2);
  CHECK(layer_norm->eps == 1e-3);
  CHECK(rms_norm->eps == 1e-7);
  CHECK(capped.restore(model).size() == 1);
  CHECK(layer_norm->eps == doctest::Approx(raised).epsilon(1e-14));  // capped's original
  CHECK_THROWS_WITH_AS(controller.apply(model, {{"head", statistics.at("0")}}, fp16),
                       "[ln-eps-policy] \"head\" is not a LayerNorm or RMSNorm of the model",
                       Error);
}

TEST_CASE("Algorithm 1 judges each step with the ε_mach it is given (a stack schedule's lattice)") {
  auto layer_norm = std::make_shared<nn::LayerNorm>(64, 1e-3);
  nn::Sequential model({layer_norm});
  LayerNormEpsilonController controller(LayerNormEpsilonPolicy::parse("rho=0.6,cap=1e-2,every=1"));
  const std::map<std::string, NormInputStatistics> statistics = {
      {"0", {.dim = 64, .rows = 16, .median_variance = 0.0128, .eps = 1e-3}}};
  // Under bf16 (2^-7): ρ_LN = 0.0128 / 1e-3 · 64 · 2^-7 = 6.4 >= 1, not ε-dominated.
  CHECK(controller.apply(model, statistics, std::ldexp(1.0, -7)).empty());
  CHECK(layer_norm->eps == 1e-3);
  // The same statistics after a switch to fp16 (2^-10): ρ_LN = 0.8, raised.
  const std::vector<EpsilonChange> changes =
      controller.apply(model, statistics, std::ldexp(1.0, -10));
  REQUIRE(changes.size() == 1);
  CHECK(changes[0].rho_ln == doctest::Approx(0.8).epsilon(1e-14));
  CHECK_THROWS_WITH_AS(controller.apply(model, statistics, 0.0),
                       "[ln-eps-policy] machine epsilon must lie in (0, 1), got 0", Error);
}
