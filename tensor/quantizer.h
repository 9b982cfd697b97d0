// Quantizer: Q_Λ = element Format + Rounding + optional BlockScaling. Named microscaled
// formats (mxfp4, nvfp4, ...), quantize-dequantize of an N-d array along the block axis, and a
// packed form (bit-packed element codes + scale codes) for storage.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/block_scaling.h"
#include "core/device.h"
#include "core/format.h"
#include "core/philox.h"
#include "core/rounding.h"
#include "kernels/quantize.h"

namespace lattice {

struct Quantizer {
  Format element = fp32;
  Rounding rounding{};
  std::optional<BlockScaling> scaling;  // elementwise when empty

  friend bool operator==(const Quantizer&, const Quantizer&) = default;
};

struct NamedQuantizer {
  const char* name;
  Quantizer quantizer;
};
/// mxfp8 (e4m3), mxfp8_e5m2, mxfp6 (e2m3), mxfp6_e3m2, mxfp4, mxint8: OCP MX, block 32,
/// ue8m0 scales. nvfp4: e2m1, block 16, ue4m3 scales, fp32 tensor scale.
const std::vector<NamedQuantizer>& named_quantizers();

/// A named microscaled format, or any format name (an elementwise quantizer).
/// Throws lattice::Error listing the valid names.
Quantizer parse_quantizer(const std::string& name);

/// Throws lattice::Error when the quantizer cannot run (bad format, scaling or rounding).
void validate(const Quantizer& q);

/// Whether q returns every value of a tensor labelled `label` unchanged, so that quantizing it
/// can be skipped: q is elementwise onto that very lattice, keeps subnormals and overflows as
/// the format does (a label asserts that every value, inf and NaN included, is the lattice's,
/// and every rounding mode, stochastic included, maps a lattice point to itself).
bool leaves_unchanged(const Quantizer& q, const Format& label);

/// Whether every finite value on `format`'s lattice has at most 8 significant bits, so is a
/// bf16 value (bf16 spans fp32's exponents): bf16, fp8, fp6, fp4, integers of up to 9 bits and
/// power-of-two formats; not fp32, tf32 or fp16.
bool within_bf16(const Format& format);
/// The same for every value q produces, read off its lattices (not its values): an
/// elementwise format within bf16, or such elements times power-of-two block scales (the MX
/// rule, or the encode rule with power-of-two scales and no tensor scale). A scale with more
/// significant bits (NVFP4's e4m3) or a tensor scale (an arbitrary fp32 factor) makes values
/// that are not bf16 values.
bool within_bf16(const Quantizer& q);
/// Whether every value q produces is a bf16 value times one fp32 factor per tensor:
/// within_bf16, or the NVFP4 rule with elements times block scales of at most 8 significant
/// bits (e2m1 x e4m3: 6), its tensor decode scale being the factor.
bool within_bf16_times_factor(const Quantizer& q);

/// Blocks of `q.scaling` laid over an array of `shape` along its axis (negative counts from
/// the end). Throws when the axis is out of range.
BlockLayout block_layout(const BlockScaling& s, std::span<const int64_t> shape);

/// y = dequantize(quantize(x)). x, y: `shape` (row-major, same size) on `device`; blocks run
/// along the scaling axis. Stochastic bits come from `random` (see quantize_blocks_cpu); both
/// devices give the same bits.
void quantize(const Quantizer& q,
              std::span<const float> x,
              std::span<float> y,
              std::span<const int64_t> shape,
              const RandomStream& random = {},
              Device device = Device::cpu);

/// quantize's values as bf16 bits (the high half of each fp32 value), for a bf16 GEMM to read:
/// for quantizers within_bf16_times_factor, which it checks. Returns the factor the bits' values
/// take to be quantize's (NVFP4's tensor decode scale; 1 for the others, whose bits are
/// quantize's values exactly). The same rounding and random draws as quantize, on either device.
float quantize_bf16_bits(const Quantizer& q,
                         std::span<const float> x,
                         std::span<uint16_t> y,
                         std::span<const int64_t> shape,
                         const RandomStream& random,
                         Device device = Device::cpu);

/// Storage form: element codes bit-packed at element.bits() each (LSB first), scale codes at
/// scale_format.bits() each in (outer, blocks, inner) order, and the fp32 tensor scale.
struct PackedTensor {
  Quantizer quantizer;
  std::vector<int64_t> shape;
  std::vector<uint8_t> element_codes;
  std::vector<uint8_t> scale_codes;
  float tensor_scale = 1.0f;  // nvfp4: s_dec; encode: g; otherwise 1
};

/// Packs quantize(x). Throws when a value has no code (NaN in a format or scale format
/// without NaN, inf without inf).
PackedTensor pack(const Quantizer& q,
                  std::span<const float> x,
                  std::span<const int64_t> shape,
                  const RandomStream& random = {});
/// The dequantized values of a packed tensor: bit-identical to quantize() of the same input.
std::vector<float> unpack(const PackedTensor& packed);

}  // namespace lattice
