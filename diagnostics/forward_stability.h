// Forward-stability diagnostics of the transformer-forward-stability paper (§2-§3): κ_score,
// κ_softmax, κ(V), ||W_O||2, κ_eff, ρ_LN, C_LN, the residual factor ρ_ℓ = ||J_fℓ||2 and the
// combined predictor per block, and the LayerNorm-ε policy of Algorithm 1 with the hooks that
// measure the norms' input statistics.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "diagnostics/linear_algebra.h"
#include "nn/attention.h"
#include "nn/transformer.h"

namespace lattice::diagnostics {

// ---- Attention: κ_score, κ_softmax, κ(V) (§3.1).

/// Which norm κ_score uses for ||Q||, ||K|| and ||S||: the definition's Frobenius norm (§3.1,
/// Lemma 1) or the estimation protocol's spectral norms (§3.4, by power iteration).
enum class MatrixNorm : uint8_t { frobenius, spectral };
/// How per-head values become one per layer: the paper's maximum, or its conservative sum.
enum class HeadAggregation : uint8_t { max, sum };

/// The absolute constants of Proposition 1 (kernel-dependent; the paper does not give them).
struct LayerNormConstants {
  double c1 = 1, c2 = 1, c3 = 1;
};

/// Settings of residual_jacobian_norm.
struct ResidualJacobianOptions {
  /// ρ_ℓ is per example: the maximum over the first `examples` entries of the input's axis 0
  /// (0 takes all).
  int64_t examples = 1;
  /// Lanczos steps (each one backward and two forwards, see jacobian_spectral_norm) and the
  /// relative growth of the estimate below which they stop early.
  PowerIteration steps = {.iterations = 20, .tolerance = 1e-5};
};

struct StabilityOptions {
  MatrixNorm score_norm = MatrixNorm::frobenius;
  /// M: κ_softmax looks at the M rows of each (example, head) with the largest ||S_i|| (App.
  /// A.6); 0 takes every row.
  int64_t softmax_rows = 8;
  /// Products with J(p) per row (the paper's 2-3 power-iteration steps); ignored when exact.
  int softmax_power_steps = 3;
  /// ||J(p)||2 from the full eigen-decomposition of Diag(p) - pp^T (LAPACK) instead.
  bool softmax_exact = false;
  /// Row i of S sees keys 0..i only: the masked keys are left out of ||S_i||. (The probe's S
  /// is taken before the mask; P is zero there.)
  bool causal = false;
  /// The attention diagnostics use the first `examples` entries of the batch; 0 uses all.
  int64_t examples = 0;
  HeadAggregation heads = HeadAggregation::max;
  /// λ in κ(A) = σmax / (σmin + λ) (§3.4 "Estimation protocols"), for V and for the weights.
  double ridge = 1e-6;
  /// Spectral norms: ||Q||2, ||K||2, ||S||2 (score_norm spectral) and ||W_O||2.
  PowerIteration spectral = {};
  /// C_LN's constants (block_stability).
  LayerNormConstants layer_norm = {};
  /// ρ_ℓ of each block (the stability instrument).
  ResidualJacobianOptions residual = {};
};

/// The attention diagnostics of one layer. Each (example, head) is one instance of the
/// paper's single-sequence head; per-head values are the maximum over the measured examples
/// (for κ_softmax this is its max over rows, with every example's rows), and the layer value
/// aggregates the heads (max by default). NaN when a norm in a denominator is zero.
struct AttentionStability {
  std::vector<double> kappa_score_per_head, kappa_softmax_per_head, kappa_v_per_head;  // (H)
  double kappa_score = 0, kappa_softmax = 0, kappa_v = 0;
};

/// internals: q, k, v (B, H, T, d), scores S and probabilities P (B, H, T, S_keys), S already
/// divided by the temperature. temperature: τ_h (H), the divisor of S (nn::MultiHeadAttention::
/// temperature()); undefined means sqrt(d). κ_score = ||Q|| ||K|| / (||S|| τ_h), which is the
/// paper's ||Q|| ||K|| / (||S|| sqrt(d)) when τ_h = sqrt(d) and keeps ||S|| τ_h = ||QK^T|| (the
/// GEMM Lemma 1 bounds) for a learned temperature. Throws on inconsistent shapes.
AttentionStability attention_stability(const nn::AttentionInternals& internals,
                                       const Tensor& temperature = {},
                                       const StabilityOptions& options = {});

/// ||J(p)||2 = λmax(Diag(p) - pp^T) of a probability row p (n) by `power_steps` products from
/// e_a - e_b (a, b the two largest p_i): the top eigenvector u_i ∝ p_i / (p_i - λ) has
/// opposite signs there, so that start is never orthogonal to it, and a two-way tie (the
/// maximiser, 1/2) is exact at once. The Rayleigh quotient returned is a lower bound.
double softmax_jacobian_norm(std::span<const double> probabilities, int power_steps);
/// The same from the full eigen-decomposition of the explicit (n, n) Jacobian (LAPACK).
double softmax_jacobian_norm_exact(std::span<const double> probabilities);

/// κ_softmax of one head (§3.1): the maximum over the chosen rows i (options.softmax_rows,
/// options.causal) of ||J(P_i)||2 ||S_i|| / ||P_i||. scores, probabilities: (T, S_keys).
double kappa_softmax(const DenseMatrix& scores,
                     const DenseMatrix& probabilities,
                     const StabilityOptions& options = {});

/// κ_score of one head: ||Q|| ||K|| / (||S|| temperature) with options.score_norm.
/// q: (T, d), k: (S_keys, d), scores: (T, S_keys).
double kappa_score(const DenseMatrix& q,
                   const DenseMatrix& k,
                   const DenseMatrix& scores,
                   double temperature,
                   const StabilityOptions& options = {});

// ---- Linear maps: κ_eff (§3.4).

/// κ_eff of a feed-forward: Σ κ(W_i) = σmax / (σmin + ridge) over its weights (out, in), the
/// paper's κ(W1) + κ(W2) (three terms for SwiGLU). Throws when `weights` is empty.
double kappa_eff(const std::vector<Tensor>& weights, double ridge = 1e-6);

/// The weights of a feed-forward module, in the order it applies them: GeluMLP fc1, fc2;
/// SwiGLU w1, w3, w2. Throws "[kappa_eff] ..." for another module type.
std::vector<Tensor> feed_forward_weights(const nn::Module& feed_forward);

// ---- LayerNorm: ρ_LN and C_LN (§3.3, Proposition 1).

/// The input statistic of one norm module that ρ_LN and Algorithm 1 use.
struct NormInputStatistics {
  int64_t dim = 0;             // d_model: the normalised axis' length
  int64_t rows = 0;            // rows the median was taken over
  double median_variance = 0;  // median over rows of σ²(x); RMSNorm: of the mean square
  double eps = 0;              // the module's ε when measured
};

/// Statistics of a norm's input (..., dim) with the module's `eps`: per row, σ²(x) (population
/// variance, as LayerNorm divides by) or, with mean_square (RMSNorm, whose ε is added to the
/// mean square), mean(x²); then their median (the mean of the two middle values for an even
/// count). sample_examples > 0 keeps the first that many entries of axis 0 (the paper's
/// 16-example subsample). Throws for rank < 1, an empty input or a non-float dtype.
NormInputStatistics norm_input_statistics(const Tensor& input,
                                          double eps,
                                          bool mean_square,
                                          int64_t sample_examples = 0);

/// ρ_LN(ε) = σ²/ε · d · ε_mach (§2 "Layer normalization"): ε-dominated below 1. ε_mach as in
/// the paper's Table 1: 2^-(mantissa bits) of the LayerNorm's compute precision.
double layer_norm_rho(double variance, double eps, int64_t dim, double machine_epsilon);

/// Proposition 1's coefficient of ε_mach: C1 σ/sqrt(ε) + C2 σ²/ε + C3.
double layer_norm_error_coefficient(double variance,
                                    double eps,
                                    const LayerNormConstants& constants = {});

/// C_LN of one norm: Proposition 1's coefficient in the ε-dominated regime (ρ_LN < 1) where the
/// proposition holds, else C3: without ε dominating, A.4's Lipschitz factor is 1/σ and the
/// relative error has an O(1) coefficient (the σ²/ε term would otherwise grow without bound
/// as ε -> 0, the opposite of the regime's meaning).
double c_ln(const NormInputStatistics& statistics,
            double machine_epsilon,
            const LayerNormConstants& constants = {});

// ---- One block: everything above and the combined predictor (§3.4, Theorem 3, Exp-1).

struct NormStability {
  std::string name;  // the module's dotted name
  double eps = 0, rho_ln = 0, c_ln = 0;
};

struct BlockStability {
  AttentionStability attention;
  double wo_norm = 0;   // ||W_O||2 (power iteration)
  double kappa_wo = 0;  // κ(W_O) = σmax / (σmin + ridge)
  /// Σ κ(W_i) over the FFN weights: the Exp-1 predictor's κ_eff (W_O enters as ||W_O||2).
  double kappa_eff = 0;
  /// kappa_eff + κ(W_O): Theorem 3's κ_eff,ℓ with the output projection folded in (§3.4).
  double kappa_eff_unified = 0;
  std::vector<NormStability> norms;  // in the order of the norm_inputs map
  double c_ln = 0;                   // Σ of the block's norms' C_LN
  /// Exp-1's combined predictor κ_softmax (1 + κ_score) κ(V) ||W_O||2 + κ_eff + C_LN.
  double predictor = 0;
  /// Theorem 3's bracket with c = 1: κ_eff_unified + κ_softmax (1 + κ_score) κ(V) + C_LN.
  double unified_term = 0;
};

/// The diagnostics of one pre-norm block. attention: its probe's internals (see
/// attention_stability); temperature: τ_h (H) or undefined for sqrt(d); output_projection: W_O
/// (dim, H·d); feed_forward: the FFN weights, each (out, in); norm_inputs: the block's norm
/// modules by dotted name, each with its ε (from measure_norm_inputs); machine_epsilon: ε_mach
/// of the run's activation lattice.
BlockStability block_stability(const nn::AttentionInternals& attention,
                               const Tensor& temperature,
                               const Tensor& output_projection,
                               const std::vector<Tensor>& feed_forward,
                               const std::map<std::string, NormInputStatistics>& norm_inputs,
                               double machine_epsilon,
                               const StabilityOptions& options = {});

/// The same for an nn::TransformerBlock: W_O, the temperature, the FFN weights and the causal
/// mask (options.causal is overridden) come from the block. norm_inputs as above (the block's
/// norm1 and norm2 by their names in the model).
BlockStability block_stability(const nn::TransformerBlock& block,
                               const nn::AttentionInternals& attention,
                               const std::map<std::string, NormInputStatistics>& norm_inputs,
                               double machine_epsilon,
                               const StabilityOptions& options = {});

// ---- Residual branches: ρ_ℓ = ||J_fℓ||2 (§2 "Diagnostics used throughout", §3.2, Theorem 3).

/// ||J_f(x)||2 = σmax of the Jacobian of `map` at x (input and output flattened, any shapes;
/// float32 or float64, any device) by Golub-Kahan-Lanczos bidiagonalization (the Krylov method
/// for σmax; power iteration on J^T J with the same products converges far slower when σ1 and
/// σ2 are close, as in a freshly initialised block) from a fixed pseudo-random start, with full
/// reorthogonalization. Each step forms J v by a central difference (map(x + h v) - map(x - h v))
/// / 2h, with h = ε^(1/3) ||x|| (ε of x's dtype; ε^(1/3) alone when x = 0), which balances the
/// O(h²) truncation against the O(ε ||map(x)|| / h) rounding, and J^T u exactly, as one backward
/// of <map(x), u> with respect to a fresh leaf copy of x (the graph of map(x) is recorded once
/// and kept). The estimate σmax(U^T J V) uses only the exact J^T u products, so it is a lower
/// bound on ||J||2 for any orthonormal U, V: the differences' error only slows convergence.
/// settings.iterations: at most that many steps (Krylov dimension); tolerance: stop when the
/// estimate grows by less than that (relative). On the tests' small TransformerBlock, float64
/// agrees with the dense Jacobian's σmax to ~1e-10 and float32 to ~1e-7 (its rounding of the
/// products) within 5 steps; a dim-96 ViT block at initialisation needs ~15. `map` must be
/// deterministic (eval mode: no dropout); leaves it reads besides x that require gradients (a
/// module's parameters) accumulate J^T u into their grad() - residual_jacobian_norm turns that off.
/// Needs grad mode on (throws "[jacobian_norm] ..." under NoGradGuard, when the output does not
/// depend on x through recorded ops, or for a non-float x). NaN when a product is not finite.
double jacobian_spectral_norm(const std::function<Tensor(const Tensor&)>& map,
                              const Tensor& x,
                              PowerIteration settings = {.iterations = 20, .tolerance = 1e-5});

/// ρ_ℓ = ||J_fℓ(X_ℓ)||2 of the residual block X_{ℓ+1} = block(X_ℓ) = X_ℓ + f_ℓ(X_ℓ): f_ℓ is
/// the block's whole residual function block(X) - X (for a pre-norm nn::TransformerBlock both
/// branches, attention(norm1(X)) + feed_forward(norm2(X + attention(norm1(X))))), the map whose
/// Jacobian Theorem 3's one-step recursion E_{ℓ+1} = (I + J_fℓ) E_ℓ + Δ_ℓ uses (App. A.5). X_ℓ
/// is one example's hidden (1, T, d), so J_fℓ is (T·d, T·d) and includes attention's mixing of
/// tokens. input: the block's input (B, ...); ρ is the maximum over the first
/// options.examples examples of jacobian_spectral_norm of X -> block(X) - X. The block's
/// parameters stop requiring gradients while it runs (their grad() is left as it was); mode,
/// precision scope and random state are the caller's (eval mode, and a guard that keeps the
/// run's bits: see the stability instrument). A NaN estimate makes ρ NaN.
double residual_jacobian_norm(nn::Module& block,
                              const Tensor& input,
                              const ResidualJacobianOptions& options = {});

/// Theorem 3's right-hand side without its O(ε²) remainder over a stack of L blocks in the
/// order they run: ε_mach Σ_ℓ terms[ℓ] Π_{k>ℓ} (1 + rhos[k]). terms[ℓ]: the bracket
/// κ_eff,ℓ + κ_softmax,ℓ (1 + c κ_score,ℓ) κ(V_ℓ) + C_LN,ℓ (BlockStability::unified_term, c = 1);
/// rhos[k]: ρ_k. The bound assumes ρ_k < 1 (small gain) and is vacuous otherwise; it is
/// computed all the same.
struct ForwardBound {
  /// terms[ℓ] Π_{k>ℓ} (1 + ρ_k): each block's local error coefficient carried to the output.
  std::vector<double> downstream;
  double bound = 0;  // ε_mach Σ_ℓ downstream[ℓ]
};
/// Throws "[forward_bound] ..." when terms and rhos differ in length.
ForwardBound forward_bound(const std::vector<double>& terms,
                           const std::vector<double>& rhos,
                           double machine_epsilon);

// ---- The LayerNorm-ε intervention (Algorithm 1, §3.3 "Intervention rule").

/// Algorithm 1's settings, from "rho=0.6,cap=1e-2,every=5[,floor=1e-6][,sample=16]".
struct LayerNormEpsilonPolicy {
  double target_rho = 0.6;  // ρ* in (0, 1)
  double eps_max = 1e-2;    // cap
  int64_t every = 5;        // t: the rule runs on steps t, 2t, ...
  double eps_min = 1e-6;    // floor
  int64_t sample = 16;      // examples of each norm's input the statistics use

