// Forward-stability diagnostics (transformer-forward-stability paper §2-§3, App. A.4-A.6) and
// the LayerNorm-ε policy of its Algorithm 1.
#include "diagnostics/forward_stability.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <memory>
#include <numeric>
#include <sstream>

#include "autograd/autograd.h"
#include "core/error.h"
#include "diagnostics/linear_algebra.h"
#include "ops/ops.h"
#include "tensor/tape.h"

namespace lattice::diagnostics {
namespace {

constexpr double not_a_number = std::numeric_limits<double>::quiet_NaN();

// A 4-D tensor (B, H, rows, cols) as doubles, with the matrix of one (example, head).
struct HeadMatrices {
  int64_t batch = 0, heads = 0, rows = 0, cols = 0;
  std::vector<double> values;

  HeadMatrices(const Tensor& tensor, const char* what) {
    LATTICE_CHECK(tensor.defined() && tensor.rank() == 4, "[attention_stability] ", what,
                  " must be (B, H, T, n), got ",
                  tensor.defined() ? to_string(tensor.shape()) : std::string("undefined"));
    LATTICE_CHECK(tensor.dtype() == DType::float32 || tensor.dtype() == DType::float64,
                  "[attention_stability] ", what, " must be float32 or float64, got ",
                  tensor.dtype());
    batch = tensor.shape(0);
    heads = tensor.shape(1);
    rows = tensor.shape(2);
    cols = tensor.shape(3);
    values = tensor.to_vector<double>();
  }

