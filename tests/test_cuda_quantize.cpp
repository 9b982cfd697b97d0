// CUDA quantize kernels against their CPU twins, bit for bit (stochastic rounding included).
// Without a GPU the parity test reports that it skipped; the API must then fail cleanly.
#include <doctest/doctest.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "core/error.h"
#include "kernels/device_memory.h"
#include "kernels/quantize.h"
#include "tensor/precision_stack.h"
#include "tensor/quantizer.h"

using namespace lattice;

TEST_CASE("without a CUDA device the CUDA kernels throw a clear error instead of crashing") {
  if (cuda_available()) return;
  const float x = 1.0f;
  float y = 0.0f;
  CHECK_THROWS_AS(quantize_elementwise_cuda(&x, &y, 1, bf16, Rounding{}, RandomStream{}), Error);
  uint16_t bits = 0;
  CHECK_THROWS_AS(quantize_elementwise_bf16_cuda(&x, &bits, 1, e2m1, Rounding{}, RandomStream{}),
                  Error);
  const Quantizer nvfp4 = parse_quantizer("nvfp4");
  CHECK_THROWS_AS(quantize_blocks_bf16_cuda(&x, &bits, BlockLayout{1, 1, 1, 16}, nvfp4.element,
                                            nvfp4.rounding, *nvfp4.scaling, RandomStream{}),
                  Error);
  MESSAGE("no CUDA device here: the GPU parity tests below skip");
}

#if defined(LATTICE_CUDA)
// Only the CUDA parity test uses these (a CPU-only build would warn that they are unused).
namespace {

std::vector<float> test_values(int64_t n) {
  std::vector<float> x(static_cast<size_t>(n));
  const RandomStream random{.seed = 3};
  for (int64_t i = 0; i < n; ++i)
    x[size_t(i)] = (float(random.word(uint64_t(i))) / 4294967296.0f - 0.5f) * float(1 << (i % 14)) *
                   (i % 31 == 0 ? 1e-38f : 1.0f);
  x[5] = 0.0f, x[77] = -0.0f, x[300] = 1e30f;
  return x;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

bool same_bits(const std::vector<uint16_t>& a, const std::vector<uint16_t>& b) {
  return a == b;
}

}  // namespace

TEST_CASE("CUDA quantize kernels match the CPU kernels bit for bit, as fp32 and as bf16 bits") {
  if (!cuda_available()) return;
  // 200 columns: blocks along memory end ragged (6 x 32 + 8, 12 x 16 + 8).
  const int64_t rows = 37, cols = 200, n = rows * cols;
  const std::vector<float> x = test_values(n);
  const int64_t bytes = n * int64_t(sizeof(float));
  float* device_x = static_cast<float*>(cuda_allocate(bytes));
  float* device_y = static_cast<float*>(cuda_allocate(bytes));
  auto* device_bits = static_cast<uint16_t*>(cuda_allocate(n * int64_t(sizeof(uint16_t))));
  copy_host_to_device(device_x, x.data(), bytes);
  const auto from_device = [&] {
    std::vector<float> y(static_cast<size_t>(n));
    copy_device_to_host(y.data(), device_y, bytes);
    return y;
  };
  const auto bits_from_device = [&] {
    std::vector<uint16_t> y(static_cast<size_t>(n));
    copy_device_to_host(y.data(), device_bits, n * int64_t(sizeof(uint16_t)));
    return y;
  };
  const RandomStream random{.seed = 11, .subsequence = 2};
  for (const char* name : {"bf16", "fp16", "e4m3", "e5m2", "e2m1", "ue8m0", "int8"}) {
    for (const char* mode : {"rne", "rna", "rtz", "rup", "rdn", "sr", "sr8"}) {
      CAPTURE(name);
      CAPTURE(mode);
      const Format format = parse_format(name);
      const Rounding rounding = parse_rounding(mode);
      std::vector<float> expected(static_cast<size_t>(n));
      quantize_elementwise_cpu(x.data(), expected.data(), n, format, rounding, random);
      quantize_elementwise_cuda(device_x, device_y, n, format, rounding, random);
      CHECK(same_bits(from_device(), expected));
      if (!within_bf16(format)) continue;
      std::vector<uint16_t> expected_bits(static_cast<size_t>(n));
      quantize_elementwise_bf16_cpu(x.data(), expected_bits.data(), n, format, rounding, random);
      quantize_elementwise_bf16_cuda(device_x, device_bits, n, format, rounding, random);
      CHECK(same_bits(bits_from_device(), expected_bits));
    }
  }
  // MX (a lane per element along memory; blocks of 64 a thread per block), NVFP4 with its
  // factor, and the encode rule with stochastic scales.
  Quantizer mx64 = parse_quantizer("mxfp4");
  mx64.scaling->block_size = 64;
  Quantizer encode = parse_quantizer("e2m1");
  encode.scaling = BlockScaling{.block_size = 16,
                                .scale_format = ue5m3,
                                .rule = ScaleRule::encode,
                                .scale_rounding = RoundingMode::stochastic,
                                .tensor_scale = true};
  for (const Quantizer& base : {parse_quantizer("mxfp4"), parse_quantizer("mxfp6"),
                                parse_quantizer("mxfp8"), parse_quantizer("nvfp4"), mx64, encode})
    for (const char* mode : {"rne", "sr"})
      for (int axis : {0, 1}) {
        CAPTURE(to_string(base));
        CAPTURE(mode);
        CAPTURE(axis);
        Quantizer q = base;
        q.rounding = parse_rounding(mode);
        q.scaling->axis = axis;
        const int64_t shape[] = {rows, cols};
        const BlockLayout layout = block_layout(*q.scaling, shape);
        std::vector<float> expected(static_cast<size_t>(n));
        quantize_blocks_cpu(x.data(), expected.data(), layout, q.element, q.rounding, *q.scaling,
                            random, nullptr);
        quantize_blocks_cuda(device_x, device_y, layout, q.element, q.rounding, *q.scaling, random);
        CHECK(same_bits(from_device(), expected));
        if (!within_bf16_times_factor(q)) continue;
        std::vector<uint16_t> expected_bits(static_cast<size_t>(n));
        const float cpu_factor = quantize_blocks_bf16_cpu(
            x.data(), expected_bits.data(), layout, q.element, q.rounding, *q.scaling, random);
        const float cuda_factor = quantize_blocks_bf16_cuda(
            device_x, device_bits, layout, q.element, q.rounding, *q.scaling, random);
        CHECK(same_bits(bits_from_device(), expected_bits));
        CHECK(std::memcmp(&cuda_factor, &cpu_factor, sizeof(float)) == 0);
      }
  cuda_free(device_x);
  cuda_free(device_y);
  cuda_free(device_bits);
}
#endif