  /// Throws "[ln-eps-policy] ..." naming the item and what was expected; rho, cap and every
  /// are required, floor <= cap.
  static LayerNormEpsilonPolicy parse(const std::string& spec);
  /// The spec that parses back to this policy.
  std::string spec() const;
  /// True on the steps (counted from 1) the rule runs: multiples of `every`.
  bool due(int64_t step) const {
    return step > 0 && step % every == 0;
  }
};

/// Algorithm 1 for one norm with current ε: when ρ_LN(ε) < 1 (σ² the median statistic),
/// ε_new = clip(σ²_median · d · ε_mach / ρ*, floor, cap), returned only when ε_new > ε (the
/// rule never lowers ε); nullopt otherwise. Note ε_new > ε needs ρ* < ρ_LN < 1 or floor > ε.
std::optional<double> proposed_epsilon(const LayerNormEpsilonPolicy& policy,
                                       const NormInputStatistics& statistics,
                                       double current_eps,
                                       double machine_epsilon);

/// One ε change: module, ε before and after, and ρ_LN(ε before) that triggered it.
struct EpsilonChange {
  std::string module;
  double old_eps = 0, new_eps = 0, rho_ln = 0;
};

/// The ε of a LayerNorm or RMSNorm (their public mutable `eps`; RMSNorm's ρ_LN uses the mean
/// square in place of σ²), nullptr for any other module.
double* norm_epsilon(nn::Module& module);

/// Applies Algorithm 1 to a model's norm modules, remembering each module's original ε so that
/// restore() puts them back at the end of the run.
class LayerNormEpsilonController {
 public:
  explicit LayerNormEpsilonController(LayerNormEpsilonPolicy policy);