  DenseMatrix matrix(int64_t example, int64_t head) const {
    const auto begin = values.begin() + (example * heads + head) * rows * cols;
    return {rows, cols, std::vector<double>(begin, begin + rows * cols)};
  }
};

double frobenius_norm(const DenseMatrix& matrix) {
  return euclidean_norm(matrix.values);
}

double matrix_norm(const DenseMatrix& matrix, const StabilityOptions& options) {
  return options.score_norm == MatrixNorm::frobenius ? frobenius_norm(matrix)
                                                     : spectral_norm(matrix, options.spectral);
}

// Aggregates per-head values; NaN anywhere gives NaN (std::max would hide it by order).
double aggregate(const std::vector<double>& values, HeadAggregation how) {
  double result = 0;
  for (double value : values) {
    if (std::isnan(value)) return not_a_number;
    result = how == HeadAggregation::max ? std::max(result, value) : result + value;
  }
  return result;
}

// max(a, b) that keeps a NaN.
double max_keep_nan(double a, double b) {
  return std::isnan(a) || std::isnan(b) ? not_a_number : std::max(a, b);
}

double median(std::vector<double> values) {
  LATTICE_CHECK(!values.empty(), "[norm_input_statistics] no rows to take the median of");
  const size_t middle = values.size() / 2;
  std::nth_element(values.begin(), values.begin() + long(middle), values.end());
  const double upper = values[middle];
  if (values.size() % 2 == 1) return upper;
  const double lower = *std::max_element(values.begin(), values.begin() + long(middle));
  return 0.5 * (lower + upper);
}

// Per-row σ²(x) (or mean(x²)) of input (..., dim), over the first sample_examples of axis 0.
std::vector<double> row_statistics(const Tensor& input, bool mean_square, int64_t sample_examples) {
  LATTICE_CHECK(input.defined() && input.rank() >= 1 && input.numel() > 0,
                "[norm_input_statistics] expects a non-empty input (..., dim), got ",
                input.defined() ? to_string(input.shape()) : std::string("undefined"));
  LATTICE_CHECK(input.dtype() == DType::float32 || input.dtype() == DType::float64,
                "[norm_input_statistics] expects float32 or float64, got ", input.dtype());
  NoGradGuard no_grad;
  Tensor sampled = input;
  if (sample_examples > 0 && input.rank() >= 2 && input.shape(0) > sample_examples)
    sampled = input.narrow(0, 0, sample_examples);
  const int64_t dim = sampled.shape(-1);
  const std::vector<double> values = sampled.to_vector<double>();
  const int64_t rows = int64_t(values.size()) / dim;
  std::vector<double> statistics(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    const double* row = values.data() + r * dim;
    double mean = 0;
    if (!mean_square) mean = std::accumulate(row, row + dim, 0.0) / double(dim);
    double squares = 0;  // two-pass: no cancellation when |mean| >> σ
    for (int64_t j = 0; j < dim; ++j) squares += (row[j] - mean) * (row[j] - mean);
    statistics[size_t(r)] = squares / double(dim);
  }
  return statistics;
}

// The top eigenvalue of J(p) = Diag(p) - pp^T applied matrix-free (J x = p∘x - p (p·x)).
double jacobian_power_iteration(std::span<const double> p, int power_steps) {
  const size_t n = p.size();
  if (n < 2) return 0;  // a single probability is 1: J = 0
  size_t first = 0, second = 1;
  if (p[second] > p[first]) std::swap(first, second);
  for (size_t i = 2; i < n; ++i) {
    if (p[i] > p[first]) {
      second = first;
      first = i;
    } else if (p[i] > p[second]) {
      second = i;
    }
  }
  std::vector<double> x(n, 0.0), image(n);
  x[first] = std::sqrt(0.5);
  x[second] = -std::sqrt(0.5);
  double rayleigh = 0;
  for (int step = 0; step < std::max(power_steps, 1); ++step) {
    double p_dot_x = 0;
    for (size_t i = 0; i < n; ++i) p_dot_x += p[i] * x[i];
    for (size_t i = 0; i < n; ++i) image[i] = p[i] * x[i] - p[i] * p_dot_x;
    rayleigh = 0;
    for (size_t i = 0; i < n; ++i) rayleigh += x[i] * image[i];
    const double image_norm = euclidean_norm(image);
    if (image_norm == 0) break;
    for (size_t i = 0; i < n; ++i) x[i] = image[i] / image_norm;
  }
  return rayleigh;
}

// The columns row i of S and P may use: all, or 0..i under a causal mask.
int64_t visible_columns(int64_t row, int64_t cols, bool causal) {
  return causal ? std::min(row + 1, cols) : cols;
}

double row_norm(const DenseMatrix& matrix, int64_t row, int64_t length) {
  return euclidean_norm({matrix.values.data() + row * matrix.cols, size_t(length)});
}

void check_norm_statistics(const NormInputStatistics& statistics, const char* op) {
  LATTICE_CHECK(statistics.dim > 0 && statistics.eps > 0, "[", op,
                "] needs dim > 0 and eps > 0, got dim ", statistics.dim, ", eps ", statistics.eps);
}

}  // namespace

// ---- Attention.

double softmax_jacobian_norm(std::span<const double> probabilities, int power_steps) {
  return jacobian_power_iteration(probabilities, power_steps);
}

double softmax_jacobian_norm_exact(std::span<const double> probabilities) {
  const int64_t n = int64_t(probabilities.size());
  if (n == 0) return 0;
  DenseMatrix jacobian{n, n, std::vector<double>(size_t(n * n))};
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j)
      jacobian.values[size_t(i * n + j)] = (i == j ? probabilities[size_t(i)] : 0.0) -
                                           probabilities[size_t(i)] * probabilities[size_t(j)];
  return symmetric_eigenvalues(jacobian).front();
}

double kappa_softmax(const DenseMatrix& scores,
                     const DenseMatrix& probabilities,
                     const StabilityOptions& options) {
  LATTICE_CHECK(scores.rows == probabilities.rows && scores.cols == probabilities.cols,
                "[kappa_softmax] scores (", scores.rows, ", ", scores.cols, ") and probabilities (",
                probabilities.rows, ", ", probabilities.cols, ") differ in shape");
  // App. A.6: only the top-M rows by ||S_i|| are examined (the rows where a score
  // perturbation is largest); M = 0 examines all.
  std::vector<std::pair<double, int64_t>> rows(static_cast<size_t>(scores.rows));
  for (int64_t i = 0; i < scores.rows; ++i)
    rows[size_t(i)] = {row_norm(scores, i, visible_columns(i, scores.cols, options.causal)), i};
  const size_t chosen =
      options.softmax_rows > 0 ? std::min(rows.size(), size_t(options.softmax_rows)) : rows.size();
  std::partial_sort(rows.begin(), rows.begin() + long(chosen), rows.end(),
                    [](const auto& a, const auto& b) { return a.first > b.first; });
  double result = 0;
  for (size_t r = 0; r < chosen; ++r) {
    const auto [score_norm, i] = rows[r];
    const int64_t length = visible_columns(i, scores.cols, options.causal);
    const std::span<const double> p(probabilities.values.data() + i * scores.cols, size_t(length));
    const double jacobian = options.softmax_exact
                                ? softmax_jacobian_norm_exact(p)
                                : softmax_jacobian_norm(p, options.softmax_power_steps);
    result = max_keep_nan(result, jacobian * score_norm / euclidean_norm(p));
  }
  return result;
}

