// The fistful-of-errors paper's lattice instruments (§8.1, §11) as functions on host arrays:
// boundary crossings and ULP-normalised updates, cell-ID churn of rounding decisions, a
// quantizer's saturation and underflow, cast change rates, attention entropy and logit spread,
// and the SNR and error correlation of a low-precision forward against an fp32 one.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/format.h"
#include "tensor/quantizer.h"

namespace lattice::diagnostics {

/// The spacing of lattice `f` at x, as β_t measures steps: ulp(f, x), except that with
/// subnormals flushed (`flush_subnormals`) it is infinite below the smallest normal, where no
/// finite step lands on a new nonzero cell (§A.1). NaN for non-finite x.
double lattice_ulp(const Format& f, bool flush_subnormals, double x);

/// Counts of |Δθ|/ULP(θ) in octaves: bin k holds ratios in [2^(k + kLowestOctave),
/// 2^(k + kLowestOctave + 1)); ratios below the lowest octave (a step of 0 included) go to
/// `below`, at or above the highest to `above`.
struct OctaveHistogram {
  static constexpr int kLowestOctave = -20;
  static constexpr int kOctaves = 40;  // 2^-20 ... 2^20
  std::vector<int64_t> counts = std::vector<int64_t>(kOctaves, 0);
  int64_t below = 0, above = 0;
  void add(double ratio);
  void merge(const OctaveHistogram& other);
};

/// One tensor's step θ -> θ': β_t's numerator and the ULP-normalised histogram.
struct UpdateStatistics {
  int64_t count = 0;    // finite elements compared
  int64_t crossed = 0;  // |Δθ_i| >= ½ ULP(θ_i): the step reaches the next cell's boundary
  OctaveHistogram histogram;
  /// β_t: crossed / count (NaN when nothing was compared).
  double crossing_rate() const;
  void merge(const UpdateStatistics& other);
};

/// ULPs are taken on lattice `f` at the old value θ_i. before, after: (n).
UpdateStatistics ulp_normalized_updates(std::span<const float> before,
                                        std::span<const float> after,
                                        const Format& f,
                                        bool flush_subnormals);

/// Rounding decisions of one probed tensor compared step to step by bit pattern (so that -0
/// and +0, or two NaN payloads, count as different cells).
struct CellChurn {
  int64_t count = 0;         // elements
  int64_t changed = 0;       // elements whose bits differ
  int64_t flipped_bits = 0;  // Hamming distance of the two bit patterns
};
/// before, after: (n) each; throws when their sizes differ.
CellChurn cell_churn(std::span<const float> before, std::span<const float> after);

/// How one application of a quantizer used its lattice.
struct QuantizerHealth {
  int64_t count = 0;
  int64_t saturated = 0;       // outputs at ±max finite of the element format (times the scale)
  int64_t overflowed = 0;      // finite inputs whose output is inf or NaN
  int64_t underflowed = 0;     // nonzero finite inputs whose output is zero
  int64_t blocks = 0;          // block formats: blocks of the scaling
  int64_t zero_blocks = 0;     // blocks with a nonzero input whose elements all became zero
  int64_t clipped_blocks = 0;  // blocks where an element was clipped to ±max (|x| > |Q(x)|)
  void merge(const QuantizerHealth& other);
};
/// x: the quantizer's input, y = Q(x), both `shape`, row-major. Block formats re-derive their
/// element codes with the CPU kernel (under stochastic rounding from their own random bits).
QuantizerHealth quantizer_health(const Quantizer& q,
                                 std::span<const float> x,
                                 std::span<const float> y,
                                 std::span<const int64_t> shape);

/// Fraction of x's finite values whose bits change when cast (round to nearest even) onto
/// `f`: 0 when x already lies on f. NaN for an empty x.
double cast_change_rate(std::span<const float> x, const Format& f);

/// Per head h of attention probabilities P (B, H, T, S): the mean over batch and query rows of
/// the row entropy -Σ p log p (nats).
std::vector<double> softmax_entropy_per_head(std::span<const float> probabilities,
                                             int64_t batch,
                                             int64_t heads,
                                             int64_t rows,
                                             int64_t columns);
/// Per head of scores S (B, H, T, S): the standard deviation of the finite entries (masked
/// -inf entries are skipped), each multiplied by scale[h] first (pass τ_h to undo the
/// division by the temperature, ones for the scores as they are).
std::vector<double> logit_std_per_head(std::span<const float> scores,
                                       int64_t batch,
                                       int64_t heads,
                                       int64_t rows,
                                       int64_t columns,
                                       std::span<const double> scale);

/// 10 log10(Σ reference² / Σ (test - reference)²): +inf when they agree exactly.
double snr_db(std::span<const float> reference, std::span<const float> test);
/// Pearson correlation of the reference y_fp and the error y_q - y_fp (§5.1's coherent-error
/// check): near 0 for noise-like rounding error. NaN when either has no spread.
double error_correlation(std::span<const float> reference, std::span<const float> test);

}  // namespace lattice::diagnostics
