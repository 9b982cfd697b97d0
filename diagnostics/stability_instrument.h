// The forward-stability instrument (issue 15, transformer-forward-stability paper): per
// transformer block κ_score, κ_softmax, κ(V), ||W_O||2, κ_eff, C_LN, the combined predictor and
// the observed mismatch r_block, the residual factor ρ_ℓ and Theorem 3's bound, and per norm
// module ρ_LN and ε, from two shadow forwards of the step's batch (the run's stack and fp32).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "diagnostics/forward_stability.h"
#include "diagnostics/instrument.h"

namespace lattice::diagnostics {

/// Metrics (see the metric-name contract): for every nn::TransformerBlock of the model, by its
/// dotted name <b>: kappa_score/<b>, kappa_softmax/<b>, kappa_v/<b>, wo_norm/<b>, kappa_eff/<b>,
/// c_ln/<b>, predictor/<b>, r_block/<b>, rho/<b> (ρ_ℓ = ||J_fℓ||2 of the block's whole residual
/// function at its fp32 input, residual_jacobian_norm), unified_term/<b> (Theorem 3's bracket
/// κ_eff,ℓ + κ(W_O) + κ_softmax (1 + c κ_score) κ(V) + C_LN with c = 1) and unified_downstream/<b>
/// (that bracket times Π_{k>ℓ} (1 + ρ_k), the blocks taken in module order as one stack); for
/// every LayerNorm/RMSNorm <n>: rho_ln/<n>, ln_eps/<n>; run-wide kappa_softmax_max, r_block_max,
/// predictor_max, rho_max and forward_bound (Theorem 3's right-hand side ε_mach Σ_ℓ
/// unified_downstream/<b>, without the O(ε²) term; vacuous where some ρ_k >= 1); a non-finite
/// value is written as null. ε_mach is that of the stack's activation lattice (Λa, the
/// precision the norms compute in). Measured in end_step (weights θ_{t+1}, the step's batch), as
/// the snr instrument measures its r_block, so the two agree when both run. Cost per observed
/// step: two shadow forwards of the batch, and per block and ρ example (options.residual,
/// default 1 example, <= 20 Lanczos steps) one recorded single-example block forward plus, per
/// step, one backward and two forwards of the block: <= 61 single-example block passes.
class StabilityInstrument : public Instrument {
 public:
  /// Attention diagnostics on the first 8 examples of the batch, κ_softmax from the top 8
  /// rows by ||S_i|| with 3 power steps, κ_score with Frobenius norms (the paper's surrogate),
  /// ρ_ℓ on the first example with at most 20 Lanczos steps.
  static StabilityOptions default_options();

  explicit StabilityInstrument(StabilityOptions options = default_options());
  std::string name() const override {
    return "stability";
  }
  void end_step(const StepView& view, nlohmann::json& metrics) override;

  /// The metrics of one step: the shadow forwards and every diagnostic above. Leaves no
  /// trace on the model: the shadow forwards run in diagnostics::capture_forward; ρ_ℓ's
  /// forwards and backwards put back the buffers, mode and random state and leave the
  /// parameters' gradients as they were.
  nlohmann::json measure(const StepView& view) const;

 private:
  StabilityOptions options_;
};

/// Algorithm 1 at an observed step: when controller.policy().due(view.step), measures every
/// LayerNorm/RMSNorm input on the first policy().sample examples of the step's batch (one eval
/// forward under the run's stack inside without_a_trace, so the run keeps its bits) and lets
/// the controller raise ε where the rule says, with ε_mach of the step's activation lattice
/// (Λa of view.stack, which follows a stack schedule). Returns the changes (none on other
/// steps).
std::vector<EpsilonChange> apply_layer_norm_epsilon_policy(LayerNormEpsilonController& controller,
                                                           const StepView& view);

}  // namespace lattice::diagnostics