double kappa_score(const DenseMatrix& q,
                   const DenseMatrix& k,
                   const DenseMatrix& scores,
                   double temperature,
                   const StabilityOptions& options) {
  LATTICE_CHECK(q.cols == k.cols && scores.rows == q.rows && scores.cols == k.rows,
                "[kappa_score] q (", q.rows, ", ", q.cols, "), k (", k.rows, ", ", k.cols,
                ") and scores (", scores.rows, ", ", scores.cols,
                ") do not form S = q k^T / temperature");
  const double score_norm = matrix_norm(scores, options);
  if (score_norm == 0) return not_a_number;
  return matrix_norm(q, options) * matrix_norm(k, options) / (score_norm * temperature);
}

AttentionStability attention_stability(const nn::AttentionInternals& internals,
                                       const Tensor& temperature,
                                       const StabilityOptions& options) {
  NoGradGuard no_grad;
  const HeadMatrices q(internals.q, "q"), k(internals.k, "k"), v(internals.v, "v");
  const HeadMatrices scores(internals.scores, "scores");
  const HeadMatrices probabilities(internals.probabilities, "probabilities");
  const int64_t batch = q.batch, heads = q.heads, length = q.rows, head_dim = q.cols;
  const auto same_batch_heads = [&](const HeadMatrices& m) {
    return m.batch == batch && m.heads == heads;
  };
  LATTICE_CHECK(same_batch_heads(k) && same_batch_heads(v) && same_batch_heads(scores) &&
                    same_batch_heads(probabilities) && k.cols == head_dim && v.rows == k.rows &&
                    scores.rows == length && scores.cols == k.rows &&
                    probabilities.rows == length && probabilities.cols == k.rows,
                "[attention_stability] inconsistent shapes: q ", internals.q.shape(), ", k ",
                internals.k.shape(), ", v ", internals.v.shape(), ", scores ",
                internals.scores.shape(), ", probabilities ", internals.probabilities.shape(),
                " (expected q (B, H, T, d), k and v (B, H, S, d), scores and probabilities (B, "
                "H, T, S))");
  std::vector<double> tau(static_cast<size_t>(heads), std::sqrt(double(head_dim)));
  if (temperature.defined()) {
    LATTICE_CHECK(temperature.numel() == heads, "[attention_stability] temperature must have ",
                  heads, " values (one per head), got shape ", temperature.shape());
    tau = temperature.to_vector<double>();
  }
  const int64_t examples = options.examples > 0 ? std::min(options.examples, batch) : batch;

  AttentionStability result;
  result.kappa_score_per_head.assign(size_t(heads), 0.0);
  result.kappa_softmax_per_head.assign(size_t(heads), 0.0);
  result.kappa_v_per_head.assign(size_t(heads), 0.0);
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t b = 0; b < examples; ++b) {
      const DenseMatrix s = scores.matrix(b, h);
      double& score = result.kappa_score_per_head[size_t(h)];
      score = max_keep_nan(score,
                           kappa_score(q.matrix(b, h), k.matrix(b, h), s, tau[size_t(h)], options));
      double& softmax = result.kappa_softmax_per_head[size_t(h)];
      softmax = max_keep_nan(softmax, kappa_softmax(s, probabilities.matrix(b, h), options));
      double& value = result.kappa_v_per_head[size_t(h)];
      value = max_keep_nan(value, condition_number(v.matrix(b, h), options.ridge));
    }
  }
  result.kappa_score = aggregate(result.kappa_score_per_head, options.heads);
  result.kappa_softmax = aggregate(result.kappa_softmax_per_head, options.heads);
  result.kappa_v = aggregate(result.kappa_v_per_head, options.heads);
  return result;
}

// ---- Linear maps.

