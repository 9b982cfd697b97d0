// BlockScaling: microscaling S — blocks of `block_size` elements along one axis share a scale
// from `scale_format`, computed by one of three rules (OCP MX, NVFP4, design-space "encode").
#pragma once

#include <cstdint>
#include <string>

#include "core/format.h"
#include "core/rounding.h"

namespace lattice {

enum class ScaleRule : uint8_t {
  mx,      // OCP MX: X = 2^(floor(log2 amax) - emax_elem) in UE8M0, elements saturate
  nvfp4,   // NVIDIA NVFP4: E4M3 decode scale per block times an fp32 per-tensor decode scale
  encode,  // FP4 design space ("Ours"): a multiplier s_b = R(emax_elem / amax_b * g) per block
};

/// What a block scale that rounded to zero becomes (design-space "NaN mode", encode rule).
enum class ZeroScale : uint8_t {
  nearest_subnormal,  // the scale format's smallest positive value
  to_one,             // 1
};

struct BlockScaling {
  /// Blocks longer than this are refused: a spec is a user's input, and the largest block the
  /// papers use is 128 elements.
  static constexpr int kMaxBlockSize = 1 << 16;

  int block_size = 32;
  int axis = -1;  // the axis blocks run along (the GEMM reduction dimension)
  Format scale_format = ue8m0;
  ScaleRule rule = ScaleRule::mx;
  // nvfp4 and encode rules: how the scale is rounded onto scale_format (nearest-even,
  // toward +inf or stochastic). The MX rule takes its exponent from amax's bits instead.
  RoundingMode scale_rounding = RoundingMode::nearest_even;
  bool tensor_scale = false;  // encode rule: g = max|x| / divisor (nvfp4 always has one)
  ZeroScale zero_scale = ZeroScale::nearest_subnormal;

  friend constexpr bool operator==(const BlockScaling&, const BlockScaling&) = default;
};

/// Throws lattice::Error when the combination cannot be computed (e.g. the MX rule with a
/// scale format other than ue8m0, a block size outside [1, kMaxBlockSize]).
void validate(const BlockScaling& s, const Format& element);

ScaleRule parse_scale_rule(const std::string& text);  // mx | nvfp4 | encode
ZeroScale parse_zero_scale(const std::string& text);  // nearest_subnormal | to_one
std::string scale_rule_name(ScaleRule rule);
std::string zero_scale_name(ZeroScale mode);

}  // namespace lattice
