// Quantizer names and validation, quantize-dequantize of N-d arrays on the CPU kernels, and
// the packed storage form.
#include "tensor/quantizer.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>

#include "core/error.h"
#include "core/scalar/block.h"
#include "core/scalar/round.h"
#include "core/text.h"
#include "kernels/dispatch.h"

namespace lattice {

namespace {

Quantizer mx(Format element) {
  return Quantizer{element, Rounding{}, BlockScaling{}};
}

}  // namespace

const std::vector<NamedQuantizer>& named_quantizers() {
  static const std::vector<NamedQuantizer> quantizers = {
      {"mxfp8", mx(e4m3)},
      {"mxfp8_e5m2", mx(e5m2)},
      {"mxfp6", mx(e2m3)},
      {"mxfp6_e3m2", mx(e3m2)},
      {"mxfp4", mx(e2m1)},
      {"mxint8", mx(int8)},
      {"nvfp4",
       Quantizer{e2m1, Rounding{},
                 BlockScaling{.block_size = 16, .scale_format = ue4m3, .rule = ScaleRule::nvfp4}}},
  };
  return quantizers;
}

Quantizer parse_quantizer(const std::string& text) {
  std::string name = lowercase(text);
  if (name == "mxfp8_e4m3") name = "mxfp8";
  if (name == "mxfp6_e2m3") name = "mxfp6";
  for (const auto& [known, quantizer] : named_quantizers())
    if (name == known) return quantizer;
  try {
    return Quantizer{parse_format(text), Rounding{}, std::nullopt};
  } catch (const Error& e) {
    // A name that parsed as a generic format but is invalid keeps its precise message.
    if (std::string(e.what()).find("unknown format") == std::string::npos) throw;
    std::string known;
    for (const auto& named : named_quantizers()) known += std::string(named.name) + ", ";
    throw Error(concat("[quantizer] unknown format \"", text, "\" (known: ", known,
                       "or an element format: fp32, bf16, fp16, e4m3, e2m1, ...)"));
  }
}

ScaleRule parse_scale_rule(const std::string& text) {
  const std::string name = lowercase(text);
  if (name == "mx") return ScaleRule::mx;
  if (name == "nvfp4") return ScaleRule::nvfp4;
  if (name == "encode") return ScaleRule::encode;
  throw Error(concat("[scaling] unknown scale rule \"", text, "\" (known: mx, nvfp4, encode)"));
}

ZeroScale parse_zero_scale(const std::string& text) {
  const std::string name = lowercase(text);
  if (name == "nearest_subnormal" || name == "nearest-subnormal")
    return ZeroScale::nearest_subnormal;
  if (name == "to_one" || name == "to-one") return ZeroScale::to_one;
  throw Error(concat("[scaling] unknown zero-scale mode \"", text,
                     "\" (known: nearest_subnormal, to_one)"));
}

std::string scale_rule_name(ScaleRule rule) {
  switch (rule) {
    case ScaleRule::mx:
      return "mx";
    case ScaleRule::nvfp4:
      return "nvfp4";
    case ScaleRule::encode:
      return "encode";
  }
  return "?";
}

std::string zero_scale_name(ZeroScale mode) {
  return mode == ZeroScale::to_one ? "to_one" : "nearest_subnormal";
}

void validate(const BlockScaling& s, const Format& element) {
  LATTICE_CHECK(s.block_size >= 1 && s.block_size <= BlockScaling::kMaxBlockSize,
                "[scaling] block size must be 1 to ", BlockScaling::kMaxBlockSize, ", got ",
                s.block_size);
  validate(s.scale_format);
  LATTICE_CHECK(s.rule != ScaleRule::mx || s.scale_format == ue8m0,
                "[scaling] the mx rule takes ue8m0 scales, got ", format_name(s.scale_format),
                " (use --rule encode or nvfp4 for other scale formats)");
  LATTICE_CHECK(s.rule != ScaleRule::mx || s.scale_rounding == RoundingMode::nearest_even,
                "[scaling] the mx rule takes its scale from amax's exponent; scale rounding "
                "applies to the nvfp4 and encode rules");
  LATTICE_CHECK(s.rule == ScaleRule::mx || s.scale_format.kind != FormatKind::integer,
                "[scaling] integer scale formats are not supported");
  LATTICE_CHECK(s.scale_rounding == RoundingMode::nearest_even ||
                    s.scale_rounding == RoundingMode::toward_positive ||
                    s.scale_rounding == RoundingMode::stochastic,
                "[scaling] scale rounding is nearest-even, toward-positive or stochastic");
  LATTICE_CHECK(element.kind != FormatKind::exponent && element.is_signed,
                "[scaling] block elements need a signed element format, got ",
                format_name(element));
}

void validate(const Quantizer& q) {
  validate(q.element);
  LATTICE_CHECK(q.rounding.random_bits >= 1 && q.rounding.random_bits <= 32,
                "[rounding] stochastic rounding takes 1 to 32 random bits, got ",
                q.rounding.random_bits);
  if (q.scaling) validate(*q.scaling, q.element);
}

bool leaves_unchanged(const Quantizer& q, const Format& label) {
  return !q.scaling && q.element == label && label != fp32 &&
         q.rounding.overflow == Overflow::standard && q.rounding.subnormals == Subnormals::keep;
}

namespace {

/// The most significant bits a finite value of `format` has.
int significant_bits(const Format& format) {
  return format.kind == FormatKind::floating  ? format.mantissa_bits + 1
         : format.kind == FormatKind::integer ? format.mantissa_bits
                                              : 1;
}

}  // namespace

bool within_bf16(const Format& format) {
  return significant_bits(format) <= 8;
}

bool within_bf16(const Quantizer& q) {
  if (!within_bf16(q.element)) return false;
  if (!q.scaling) return true;
  const BlockScaling& s = *q.scaling;
  // MX: element times 2^k. Encode: g * element / scale, exact for a power-of-two scale when g
  // is 1 (no tensor scale). NVFP4: element times an e4m3 scale times an fp32 tensor factor.
  return s.rule == ScaleRule::mx ||
         (s.rule == ScaleRule::encode && s.scale_format.kind == FormatKind::exponent &&
          !s.tensor_scale);
}

bool within_bf16_times_factor(const Quantizer& q) {
  return within_bf16(q) ||
         (q.scaling && q.scaling->rule == ScaleRule::nvfp4 &&
          significant_bits(q.element) + significant_bits(q.scaling->scale_format) <= 8);
}

BlockLayout block_layout(const BlockScaling& s, std::span<const int64_t> shape) {
  const int64_t rank = int64_t(shape.size());
  const int64_t axis = s.axis < 0 ? s.axis + rank : s.axis;
  LATTICE_CHECK(rank > 0 && axis >= 0 && axis < rank, "[quantize] block axis ", s.axis,
                " is out of range for a rank-", rank, " array");
  const auto product = [](auto first, auto last) {
    return std::accumulate(first, last, int64_t(1), std::multiplies<>());
  };
  // A block longer than its axis is one block of the whole axis: the kernels size their
  // buffers by the layout's block, which this keeps within the data.
  const int64_t block = std::min<int64_t>(s.block_size, std::max<int64_t>(shape[axis], 1));
  return BlockLayout{product(shape.begin(), shape.begin() + axis), shape[axis],
                     product(shape.begin() + axis + 1, shape.end()), block};
}

namespace {

int64_t element_count(std::span<const int64_t> shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    LATTICE_CHECK(d >= 0, "[quantize] negative dimension in shape");
    n *= d;
  }
  return n;
}

void check_sizes(const char* op, std::span<const int64_t> shape, size_t x_size, size_t y_size) {
  const int64_t n = element_count(shape);
  LATTICE_CHECK(int64_t(x_size) == n && int64_t(y_size) == n, "[", op, "] shape holds ", n,
                " elements, got input ", x_size, " and output ", y_size);
}

void write_code(std::vector<uint8_t>& bytes, int64_t index, int bits, uint32_t code) {
  for (int b = 0; b < bits; ++b) {
    const int64_t bit = index * bits + b;
    if ((code >> b) & 1u) bytes[bit / 8] |= uint8_t(1u << (bit % 8));
  }
}

uint32_t read_code(const std::vector<uint8_t>& bytes, int64_t index, int bits) {
  uint32_t code = 0;
  for (int b = 0; b < bits; ++b) {
    const int64_t bit = index * bits + b;
    code |= uint32_t((bytes[bit / 8] >> (bit % 8)) & 1u) << b;
  }
  return code;
}

std::vector<uint8_t> packed_bytes(int64_t count, int bits) {
  return std::vector<uint8_t>(size_t((count * bits + 7) / 8), 0);
}

/// Code of a value the kernels produced; throws when the format cannot hold it.
uint32_t checked_code(float v, const Format& f, const char* what) {
  LATTICE_CHECK(!std::isnan(v) || f.has_nan(), "[pack] a NaN ", what, " has no code in ",
                format_name(f));
  LATTICE_CHECK(!std::isinf(v) || f.has_inf(), "[pack] an infinite ", what, " has no code in ",
                format_name(f));
  return encode_lattice(v, f);
}

}  // namespace

