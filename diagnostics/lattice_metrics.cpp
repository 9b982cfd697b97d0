// The lattice instruments on host arrays (lattice_metrics.h).
#include "diagnostics/lattice_metrics.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <memory>

#include "core/error.h"
#include "kernels/quantize.h"

namespace lattice::diagnostics {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

uint32_t bits_of(float x) {
  return std::bit_cast<uint32_t>(x);
}

}  // namespace

namespace {

/// lattice_ulp for one format, its constants computed once (max_finite() loops over the
/// exponent range): β_t asks it for every parameter.
class LatticeSpacing {
 public:
  LatticeSpacing(const Format& f, bool flush_subnormals)
      : format_(f),
        flush_subnormals_(flush_subnormals),
        floating_(f.kind == FormatKind::floating),
        min_normal_(f.min_normal()),
        max_finite_(f.max_finite()),
        min_exponent_(f.min_exponent()) {}

  double operator()(double x) const {
    if (!std::isfinite(x)) return kNaN;
    const double magnitude = std::fabs(x);
    if (flush_subnormals_ && magnitude < min_normal_)
      return std::numeric_limits<double>::infinity();
    // A float format's spacing in the binade of |x| (the subnormals share the lowest normal
    // binade's), as ulp() computes it; integer and exponent-only formats, and values past the
    // largest finite one, take ulp() itself.
    if (floating_ && magnitude <= max_finite_) {
      const int binade = magnitude > 0 ? std::ilogb(magnitude) : min_exponent_;
      return std::ldexp(1.0, std::max(binade, min_exponent_) - format_.mantissa_bits);
    }
    return double(ulp(format_, float(x)));
  }

 private:
  Format format_;
  bool flush_subnormals_, floating_;
  double min_normal_, max_finite_;
  int min_exponent_;
};

}  // namespace

double lattice_ulp(const Format& f, bool flush_subnormals, double x) {
  return LatticeSpacing(f, flush_subnormals)(x);
}

void OctaveHistogram::add(double ratio) {
  static const double lowest = std::ldexp(1.0, kLowestOctave);
  if (!(ratio >= lowest)) {
    ++below;
    return;
  }
  const int octave = std::ilogb(ratio) - kLowestOctave;
  if (octave >= kOctaves) {
    ++above;
    return;
  }
  ++counts[size_t(octave)];
}

void OctaveHistogram::merge(const OctaveHistogram& other) {
  for (size_t k = 0; k < counts.size(); ++k) counts[k] += other.counts[k];
  below += other.below;
  above += other.above;
}

double UpdateStatistics::crossing_rate() const {
  return count > 0 ? double(crossed) / double(count) : kNaN;
}

void UpdateStatistics::merge(const UpdateStatistics& other) {
  count += other.count;
  crossed += other.crossed;
  histogram.merge(other.histogram);
}

UpdateStatistics ulp_normalized_updates(std::span<const float> before,
                                        std::span<const float> after,
                                        const Format& f,
                                        bool flush_subnormals) {
  LATTICE_CHECK(before.size() == after.size(), "[boundary_crossing] snapshots of ", before.size(),
                " and ", after.size(), " elements");
  UpdateStatistics out;
  const LatticeSpacing spacing_at(f, flush_subnormals);
  for (size_t i = 0; i < before.size(); ++i) {
    const double step = std::fabs(double(after[i]) - double(before[i]));
    const double spacing = spacing_at(before[i]);
    if (!std::isfinite(step) || std::isnan(spacing)) continue;
    const double ratio = step / spacing;  // 0 where the spacing is infinite
    ++out.count;
    out.crossed += ratio >= 0.5;
    out.histogram.add(ratio);
  }
  return out;
}

CellChurn cell_churn(std::span<const float> before, std::span<const float> after) {
  LATTICE_CHECK(before.size() == after.size(), "[cell_churn] rounding decisions of ", before.size(),
                " and ", after.size(), " elements");
  CellChurn out{.count = int64_t(before.size())};
  for (size_t i = 0; i < before.size(); ++i) {
    const uint32_t difference = bits_of(before[i]) ^ bits_of(after[i]);
    out.changed += difference != 0;
    out.flipped_bits += std::popcount(difference);
  }
  return out;
}

