// The FP4 design-space study's bookkeeping (algorithms.md §4.11, analysis script B): the
// complexity points a precision stack's knobs cost, and the Score that trades a run's
// validation loss against them.
#pragma once

#include "tensor/precision_stack.h"

namespace lattice {

/// Knobs of a run that live in the trainer rather than in the precision stack.
struct TrainingKnobs {
  bool loss_scaling = false;
  bool stable_spam = false;  // StableSPAM instead of Adam
};

/// Σ of the points of each non-default knob: max approximation ≠ STE 3, step gradient ≠ STE 2,
/// Hadamard on 1, scale gradient ≠ STE 1.5, stochastic rounding on 0.5 (gemm.sr, or any GEMM
/// operand rounding stochastically), tensor scaling 0.5 (any GEMM operand with a tensor scale:
/// encode:ts or the nvfp4 rule), tensor-scale gradient ≠ ignore 3, loss scaling 0.5,
/// StableSPAM 0.5, stochastic scale rounding 0.25 (any GEMM operand).
double complexity_points(const PrecisionStack& stack, const TrainingKnobs& training = {});

/// diff = (reference_loss - val_loss) / reference_loss; diff / max(cp, 1) when diff >= 0,
/// diff * max(cp, 1) otherwise (a worse loss costs more the more knobs it took). NaN losses
/// give NaN.
double design_space_score(double reference_loss, double val_loss, double cp);

}  // namespace lattice
