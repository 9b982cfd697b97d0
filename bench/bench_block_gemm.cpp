// Block-scaled FP8 GEMM throughput on the GPU (kernels/block_scaled_gemm.h): MXFP8 (e4m3 codes,
// block 32) and MXFP4 elements carried as e4m3, by the mma.sync kernel and, on sm_90, the wgmma
// kernel on the same operands (with their largest difference), beside cuBLAS bf16 (bf16 in, fp32
// out and accumulation) and cuBLAS fp32 sgemm (TF32 off) on the same shapes in the same run: 4096^3
// and the linear layers of llama 60M and 350M at 8192 tokens. Then the FP8 packers' throughput
// (kernels/pack_fp8.h: pack_fp8, pack_fp8_blocks in both orientations, the fused MX
// quantize-and-pack with nearest-even and stochastic rounding, and the unfused quantizer + packer
// it replaces) beside a device-to-device cudaMemcpy. Times come from CUDA events: warm-up calls,
// then the median of --repeats calls alternating between two input sets (so no call finds its
// operands in L2 from the previous one). Without a GPU it says so and exits 0.
// Usage: bench_block_gemm [--repeats R] [--warmup W]
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "bench/bench_support.h"
#include "core/philox.h"
#include "kernels/block_scaled_gemm.h"
#include "kernels/device_memory.h"
#include "kernels/pack_fp8.h"
#include "kernels/quantize.h"
#include "tensor/quantizer.h"

#if defined(LATTICE_CUDA)
#include <cublas_v2.h>
#include <cuda_runtime.h>
#endif

using namespace lattice;

#if defined(LATTICE_CUDA)
namespace {

void check_cuda_call(cudaError_t status, const char* what) {
  if (status != cudaSuccess)
    throw Error(concat("[bench_block_gemm] ", what, ": ", cudaGetErrorString(status)));
}
void check_cublas_call(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS)
    throw Error(concat("[bench_block_gemm] ", what, ": cuBLAS status ", int(status)));
}

/// Device memory for the benchmark's lifetime.
struct DeviceBuffer {
  void* data = nullptr;
  explicit DeviceBuffer(int64_t bytes) : data(cuda_allocate(bytes)) {}
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& other) noexcept : data(std::exchange(other.data, nullptr)) {}
  ~DeviceBuffer() {
    if (data) cuda_free(data);
  }
  template <typename T>
  T* as() const {
    return static_cast<T*>(data);
  }
};

template <typename T>
DeviceBuffer upload(const std::vector<T>& host) {
  DeviceBuffer buffer(int64_t(host.size() * sizeof(T)));
  copy_host_to_device(buffer.data, host.data(), int64_t(host.size() * sizeof(T)));
  return buffer;
}