double kappa_eff(const std::vector<Tensor>& weights, double ridge) {
  LATTICE_CHECK(!weights.empty(), "[kappa_eff] expects at least one weight matrix");
  double sum = 0;
  for (const Tensor& weight : weights) sum += condition_number(weight, ridge);
  return sum;
}

std::vector<Tensor> feed_forward_weights(const nn::Module& feed_forward) {
  if (const auto* mlp = dynamic_cast<const nn::GeluMLP*>(&feed_forward))
    return {mlp->fc1->weight, mlp->fc2->weight};
  if (const auto* swiglu = dynamic_cast<const nn::SwiGLU*>(&feed_forward))
    return {swiglu->w1->weight, swiglu->w3->weight, swiglu->w2->weight};
  throw Error(concat("[kappa_eff] feed-forward module ", feed_forward.type_name(),
                     " is not a GeluMLP or SwiGLU"));
}

// ---- LayerNorm.

NormInputStatistics norm_input_statistics(const Tensor& input,
                                          double eps,
                                          bool mean_square,
                                          int64_t sample_examples) {
  const std::vector<double> rows = row_statistics(input, mean_square, sample_examples);
  return {input.shape(-1), int64_t(rows.size()), median(rows), eps};
}

double layer_norm_rho(double variance, double eps, int64_t dim, double machine_epsilon) {
  return variance / eps * double(dim) * machine_epsilon;
}

double layer_norm_error_coefficient(double variance,
                                    double eps,
                                    const LayerNormConstants& constants) {
  return constants.c1 * std::sqrt(variance / eps) + constants.c2 * variance / eps + constants.c3;
}

double c_ln(const NormInputStatistics& statistics,
            double machine_epsilon,
            const LayerNormConstants& constants) {
  check_norm_statistics(statistics, "c_ln");
  const double rho =
      layer_norm_rho(statistics.median_variance, statistics.eps, statistics.dim, machine_epsilon);
  return rho < 1
             ? layer_norm_error_coefficient(statistics.median_variance, statistics.eps, constants)
             : constants.c3;
}

// ---- One block.

BlockStability block_stability(const nn::AttentionInternals& attention,
                               const Tensor& temperature,
                               const Tensor& output_projection,
                               const std::vector<Tensor>& feed_forward,
                               const std::map<std::string, NormInputStatistics>& norm_inputs,
                               double machine_epsilon,
                               const StabilityOptions& options) {
  BlockStability result;
  result.attention = attention_stability(attention, temperature, options);
  const DenseMatrix output_weight = to_dense(output_projection);
  result.wo_norm = spectral_norm(output_weight, options.spectral);
  result.kappa_wo = condition_number(output_weight, options.ridge);
  result.kappa_eff = kappa_eff(feed_forward, options.ridge);
  result.kappa_eff_unified = result.kappa_eff + result.kappa_wo;
  for (const auto& [name, statistics] : norm_inputs) {
    check_norm_statistics(statistics, "block_stability");
    const double rho =
        layer_norm_rho(statistics.median_variance, statistics.eps, statistics.dim, machine_epsilon);
    const double term = c_ln(statistics, machine_epsilon, options.layer_norm);
    result.norms.push_back({name, statistics.eps, rho, term});
    result.c_ln += term;
  }
  // κ_softmax (1 + κ_score) κ(V): Theorem 1's amplification with the GEMM constant c = 1.
  const AttentionStability& heads = result.attention;
  const double attention_term = heads.kappa_softmax * (1 + heads.kappa_score) * heads.kappa_v;
  result.predictor = attention_term * result.wo_norm + result.kappa_eff + result.c_ln;
  result.unified_term = result.kappa_eff_unified + attention_term + result.c_ln;
  return result;
}

BlockStability block_stability(const nn::TransformerBlock& block,
                               const nn::AttentionInternals& attention,
                               const std::map<std::string, NormInputStatistics>& norm_inputs,
                               double machine_epsilon,
                               const StabilityOptions& options) {
  NoGradGuard no_grad;
  StabilityOptions block_options = options;
  block_options.causal = block.attention->options.causal;
  return block_stability(attention, block.attention->temperature(), block.attention->wo->weight,
                         feed_forward_weights(*block.feed_forward), norm_inputs, machine_epsilon,
                         block_options);
}