void QuantizerHealth::merge(const QuantizerHealth& other) {
  count += other.count;
  saturated += other.saturated;
  overflowed += other.overflowed;
  underflowed += other.underflowed;
  blocks += other.blocks;
  zero_blocks += other.zero_blocks;
  clipped_blocks += other.clipped_blocks;
}

QuantizerHealth quantizer_health(const Quantizer& q,
                                 std::span<const float> x,
                                 std::span<const float> y,
                                 std::span<const int64_t> shape) {
  LATTICE_CHECK(x.size() == y.size(), "[quantizer_health] input of ", x.size(), " and output of ",
                y.size(), " elements");
  QuantizerHealth out{.count = int64_t(x.size())};
  // The element format's top as an fp32 value (a top past the fp32 range is never reached by
  // an fp32 carrier value). Branch-free loops: the observer runs them over every quantized
  // operand of an observed step.
  const double top_exact = q.element.max_finite();
  const float top = top_exact <= std::numeric_limits<float>::max()
                        ? float(top_exact)
                        : std::numeric_limits<float>::infinity();
  constexpr float kLargest = std::numeric_limits<float>::max();
  int64_t overflowed = 0, underflowed = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const int finite = std::fabs(x[i]) <= kLargest;
    overflowed += finite & int(!(std::fabs(y[i]) <= kLargest));
    underflowed += finite & int(x[i] != 0.0f) & int(y[i] == 0.0f);
  }
  out.overflowed = overflowed;
  out.underflowed = underflowed;
  if (!q.scaling) {
    int64_t saturated = 0;
    for (float v : y) saturated += std::fabs(v) == top;
    out.saturated = saturated;
    return out;
  }
  // The element codes behind y: elements (the element-lattice values) and their blocks.
  const BlockLayout layout = block_layout(*q.scaling, shape);
  // Scratch the kernel fills entirely (left uninitialised: this runs per observed operand).
  const std::unique_ptr<float[]> dequantized(new float[x.size()]), elements(new float[x.size()]),
      scales(new float[size_t(layout.block_count())]);
  BlockParts parts{.elements = elements.get(), .scales = scales.get()};
  quantize_blocks_cpu(x.data(), dequantized.get(), layout, q.element, q.rounding, *q.scaling,
                      RandomStream{}, &parts);
  out.blocks = layout.block_count();
  // Rows of `inner` contiguous values at a time, each position its own block: one pass in
  // memory order.
  const size_t inner = size_t(layout.inner);
  std::vector<uint8_t> any_input(inner), any_element(inner), clipped(inner);
  for (int64_t o = 0; o < layout.outer; ++o)
    for (int64_t first = 0; first < layout.length; first += layout.block_size) {
      std::fill(any_input.begin(), any_input.end(), 0);
      std::fill(any_element.begin(), any_element.end(), 0);
      std::fill(clipped.begin(), clipped.end(), 0);
      const int64_t end = std::min(layout.length, first + layout.block_size);
      for (int64_t l = first; l < end; ++l) {
        const size_t row = size_t(o * layout.length + l) * inner;
        for (size_t in = 0; in < inner; ++in) {
          const size_t i = row + in;
          const bool at_top = std::fabs(elements[i]) == top;
          out.saturated += at_top;
          any_input[in] |= x[i] != 0.0f;
          any_element[in] |= elements[i] != 0.0f;
          clipped[in] |= at_top && std::fabs(x[i]) > std::fabs(dequantized[i]);
        }
      }
      for (size_t in = 0; in < inner; ++in) {
        out.zero_blocks += any_input[in] && !any_element[in];
        out.clipped_blocks += clipped[in];
      }
    }
  return out;
}

double cast_change_rate(std::span<const float> x, const Format& f) {
  std::vector<float> cast(x.size());
  quantize_elementwise_cpu(x.data(), cast.data(), int64_t(x.size()), f, Rounding{}, RandomStream{});
  int64_t finite = 0, changed = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    if (!std::isfinite(x[i])) continue;
    ++finite;
    changed += bits_of(x[i]) != bits_of(cast[i]);
  }
  return finite > 0 ? double(changed) / double(finite) : kNaN;
}