void quantize(const Quantizer& q,
              std::span<const float> x,
              std::span<float> y,
              std::span<const int64_t> shape,
              const RandomStream& random,
              Device device) {
  validate(q);
  check_sizes("quantize", shape, x.size(), y.size());
  if (!q.scaling) {
    LATTICE_DISPATCH(device, quantize_elementwise, x.data(), y.data(), int64_t(x.size()), q.element,
                     q.rounding, random);
    return;
  }
  const BlockLayout layout = block_layout(*q.scaling, shape);
  if (device == Device::cpu)
    quantize_blocks_cpu(x.data(), y.data(), layout, q.element, q.rounding, *q.scaling, random,
                        nullptr);
  else
    quantize_blocks_cuda(x.data(), y.data(), layout, q.element, q.rounding, *q.scaling, random);
}

float quantize_bf16_bits(const Quantizer& q,
                         std::span<const float> x,
                         std::span<uint16_t> y,
                         std::span<const int64_t> shape,
                         const RandomStream& random,
                         Device device) {
  validate(q);
  LATTICE_CHECK(within_bf16_times_factor(q),
                "[quantize] bf16 output needs a quantizer whose values are bf16 values up to a "
                "tensor factor (at most 8 significant bits), got ",
                format_name(q.element), " elements",
                q.scaling ? concat(" with ", format_name(q.scaling->scale_format), " scales (",
                                   scale_rule_name(q.scaling->rule), " rule)")
                          : std::string());
  check_sizes("quantize", shape, x.size(), y.size());
  if (q.scaling)
    return LATTICE_DISPATCH(device, quantize_blocks_bf16, x.data(), y.data(),
                            block_layout(*q.scaling, shape), q.element, q.rounding, *q.scaling,
                            random);
  LATTICE_DISPATCH(device, quantize_elementwise_bf16, x.data(), y.data(), int64_t(x.size()),
                   q.element, q.rounding, random);
  return 1.0f;
}