// ---- Residual branches.

namespace {

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double sum = 0;
  for (size_t i = 0; i < a.size(); ++i) sum += a[i] * b[i];
  return sum;
}

// Makes x a unit vector orthogonal to `basis` (orthonormal) by classical Gram-Schmidt applied
// twice ("twice is enough", Giraud et al. 2005). False when nothing of x is left: a zero x, or
// one inside the span to within 1e-12 of its norm (the space is exhausted).
bool orthonormalize(std::vector<double>& x, const std::vector<std::vector<double>>& basis) {
  const double original = euclidean_norm(x);
  for (int pass = 0; pass < 2; ++pass)
    for (const std::vector<double>& b : basis) {
      const double coefficient = dot(x, b);
      for (size_t i = 0; i < x.size(); ++i) x[i] -= coefficient * b[i];
    }
  const double remaining = euclidean_norm(x);
  if (!(remaining > 1e-12 * original)) return false;
  for (double& value : x) value /= remaining;
  return true;
}

// values as a tensor like `like` (its shape, dtype and device).
Tensor tensor_like(const std::vector<double>& values, const Tensor& like) {
  return from_vector<double>(values, like.shape()).to(like.dtype()).to(like.device());
}

// Stops every parameter of `module` requiring gradients for its lifetime, so that backwards
// through the module reach only its input and leave the parameters' grad() untouched.
class FrozenParameters {
 public:
  explicit FrozenParameters(const nn::Module& module) {
    for (const Tensor& parameter : module.parameters()) {
      saved_.emplace_back(parameter, requires_grad(parameter));
      set_requires_grad(parameter, false);
    }
  }
  ~FrozenParameters() {
    for (const auto& [parameter, required] : saved_) set_requires_grad(parameter, required);
  }
  FrozenParameters(const FrozenParameters&) = delete;
  FrozenParameters& operator=(const FrozenParameters&) = delete;

 private:
  std::vector<std::pair<Tensor, bool>> saved_;
};

}  // namespace

double jacobian_spectral_norm(const std::function<Tensor(const Tensor&)>& map,
                              const Tensor& x,
                              PowerIteration settings) {
  LATTICE_CHECK(grad_enabled(),
                "[jacobian_norm] needs gradient recording (J^T u is a backward); it was called "
                "under NoGradGuard");
  LATTICE_CHECK(x.dtype() == DType::float32 || x.dtype() == DType::float64,
                "[jacobian_norm] expected a float32 or float64 point, got ", dtype_name(x.dtype()));
  LATTICE_CHECK(x.numel() > 0, "[jacobian_norm] the point is empty");
  LATTICE_CHECK(settings.iterations >= 1, "[jacobian_norm] iterations must be >= 1, got ",
                settings.iterations);
  // A fresh leaf: the caller's x keeps no graph and gets no gradient.
  const Tensor point = detach(x).clone();
  set_requires_grad(point);
  const Tensor image = map(point);
  LATTICE_CHECK(requires_grad(image),
                "[jacobian_norm] the map's output does not depend on its input through recorded "
                "ops");
  const std::vector<double> center = point.to_vector<double>();
  const double unit = x.dtype() == DType::float64 ? std::numeric_limits<double>::epsilon()
                                                  : double(std::numeric_limits<float>::epsilon());
  const double center_norm = euclidean_norm(center);
  const double step = std::cbrt(unit) * (center_norm > 0 ? center_norm : 1.0);

  // J v by a central difference, without recording.
  std::vector<double> shifted(center.size());
  const auto jacobian_times = [&](const std::vector<double>& v) {
    NoGradGuard no_grad;
    for (size_t i = 0; i < center.size(); ++i) shifted[i] = center[i] + step * v[i];
    const std::vector<double> up = map(tensor_like(shifted, point)).to_vector<double>();
    for (size_t i = 0; i < center.size(); ++i) shifted[i] = center[i] - step * v[i];
    const std::vector<double> down = map(tensor_like(shifted, point)).to_vector<double>();
    std::vector<double> product(up.size());
    for (size_t i = 0; i < up.size(); ++i) product[i] = (up[i] - down[i]) / (2 * step);
    return product;
  };
  // J^T u exactly: one backward of <map(x), u> through the kept graph.
  const auto transpose_times = [&](const std::vector<double>& u) {
    zero_grad(point);
    backward(image, tensor_like(u, image), /*retain_graph=*/true);
    return grad(point).to_vector<double>();
  };

  // Golub-Kahan-Lanczos with full reorthogonalization: orthonormal bases V (inputs) and U
  // (outputs) of the Krylov spaces of J^T J and J J^T, each step one J v and one J^T u. The
  // estimate is σmax of the projection B = U^T J V, formed from the exact products J^T u_i as
  // B_ij = <J^T u_i, v_j>; for orthonormal U, V it never exceeds ||J||2, however inexact the
  // differences that chose U, and it grows with the step count.
  std::vector<std::vector<double>> inputs, outputs, transposed;  // v_j, u_i, J^T u_i
  std::vector<double> next = power_iteration_start(int64_t(center.size()));
  double estimate = 0;
  for (int iteration = 0; iteration < settings.iterations; ++iteration) {
    if (!orthonormalize(next, inputs)) break;  // J^T J's Krylov space is exhausted
    inputs.push_back(next);
    std::vector<double> output = jacobian_times(inputs.back());
    if (!std::isfinite(euclidean_norm(output))) return std::numeric_limits<double>::quiet_NaN();
    if (!orthonormalize(output, outputs)) break;
    outputs.push_back(output);
    transposed.push_back(transpose_times(outputs.back()));
    if (!std::isfinite(euclidean_norm(transposed.back())))
      return std::numeric_limits<double>::quiet_NaN();
    const int64_t size = int64_t(inputs.size());
    DenseMatrix projection{size, size, std::vector<double>(size_t(size * size))};
    for (int64_t i = 0; i < size; ++i)
      for (int64_t j = 0; j < size; ++j)
        projection.values[size_t(i * size + j)] = dot(transposed[size_t(i)], inputs[size_t(j)]);
    const double previous = estimate;
    estimate = singular_values(projection).front();
    if (iteration > 0 && estimate - previous <= settings.tolerance * estimate) break;
    next = transposed.back();
  }
  return estimate;
}