/// Milliseconds of each of `repeats` calls of run(i % 2) after `warmup` untimed ones, sorted.
std::vector<double> time_on_device(int64_t warmup,
                                   int64_t repeats,
                                   const std::function<void(int)>& run) {
  cudaEvent_t start = nullptr, stop = nullptr;
  check_cuda_call(cudaEventCreate(&start), "cudaEventCreate");
  check_cuda_call(cudaEventCreate(&stop), "cudaEventCreate");
  for (int64_t i = 0; i < warmup; ++i) run(int(i % 2));
  std::vector<double> times;
  for (int64_t i = 0; i < repeats; ++i) {
    check_cuda_call(cudaEventRecord(start, nullptr), "cudaEventRecord");
    run(int(i % 2));
    check_cuda_call(cudaEventRecord(stop, nullptr), "cudaEventRecord");
    check_cuda_call(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float ms = 0.0f;
    check_cuda_call(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
    times.push_back(double(ms));
  }
  check_cuda_call(cudaEventDestroy(start), "cudaEventDestroy");
  check_cuda_call(cudaEventDestroy(stop), "cudaEventDestroy");
  std::sort(times.begin(), times.end());
  return times;
}

/// n values of a random stream in [0, 1).
std::vector<double> random_units(int64_t n, uint64_t seed) {
  const RandomStream random{.seed = seed, .subsequence = 3};
  std::vector<double> u(static_cast<size_t>(n));
#pragma omp parallel for
  for (int64_t i = 0; i < n; ++i) u[size_t(i)] = double(random.word(uint64_t(i))) / 4294967296.0;
  return u;
}

/// (rows, K) FP8 e4m3 codes of random element-lattice values: MXFP8 (every finite e4m3 value
/// of magnitude up to 448, uniform in log) or MXFP4 (the e2m1 values), packed by pack_fp8_cpu.
std::vector<uint8_t> random_codes(int64_t rows, int64_t K, bool fp4, uint64_t seed) {
  static const float kE2m1[] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
  const std::vector<double> u = random_units(rows * K, seed);
  std::vector<float> values(u.size());
#pragma omp parallel for
  for (size_t i = 0; i < u.size(); ++i) {
    const double sign = (uint64_t(u[i] * 4294967296.0) & 1) ? -1.0 : 1.0;
    values[i] = fp4 ? float(sign) * kE2m1[size_t(u[i] * 8) % 8]
                    : float(sign * std::exp2(std::floor(u[i] * 17.0) - 8.0));  // 2^-8 .. 2^8
  }
  std::vector<uint8_t> codes(values.size());
  uint64_t inexact = 0;
  pack_fp8_cpu(values.data(), codes.data(), int64_t(values.size()), Fp8Format::e4m3, &inexact);
  if (inexact != 0) throw Error("[bench_block_gemm] random element values off the e4m3 lattice");
  return codes;
}

/// (rows, blocks) power-of-two scales 2^-4 .. 2^4 (UE8M0 values).
std::vector<float> random_scales(int64_t rows, int64_t blocks, uint64_t seed) {
  const std::vector<double> u = random_units(rows * blocks, seed);
  std::vector<float> scales(u.size());
  for (size_t i = 0; i < u.size(); ++i) scales[i] = float(std::exp2(std::floor(u[i] * 9.0) - 4.0));
  return scales;
}

/// bf16 bits of values uniform in (-1, 1) (truncated from fp32; the timing does not care).
std::vector<uint16_t> random_bf16(int64_t n, uint64_t seed) {
  const std::vector<double> u = random_units(n, seed);
  std::vector<uint16_t> bits(u.size());
  for (size_t i = 0; i < u.size(); ++i) {
    const float x = float(2.0 * u[i] - 1.0);
    uint32_t word;
    std::memcpy(&word, &x, sizeof word);
    bits[i] = uint16_t(word >> 16);
  }
  return bits;
}

std::vector<float> random_fp32(int64_t n, uint64_t seed) {
  const std::vector<double> u = random_units(n, seed);
  std::vector<float> x(u.size());
  for (size_t i = 0; i < u.size(); ++i) x[i] = float(2.0 * u[i] - 1.0);
  return x;
}

struct Problem {
  const char* name;
  int64_t M, N, K;
};

/// One table row: | problem | method | median ms | throughput | ratio to the baseline |.
void print_row(const std::string& problem,
               const std::string& method,
               double ms,
               const std::string& throughput,
               double ratio) {
  std::printf("| %-34s | %-30s | %8.3f | %-15s | %6.2fx |\n", problem.c_str(), method.c_str(), ms,
              throughput.c_str(), ratio);
}

std::string format_rate(double value, const char* unit) {
  char text[64];
  std::snprintf(text, sizeof text, "%.1f %s", value, unit);
  return text;
}

/// One line comparing the wgmma kernel's C with the mma.sync kernel's on the same operands:
/// max |difference| / max |C| (tensor-core summation differs by up to ~2^-7 of a block's
/// magnitude between the two, so expect small nonzero values; NaN or 1 means a broken kernel).
std::string kernel_difference(const BlockScaledGemm& shape,
                              const DeviceBuffer& a,
                              const DeviceBuffer& scale_a,
                              const DeviceBuffer& b,
                              const DeviceBuffer& scale_b,
                              const std::string& name) {
  std::vector<std::vector<float>> c;
  for (const BlockGemmKernel kernel : {BlockGemmKernel::mma_sync, BlockGemmKernel::wgmma}) {
    DeviceBuffer out(shape.M * shape.N * int64_t(sizeof(float)));
    block_scaled_gemm_cuda(shape, a.as<uint8_t>(), scale_a.as<float>(), b.as<uint8_t>(),
                           scale_b.as<float>(), out.as<float>(), kernel);
    c.emplace_back(size_t(shape.M * shape.N));
    copy_device_to_host(c.back().data(), out.data, shape.M * shape.N * int64_t(sizeof(float)));
  }
  double difference = 0.0, largest = 0.0;
  for (size_t i = 0; i < c[0].size(); ++i) {
    const double d = std::fabs(double(c[1][i]) - double(c[0][i]));
    difference = std::isnan(d) || d > difference ? d : difference;
    largest = std::max(largest, std::fabs(double(c[0][i])));
    if (std::isnan(difference)) break;
  }
  char text[256];
  std::snprintf(text, sizeof text, "%s: %.3g", name.c_str(), difference / largest);
  return text;
}

void bench_gemms(cublasHandle_t cublas, int64_t warmup, int64_t repeats) {
  const Problem problems[] = {
      {"4096^3", 4096, 4096, 4096},
      {"llama 60M ffn up 8192x1376x512", 8192, 1376, 512},
      {"llama 60M ffn down 8192x512x1376", 8192, 512, 1376},
      {"llama 350M attn 8192x1024x1024", 8192, 1024, 1024},
      {"llama 350M ffn up 8192x2736x1024", 8192, 2736, 1024},
      {"llama 350M ffn down 8192x1024x2736", 8192, 1024, 2736},
  };
  const bool wgmma = block_scaled_gemm_cuda_supports(
      BlockGemmKernel::wgmma, BlockScaledGemm{.M = 1, .N = 1, .K = 32, .block_size = 32});
  std::printf(
      "block-scaled FP8 GEMM (mma.sync m16n8k32%s, per-block promotion) vs cuBLAS, C = A B^T, "
      "median of %lld calls over 2 input sets\n",
      wgmma ? "; wgmma m64n128k32 rows marked wgmma" : "; no sm_90 device, so no wgmma rows",
      (long long)repeats);
  std::printf("| %-34s | %-30s | %8s | %-15s | %7s |\n|%s|%s|%s|%s|%s|\n", "problem", "method",
              "ms", "throughput", "vs bf16", "------------------------------------",
              "--------------------------------", "----------", "-----------------", "---------");
  uint64_t seed = 1;
  std::vector<std::string> differences;
  for (const Problem& p : problems) {
    const double flops = 2.0 * double(p.M) * double(p.N) * double(p.K);
    // MX blocks are 32 wide: a K off that grid (2736) is zero-padded, at the padded K's cost.
    const int64_t padded_k = (p.K + 31) / 32 * 32;
    std::vector<DeviceBuffer> bf16_a, bf16_b, fp32_a, fp32_b;
    for (int set = 0; set < 2; ++set) {
      bf16_a.push_back(upload(random_bf16(p.M * p.K, ++seed)));
      bf16_b.push_back(upload(random_bf16(p.N * p.K, ++seed)));
      fp32_a.push_back(upload(random_fp32(p.M * p.K, ++seed)));
      fp32_b.push_back(upload(random_fp32(p.N * p.K, ++seed)));
    }
    DeviceBuffer c(p.M * p.N * int64_t(sizeof(float)));
    const float one = 1.0f, zero = 0.0f;
    // Row-major C = A B^T is column-major C^T = B A^T: B's rows read as columns, transposed.
    const double bf16_ms = bench::median(time_on_device(warmup, repeats, [&](int set) {
      check_cublas_call(cublasGemmEx(cublas, CUBLAS_OP_T, CUBLAS_OP_N, int(p.N), int(p.M), int(p.K),
                                     &one, bf16_b[size_t(set)].data, CUDA_R_16BF, int(p.K),
                                     bf16_a[size_t(set)].data, CUDA_R_16BF, int(p.K), &zero, c.data,
                                     CUDA_R_32F, int(p.N), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                        "cublasGemmEx bf16");
    }));
    const double fp32_ms = bench::median(time_on_device(warmup, repeats, [&](int set) {
      check_cublas_call(
          cublasSgemm(cublas, CUBLAS_OP_T, CUBLAS_OP_N, int(p.N), int(p.M), int(p.K), &one,
                      fp32_b[size_t(set)].as<float>(), int(p.K), fp32_a[size_t(set)].as<float>(),
                      int(p.K), &zero, c.as<float>(), int(p.N)),
          "cublasSgemm");
    }));
    bf16_a.clear(), bf16_b.clear(), fp32_a.clear(), fp32_b.clear();
    const std::string problem = padded_k == p.K
                                    ? std::string(p.name)
                                    : std::string(p.name) + " (K " + std::to_string(padded_k) + ")";
    print_row(p.name, "cuBLAS bf16 (fp32 accumulate)", bf16_ms,
              format_rate(flops / bf16_ms / 1e9, "TFLOP/s"), 1.0);
    print_row(p.name, "cuBLAS fp32 sgemm", fp32_ms, format_rate(flops / fp32_ms / 1e9, "TFLOP/s"),
              bf16_ms / fp32_ms);
    for (const bool fp4 : {false, true}) {
      std::vector<DeviceBuffer> a, b, scale_a, scale_b;
      for (int set = 0; set < 2; ++set) {
        a.push_back(upload(random_codes(p.M, padded_k, fp4, ++seed)));
        b.push_back(upload(random_codes(p.N, padded_k, fp4, ++seed)));
        scale_a.push_back(upload(random_scales(p.M, padded_k / 32, ++seed)));
        scale_b.push_back(upload(random_scales(p.N, padded_k / 32, ++seed)));
      }
      const BlockScaledGemm shape{.M = p.M, .N = p.N, .K = padded_k, .block_size = 32};
      auto time_kernel = [&](BlockGemmKernel kernel) {
        return bench::median(time_on_device(warmup, repeats, [&](int set) {
          block_scaled_gemm_cuda(shape, a[size_t(set)].as<uint8_t>(),
                                 scale_a[size_t(set)].as<float>(), b[size_t(set)].as<uint8_t>(),
                                 scale_b[size_t(set)].as<float>(), c.as<float>(), kernel);
        }));
      };
      const std::string method = fp4 ? "block-scaled mxfp4 as e4m3" : "block-scaled mxfp8 e4m3";
      const double ms = time_kernel(BlockGemmKernel::mma_sync);
      print_row(problem, method, ms, format_rate(flops / ms / 1e9, "TFLOP/s"), bf16_ms / ms);
      if (!wgmma) continue;
      const double wgmma_ms = time_kernel(BlockGemmKernel::wgmma);
      print_row(problem, method + " wgmma", wgmma_ms,
                format_rate(flops / wgmma_ms / 1e9, "TFLOP/s"), bf16_ms / wgmma_ms);
      differences.push_back(kernel_difference(shape, a[0], scale_a[0], b[0], scale_b[0],
                                              std::string(p.name) + ", " + method));
    }
  }
  if (!differences.empty()) {
    std::printf(
        "\nwgmma against mma.sync on the same operands, max |C_wgmma - C_mma.sync| / max |C|\n");
    for (const std::string& line : differences) std::printf("  %s\n", line.c_str());
  }
}

/// One row of the pack table: `bytes_per_value` of useful traffic per fp32 value over `ms`.
void print_pack_row(const std::string& problem,
                    const std::string& method,
                    double ms,
                    double bytes_per_value,
                    int64_t n,
                    double copy_rate) {
  const double rate = bytes_per_value * double(n) / ms / 1e6;
  print_row(problem, method, ms, format_rate(rate, "GB/s"), rate / copy_rate);
}

void bench_pack(int64_t warmup, int64_t repeats) {
  const int64_t side = 4096, n = side * side;
  // Two input sets of each kind: MXFP4 elements (the e2m1 values, on the e4m3 lattice and on an
  // MX lattice with scale 1, as the packers receive them from a quantizer), and raw fp32 values
  // uniform in (-1, 1) for the fused quantize-and-pack.
  std::vector<DeviceBuffer> values, raw;
  for (int set = 0; set < 2; ++set) {
    const std::vector<uint8_t> codes = random_codes(1, n, true, 900 + uint64_t(set));
    std::vector<float> host(codes.size());
    const Format f = format_of(Fp8Format::e4m3);
    for (size_t i = 0; i < codes.size(); ++i) host[i] = decode(f, codes[i]);
    values.push_back(upload(host));
    raw.push_back(upload(random_fp32(n, 910 + uint64_t(set))));
  }
  DeviceBuffer codes(n), scales(n / 32 * int64_t(sizeof(float))),
      staged(n * int64_t(sizeof(float)));
  DeviceBuffer copy(n * int64_t(sizeof(float))), inexact(sizeof(uint64_t));
  check_cuda_call(cudaMemset(inexact.data, 0, sizeof(uint64_t)), "cudaMemset");
  const auto time = [&](const std::function<void(int)>& run) {
    return bench::median(time_on_device(warmup, repeats, run));
  };
  const double memcpy_ms = time([&](int set) {
    copy_device_to_device(copy.data, values[size_t(set)].data, n * int64_t(sizeof(float)));
  });
  const double copy_rate = 8.0 * double(n) / memcpy_ms / 1e6;
  std::printf(
      "\nFP8 packing of %lld fp32 values (%lldx%lld), median of %lld calls over 2 input sets. "
      "Bytes counted per value, read + written: the copy 8, pack_fp8 5 (4 in, 1 code), the block "
      "packers 5.125 (4 in, 1 code, 4 per 32 for the block's fp32 scale); the unfused pair is "
      "counted as the fused kernel (its fp32 round trip through memory is not counted). Blocks "
      "along memory: x (rows, K) row-major; across: x (K, rows), a transposed operand.\n",
      (long long)n, (long long)side, (long long)side, (long long)repeats);
  std::printf("| %-34s | %-30s | %8s | %-15s | %7s |\n|%s|%s|%s|%s|%s|\n", "problem", "method",
              "ms", "throughput", "vs copy", "------------------------------------",
              "--------------------------------", "----------", "-----------------", "---------");
  print_row("4096x4096 fp32", "cudaMemcpy device to device", memcpy_ms,
            format_rate(copy_rate, "GB/s"), 1.0);
  print_pack_row("4096x4096 fp32", "pack_fp8 e4m3", time([&](int set) {
                   pack_fp8_cuda(values[size_t(set)].as<float>(), codes.as<uint8_t>(), n,
                                 Fp8Format::e4m3, inexact.as<uint64_t>());
                 }),
                 5.0, n, copy_rate);
  for (const bool across : {false, true}) {
    const std::string problem =
        across ? "4096x4096, blocks across memory" : "4096x4096, blocks along memory";
    const int64_t row_stride = across ? 1 : side, k_stride = across ? side : 1;
    print_pack_row(problem, "pack_fp8_blocks e4m3", time([&](int set) {
                     pack_fp8_blocks_cuda(values[size_t(set)].as<float>(), side, side, row_stride,
                                          k_stride, 8, Fp8Format::e4m3, codes.as<uint8_t>(),
                                          scales.as<float>(), inexact.as<uint64_t>());
                   }),
                   5.125, n, copy_rate);
    for (const char* name : {"mxfp8", "mxfp4"})
      for (const char* mode : {"rne", "sr"}) {
        Quantizer q = parse_quantizer(name);
        q.rounding = parse_rounding(mode);
        const RandomStream random{.seed = 5};
        const std::string label = std::string(name) + " " + mode;
        print_pack_row(problem, "quantize_pack_mx " + label, time([&](int set) {
                         quantize_pack_mx_cuda(raw[size_t(set)].as<float>(), side, side, row_stride,
                                               k_stride, q.element, q.rounding, *q.scaling, random,
                                               8, Fp8Format::e4m3, codes.as<uint8_t>(),
                                               scales.as<float>(), inexact.as<uint64_t>());
                       }),
                       5.125, n, copy_rate);
        // What ops/quantized_gemm.cpp runs today: the MX quantizer to fp32, then the packer.
        const BlockLayout layout =
            across ? BlockLayout{1, side, side, 32} : BlockLayout{side, side, 1, 32};
        print_pack_row(problem, "quantize_blocks+pack " + label, time([&](int set) {
                         quantize_blocks_cuda(raw[size_t(set)].as<float>(), staged.as<float>(),
                                              layout, q.element, q.rounding, *q.scaling, random);
                         pack_fp8_blocks_cuda(staged.as<float>(), side, side, row_stride, k_stride,
                                              8, Fp8Format::e4m3, codes.as<uint8_t>(),
                                              scales.as<float>(), inexact.as<uint64_t>());
                       }),
                       5.125, n, copy_rate);
      }
  }
  uint64_t inexact_count = 0;
  copy_device_to_host(&inexact_count, inexact.data, sizeof inexact_count);
  if (inexact_count != 0) throw Error("[bench_block_gemm] a packer found values off the lattice");
}

}  // namespace
#endif

int main(int argc, char** argv) {
  const char* program = "bench_block_gemm";
  bench::Flags flags{{"repeats", "30"}, {"warmup", "5"}};
  if (!bench::parse_flags(argc, argv, program, flags)) return 2;
  const std::optional<int64_t> repeats = bench::integer_flag(flags, "repeats", program, 20);
  const std::optional<int64_t> warmup = bench::integer_flag(flags, "warmup", program, 0);
  if (!repeats || !warmup) return 2;
#if defined(LATTICE_CUDA)
  if (!cuda_available()) {
    std::printf("%s: no CUDA device, skipped\n", program);
    return 0;
  }
  try {
    cublasHandle_t cublas = nullptr;
    check_cublas_call(cublasCreate(&cublas), "cublasCreate");
    // Full fp32 products and sums in sgemm (no TF32), as gemm_cuda runs it.
    check_cublas_call(cublasSetMathMode(cublas, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
    bench_gemms(cublas, *warmup, *repeats);
    bench_pack(*warmup, *repeats);
    check_cublas_call(cublasDestroy(cublas), "cublasDestroy");
  } catch (const Error& e) {
    std::fprintf(stderr, "%s: %s\n", program, e.what());
    return 1;
  }
#else
  std::printf("%s: built without CUDA, skipped\n", program);
#endif
  return 0;
}