PackedTensor pack(const Quantizer& q,
                  std::span<const float> x,
                  std::span<const int64_t> shape,
                  const RandomStream& random) {
  validate(q);
  check_sizes("pack", shape, x.size(), x.size());
  PackedTensor packed{q, std::vector<int64_t>(shape.begin(), shape.end()), {}, {}, 1.0f};
  const int64_t n = int64_t(x.size());
  std::vector<float> elements(x.size()), y(x.size());
  if (q.scaling) {
    const BlockLayout layout = block_layout(*q.scaling, shape);
    std::vector<float> scales(size_t(layout.block_count()));
    BlockParts parts{elements.data(), scales.data(), 1.0f};
    quantize_blocks_cpu(x.data(), y.data(), layout, q.element, q.rounding, *q.scaling, random,
                        &parts);
    packed.tensor_scale = parts.tensor_scale;
    const Format& scale_format = q.scaling->scale_format;
    packed.scale_codes = packed_bytes(int64_t(scales.size()), scale_format.bits());
    for (size_t b = 0; b < scales.size(); ++b)
      write_code(packed.scale_codes, int64_t(b), scale_format.bits(),
                 checked_code(scales[b], scale_format, "block scale"));
    // Elements of a NaN block carry no information; they are stored as code 0.
    for (int64_t i = 0; i < n; ++i)
      if (std::isnan(elements[size_t(i)])) elements[size_t(i)] = 0.0f;
  } else {
    quantize_elementwise_cpu(x.data(), elements.data(), n, q.element, q.rounding, random);
  }
  packed.element_codes = packed_bytes(n, q.element.bits());
  for (int64_t i = 0; i < n; ++i)
    write_code(packed.element_codes, i, q.element.bits(),
               checked_code(elements[size_t(i)], q.element, "element"));
  return packed;
}

std::vector<float> unpack(const PackedTensor& packed) {
  const Quantizer& q = packed.quantizer;
  validate(q);
  const int64_t n = element_count(packed.shape);
  const int element_bits = q.element.bits();
  LATTICE_CHECK(int64_t(packed.element_codes.size()) == (n * element_bits + 7) / 8, "[unpack] ",
                packed.element_codes.size(), " bytes of element codes, expected ",
                (n * element_bits + 7) / 8);
  std::vector<float> y(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    y[size_t(i)] = decode_lattice(read_code(packed.element_codes, i, element_bits), q.element);
  if (!q.scaling) return y;

  const BlockScaling& s = *q.scaling;
  const BlockLayout layout = block_layout(s, packed.shape);
  const int scale_bits = s.scale_format.bits();
  LATTICE_CHECK(int64_t(packed.scale_codes.size()) == (layout.block_count() * scale_bits + 7) / 8,
                "[unpack] ", packed.scale_codes.size(), " bytes of scale codes, expected ",
                (layout.block_count() * scale_bits + 7) / 8);
  // The dequantization needs only the tensor-level scale, which the packed form stores.
  BlockPlan plan = make_block_plan(q.element, q.rounding, s, 0.0f);
  if (s.rule == ScaleRule::nvfp4) plan.tensor_decode = packed.tensor_scale;
  if (s.rule == ScaleRule::encode) plan.tensor_encode = packed.tensor_scale;
  const int64_t per_column = layout.blocks_per_column();
  for (int64_t o = 0; o < layout.outer; ++o)
    for (int64_t l = 0; l < layout.length; ++l)
      for (int64_t i = 0; i < layout.inner; ++i) {
        const int64_t flat = (o * layout.length + l) * layout.inner + i;
        const int64_t block = (o * per_column + l / layout.block_size) * layout.inner + i;
        const float scale =
            decode_lattice(read_code(packed.scale_codes, block, scale_bits), s.scale_format);
        y[size_t(flat)] = element_to_value(y[size_t(flat)], scale, plan);
      }
  return y;
}

}  // namespace lattice