double residual_jacobian_norm(nn::Module& block,
                              const Tensor& input,
                              const ResidualJacobianOptions& options) {
  LATTICE_CHECK(input.rank() >= 1 && input.shape(0) >= 1,
                "[residual_jacobian_norm] expected an input (B, ...) with B >= 1, got ",
                input.shape());
  LATTICE_CHECK(options.examples >= 0, "[residual_jacobian_norm] examples must be >= 0, got ",
                options.examples);
  const FrozenParameters frozen(block);
  const int64_t examples =
      options.examples == 0 ? input.shape(0) : std::min(options.examples, input.shape(0));
  const auto residual = [&block](const Tensor& x) { return sub(block(x), x); };
  double rho = 0;
  for (int64_t example = 0; example < examples; ++example) {
    const double norm =
        jacobian_spectral_norm(residual, input.narrow(0, example, 1), options.steps);
    if (std::isnan(norm)) return norm;
    rho = std::max(rho, norm);
  }
  return rho;
}

ForwardBound forward_bound(const std::vector<double>& terms,
                           const std::vector<double>& rhos,
                           double machine_epsilon) {
  LATTICE_CHECK(terms.size() == rhos.size(), "[forward_bound] ", terms.size(), " local terms but ",
                rhos.size(),
                " residual factors; expected one of each per "
                "block");
  ForwardBound result;
  result.downstream.resize(terms.size());
  // Π_{k>ℓ} (1 + ρ_k), accumulated from the last block back (App. A.5, step 3).
  double amplification = 1;
  for (size_t layer = terms.size(); layer-- > 0;) {
    result.downstream[layer] = terms[layer] * amplification;
    amplification *= 1 + rhos[layer];
  }
  double sum = 0;
  for (double term : result.downstream) sum += term;
  result.bound = machine_epsilon * sum;
  return result;
}

// ---- The LayerNorm-ε policy.