std::vector<double> softmax_entropy_per_head(std::span<const float> probabilities,
                                             int64_t batch,
                                             int64_t heads,
                                             int64_t rows,
                                             int64_t columns) {
  LATTICE_CHECK(int64_t(probabilities.size()) == batch * heads * rows * columns,
                "[softmax_entropy] probabilities of ", probabilities.size(),
                " elements for (B, H, T, S) = (", batch, ", ", heads, ", ", rows, ", ", columns,
                ")");
  std::vector<double> out(size_t(heads), 0.0);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t r = 0; r < rows; ++r) {
        const float* p = probabilities.data() + ((b * heads + h) * rows + r) * columns;
        double entropy = 0.0;
        for (int64_t c = 0; c < columns; ++c)
          if (p[c] > 0.0f) entropy -= double(p[c]) * std::log(double(p[c]));
        out[size_t(h)] += entropy;
      }
  for (double& e : out) e /= double(std::max<int64_t>(batch * rows, 1));
  return out;
}

std::vector<double> logit_std_per_head(std::span<const float> scores,
                                       int64_t batch,
                                       int64_t heads,
                                       int64_t rows,
                                       int64_t columns,
                                       std::span<const double> scale) {
  LATTICE_CHECK(
      int64_t(scores.size()) == batch * heads * rows * columns && int64_t(scale.size()) == heads,
      "[logit_std] scores of ", scores.size(), " elements and ", scale.size(),
      " head scales for (B, H, T, S) = (", batch, ", ", heads, ", ", rows, ", ", columns, ")");
  std::vector<double> out(static_cast<size_t>(heads));
  for (int64_t h = 0; h < heads; ++h) {
    double sum = 0.0, square_sum = 0.0;
    int64_t n = 0;
    for (int64_t b = 0; b < batch; ++b) {
      const float* s = scores.data() + (b * heads + h) * rows * columns;
      for (int64_t i = 0; i < rows * columns; ++i) {
        if (!std::isfinite(s[i])) continue;
        const double v = double(s[i]) * scale[size_t(h)];
        sum += v;
        square_sum += v * v;
        ++n;
      }
    }
    const double mean = n > 0 ? sum / double(n) : kNaN;
    out[size_t(h)] = n > 0 ? std::sqrt(std::max(0.0, square_sum / double(n) - mean * mean)) : kNaN;
  }
  return out;
}

double snr_db(std::span<const float> reference, std::span<const float> test) {
  LATTICE_CHECK(reference.size() == test.size(), "[snr] reference of ", reference.size(),
                " and test of ", test.size(), " elements");
  double signal = 0.0, noise = 0.0;
  for (size_t i = 0; i < reference.size(); ++i) {
    const double r = reference[i], e = double(test[i]) - r;
    signal += r * r;
    noise += e * e;
  }
  return 10.0 * std::log10(signal / noise);
}

double error_correlation(std::span<const float> reference, std::span<const float> test) {
  LATTICE_CHECK(reference.size() == test.size(), "[error_correlation] reference of ",
                reference.size(), " and test of ", test.size(), " elements");
  const double n = double(reference.size());
  double mean_r = 0.0, mean_e = 0.0;
  for (size_t i = 0; i < reference.size(); ++i) {
    mean_r += reference[i];
    mean_e += double(test[i]) - double(reference[i]);
  }
  mean_r /= n;
  mean_e /= n;
  double rr = 0.0, ee = 0.0, re = 0.0;
  for (size_t i = 0; i < reference.size(); ++i) {
    const double r = reference[i] - mean_r, e = double(test[i]) - double(reference[i]) - mean_e;
    rr += r * r;
    ee += e * e;
    re += r * e;
  }
  return rr > 0 && ee > 0 ? re / std::sqrt(rr * ee) : kNaN;
}

}  // namespace lattice::diagnostics