  /// For every module of `model` named in `statistics` (from measure_norm_inputs): proposed_
  /// epsilon with the module's current ε and `machine_epsilon`, that of the lattice the norms
  /// compute on now (a stack schedule may change it), set when it returns a value. Returns
  /// the changes. Throws when a name is not a LayerNorm/RMSNorm of `model` or machine_epsilon
  /// is outside (0, 1).
  std::vector<EpsilonChange> apply(nn::Module& model,
                                   const std::map<std::string, NormInputStatistics>& statistics,
                                   double machine_epsilon);
  /// Sets every changed module back to its original ε; returns what was undone (rho_ln NaN).
  std::vector<EpsilonChange> restore(nn::Module& model);

  const LayerNormEpsilonPolicy& policy() const {
    return policy_;
  }

 private:
  LayerNormEpsilonPolicy policy_;
  std::map<std::string, double> original_eps_;
};

/// Input statistics of every LayerNorm and RMSNorm of `model` (by dotted name): installs a
/// forward hook on each, calls `forward` once, and removes the hooks (also when it throws). A
/// module called more than once contributes the rows of every call. `forward` must run the
/// model and leave no trace on training (the caller's duty). sample_examples as in
/// norm_input_statistics, per call.
std::map<std::string, NormInputStatistics> measure_norm_inputs(nn::Module& model,
                                                               const std::function<void()>& forward,
                                                               int64_t sample_examples = 0);

}  // namespace lattice::diagnostics