LayerNormEpsilonPolicy LayerNormEpsilonPolicy::parse(const std::string& spec) {
  constexpr const char* expected = "expected rho=R,cap=C,every=N[,floor=F][,sample=N]";
  LayerNormEpsilonPolicy policy;
  std::map<std::string, std::string> items;
  std::stringstream stream(spec);
  for (std::string item; std::getline(stream, item, ',');) {
    const size_t equals = item.find('=');
    LATTICE_CHECK(equals != std::string::npos && equals > 0 && equals + 1 < item.size(),
                  "[ln-eps-policy] \"", spec, "\": item \"", item, "\" is not key=value (",
                  expected, ")");
    const std::string key = item.substr(0, equals);
    LATTICE_CHECK(
        key == "rho" || key == "cap" || key == "every" || key == "floor" || key == "sample",
        "[ln-eps-policy] \"", spec, "\": unknown key \"", key,
        "\" (known: rho, cap, every, floor, sample)");
    LATTICE_CHECK(items.emplace(key, item.substr(equals + 1)).second, "[ln-eps-policy] \"", spec,
                  "\": \"", key, "\" given twice");
  }
  if (!spec.empty() && spec.back() == ',')
    throw Error(concat("[ln-eps-policy] \"", spec, "\": empty item at the end (", expected, ")"));
  for (const char* key : {"rho", "cap", "every"})
    LATTICE_CHECK(items.count(key), "[ln-eps-policy] \"", spec, "\": missing \"", key, "=\" (",
                  expected, ")");

  const auto number = [&](const std::string& key, const char* what) {
    const std::string& text = items.at(key);
    double value = 0;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    LATTICE_CHECK(error == std::errc() && end == text.data() + text.size() && std::isfinite(value),
                  "[ln-eps-policy] \"", spec, "\": ", key, "=", text, " is not a number (", what,
                  ")");
    return value;
  };
  const auto count = [&](const std::string& key) {
    const std::string& text = items.at(key);
    int64_t value = 0;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    LATTICE_CHECK(error == std::errc() && end == text.data() + text.size() && value >= 1,
                  "[ln-eps-policy] \"", spec, "\": ", key, "=", text,
                  " is not a whole number >= 1");
    return value;
  };
  policy.target_rho = number("rho", "the target ρ* in (0, 1)");
  LATTICE_CHECK(policy.target_rho > 0 && policy.target_rho < 1, "[ln-eps-policy] \"", spec,
                "\": rho=", items.at("rho"), " must lie in (0, 1)");
  policy.eps_max = number("cap", "the largest ε, > 0");
  LATTICE_CHECK(policy.eps_max > 0, "[ln-eps-policy] \"", spec, "\": cap=", items.at("cap"),
                " must be > 0");
  policy.every = count("every");
  if (items.count("floor")) {
    policy.eps_min = number("floor", "the smallest ε, > 0");
    LATTICE_CHECK(policy.eps_min > 0, "[ln-eps-policy] \"", spec, "\": floor=", items.at("floor"),
                  " must be > 0");
  }
  LATTICE_CHECK(policy.eps_min <= policy.eps_max, "[ln-eps-policy] \"", spec, "\": floor ",
                policy.eps_min, " exceeds cap ", policy.eps_max);
  if (items.count("sample")) policy.sample = count("sample");
  return policy;
}

std::string LayerNormEpsilonPolicy::spec() const {
  // Shortest round-trip form of each number: "rho=0.6", not "rho=0.59999999999999998".
  const auto shortest = [](double value) {
    char text[32];
    const auto [end, error] = std::to_chars(text, text + sizeof text, value);
    return std::string(text, error == std::errc() ? end : text);
  };
  return concat("rho=", shortest(target_rho), ",cap=", shortest(eps_max), ",every=", every,
                ",floor=", shortest(eps_min), ",sample=", sample);
}

std::optional<double> proposed_epsilon(const LayerNormEpsilonPolicy& policy,
                                       const NormInputStatistics& statistics,
                                       double current_eps,
                                       double machine_epsilon) {
  const double variance = statistics.median_variance;
  if (layer_norm_rho(variance, current_eps, statistics.dim, machine_epsilon) >= 1)
    return std::nullopt;
  const double candidate = variance * double(statistics.dim) * machine_epsilon / policy.target_rho;
  const double clipped = std::clamp(candidate, policy.eps_min, policy.eps_max);
  if (clipped > current_eps) return clipped;
  return std::nullopt;
}

