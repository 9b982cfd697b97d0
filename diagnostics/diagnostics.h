// The diagnostics a run turns on with --diagnostics LIST and --diagnostics-every N: the
// instruments of the fistful-of-errors paper (boundary crossings, cell churn, quantizer
// saturation, cast change, attention statistics, layer SNR against fp32) built from their
// names, and the set that the trainer calls around every N-th step. Per-step numbers go to
// metrics.jsonl; histograms and per-tensor detail to a compact JSON-lines file beside it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "diagnostics/instrument.h"

namespace lattice::diagnostics {

/// The instruments of a comma-separated list:
///   beta        β_t per parameter and overall, ULP-normalised update histograms, and the
///               churn of the working weights' cells (Λw)
///   churn       β_eff and cell-ID churn: every quantizer the stack applies (GEMM operands,
///               Λa, Λg) on a fixed probe batch, forward and backward, compared step to step
///   saturation  per quantizer site: saturation, overflow and underflow-to-zero rates; zero and
///               clipped blocks of block formats
///   cast:FMT    fraction of each parameter's values that change when cast onto FMT
///   attention   per head: softmax entropy, logit std before and after the temperature, τ_h
///   snr         per module: SNR (dB) of the run's forward against an fp32 forward of the same
///               weights and batch, the error's correlation with the signal on residual
///               branches, and r_block = ||y - y_fp32|| / ||y_fp32|| per transformer block
///   stability   per transformer block the forward-stability diagnostics (κ_score,
///               κ_softmax, κ(V), ||W_O||2, κ_eff, C_LN, their predictor, r_block) and per
///               norm module ρ_LN and ε (stability_instrument.h)
///   default     beta, attention (the cheap ones);  all: every one above except cast
/// Throws lattice::Error naming an unknown item.
std::vector<std::unique_ptr<Instrument>> make_instruments(const std::string& list);

/// The instruments of a run and when they look.
class Diagnostics {
 public:
  /// Observes steps every, 2*every, ...; detail lines go to `detail_path` (appended to when
  /// `append`, as a resumed run does).
  Diagnostics(std::vector<std::unique_ptr<Instrument>> instruments,
              int64_t every,
              const std::filesystem::path& detail_path,
              bool append);
  bool observes(int64_t step) const {
    return !instruments_.empty() && step % every_ == 0;
  }
  void begin_step(const StepView& view);
  void before_update(const StepView& view);
  /// Adds the instruments' metrics to `metrics`; their "detail" goes to the detail file.
  void end_step(const StepView& view, nlohmann::json& metrics);

 private:
  std::vector<std::unique_ptr<Instrument>> instruments_;
  int64_t every_;
  std::filesystem::path detail_path_;
  std::ofstream detail_;
};

}  // namespace lattice::diagnostics