double* norm_epsilon(nn::Module& module) {
  if (auto* layer_norm = dynamic_cast<nn::LayerNorm*>(&module)) return &layer_norm->eps;
  if (auto* rms_norm = dynamic_cast<nn::RMSNorm*>(&module)) return &rms_norm->eps;
  return nullptr;
}

LayerNormEpsilonController::LayerNormEpsilonController(LayerNormEpsilonPolicy policy)
    : policy_(policy) {}

namespace {

std::map<std::string, double*> norm_epsilons(nn::Module& model) {
  std::map<std::string, double*> result;
  for (const auto& [name, module] : model.named_modules())
    if (double* eps = norm_epsilon(*module)) result.emplace(name, eps);
  return result;
}

}  // namespace

std::vector<EpsilonChange> LayerNormEpsilonController::apply(
    nn::Module& model,
    const std::map<std::string, NormInputStatistics>& statistics,
    double machine_epsilon) {
  LATTICE_CHECK(machine_epsilon > 0 && machine_epsilon < 1,
                "[ln-eps-policy] machine epsilon must lie in (0, 1), got ", machine_epsilon);
  const std::map<std::string, double*> epsilons = norm_epsilons(model);
  std::vector<EpsilonChange> changes;
  for (const auto& [name, input] : statistics) {
    const auto found = epsilons.find(name);
    LATTICE_CHECK(found != epsilons.end(), "[ln-eps-policy] \"", name,
                  "\" is not a LayerNorm or RMSNorm of the model");
    double& eps = *found->second;
    const std::optional<double> proposed = proposed_epsilon(policy_, input, eps, machine_epsilon);
    if (!proposed) continue;
    original_eps_.emplace(name, eps);  // keeps the first (original) value
    changes.push_back({name, eps, *proposed,
                       layer_norm_rho(input.median_variance, eps, input.dim, machine_epsilon)});
    eps = *proposed;
  }
  return changes;
}

std::vector<EpsilonChange> LayerNormEpsilonController::restore(nn::Module& model) {
  const std::map<std::string, double*> epsilons = norm_epsilons(model);
  std::vector<EpsilonChange> undone;
  for (const auto& [name, original] : original_eps_) {
    const auto found = epsilons.find(name);
    LATTICE_CHECK(found != epsilons.end(), "[ln-eps-policy] cannot restore \"", name,
                  "\": not a LayerNorm or RMSNorm of the model");
    undone.push_back({name, *found->second, original, not_a_number});
    *found->second = original;
  }
  original_eps_.clear();
  return undone;
}

// ---- Measuring the norms' inputs.

std::map<std::string, NormInputStatistics> measure_norm_inputs(nn::Module& model,
                                                               const std::function<void()>& forward,
                                                               int64_t sample_examples) {
  struct Observed {
    int64_t dim = 0;
    double eps = 0;
    std::vector<double> rows;
  };
  std::map<std::string, Observed> observed;
  // Hooks installed on each norm module, removed by the destructor even when forward throws.
  struct InstalledHooks {
    std::vector<std::pair<nn::Module*, int>> hooks;
    ~InstalledHooks() {
      for (const auto& [module, id] : hooks) module->remove_forward_hook(id);
    }
  } installed;
  for (const auto& [name, module] : model.named_modules()) {
    const double* eps = norm_epsilon(*module);
    if (!eps) continue;
    const bool mean_square = dynamic_cast<nn::RMSNorm*>(module) != nullptr;
    Observed* slot = &observed[name];
    const int id = module->add_forward_hook(
        [slot, eps, mean_square, sample_examples](
            const nn::Module&, const std::vector<Tensor>& inputs, const Tensor&) {
          const Tensor& input = inputs.at(0);
          const std::vector<double> rows = row_statistics(input, mean_square, sample_examples);
          slot->dim = input.shape(-1);
          slot->eps = *eps;
          slot->rows.insert(slot->rows.end(), rows.begin(), rows.end());
        });
    installed.hooks.emplace_back(module, id);
  }
  forward();
  std::map<std::string, NormInputStatistics> result;
  for (const auto& [name, seen] : observed)
    if (!seen.rows.empty())
      result.emplace(name, NormInputStatistics{seen.dim, int64_t(seen.rows.size()),
                                               median(seen.rows), seen.eps});
  return result;
}

}  // namespace lattice::diagnostics
