// CUDA GEMM kernels: gemm_cuda on cuBLAS's sgemm in its default math mode (full fp32 products and
// sums: TF32 tensor cores stay off, as on the CPU), the bf16 GEMM of operands whose values are
// bf16 values (narrowed exactly, multiplied on the tensor cores with fp32 sums), and the float64
// batched product as a plain loop, one thread per output summing in k order like
// batched_gemm_f64_cpu. A GEMM with few output tiles and a long K runs as chunks of K side by
// side (plan_k_split, kernels/gemm.h).
#include <cublas_v2.h>

#include <algorithm>
#include <mutex>
#include <optional>
#include <vector>

#include "core/error.h"
#include "core/scalar/bits.h"
#include "kernels/cuda/runtime.h"
#include "kernels/device_memory.h"
#include "kernels/gemm.h"

namespace lattice {
namespace {

using cuda::grid_for;
using cuda::kThreads;

void check_cublas(cublasStatus_t status, const char* file, int line) {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  throw Error(concat("[gemm] cuBLAS error ", int(status), " (", file, ":", line, ")"));
}
#define LATTICE_CUBLAS_CHECK(call) check_cublas((call), __FILE__, __LINE__)

/// The one cuBLAS handle, created on first use and bound to the kernels' stream.
/// CUBLAS_DEFAULT_MATH computes in fp32 (TF32 only with CUBLAS_TF32_TENSOR_OP_MATH, which we never
/// set), so results agree with the CPU's sgemm to fp32 rounding.
cublasHandle_t cublas_handle() {
  static std::once_flag created;
  static cublasHandle_t handle = nullptr;
  std::call_once(created, [] {
    cublasHandle_t fresh = nullptr;
    LATTICE_CUBLAS_CHECK(cublasCreate(&fresh));
    LATTICE_CUBLAS_CHECK(cublasSetMathMode(fresh, CUBLAS_DEFAULT_MATH));
    handle = fresh;
  });
  LATTICE_CUBLAS_CHECK(cublasSetStream(handle, cuda::stream()));
  return handle;
}

// c: (M, N) with leading dimension ldc. C = beta * C, the product of an empty reduction; beta = 0
// overwrites (NaN in C does not propagate), as the CPU and BLAS do.
__global__ void scale_matrix_kernel(float* c, int64_t M, int64_t N, int64_t ldc, float beta) {
  const int64_t count = M * N;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < count;
       e += int64_t(gridDim.x) * blockDim.x) {
    float& out = c[(e / N) * ldc + e % N];
    out = beta == 0.0f ? 0.0f : beta * out;
  }
}

// a: (batches, M, K), b: (batches, K, N), c: (batches, M, N); one thread per output. Products
// and sums are rounded separately (no FMA), each sum in k order.
__global__ void batched_gemm_f64_kernel(
    const double* a, const double* b, double* c, int64_t batches, int64_t M, int64_t N, int64_t K) {
  const int64_t count = batches * M * N;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < count;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t col = e % N, r = (e / N) % M, i = e / (M * N);
    const double* a_row = a + i * M * K + r * K;
    const double* b_col = b + i * K * N + col;
    double total = 0.0;
    for (int64_t k = 0; k < K; ++k) total = __dadd_rn(total, __dmul_rn(a_row[k], b_col[k * N]));
    c[e] = total;
  }
}

// work: (chunks, M, N) packed, the products of consecutive K ranges; c: (M, N) with leading
// dimension ldc. c = alpha * (work_0 + work_1 + ...) + beta * c, the chunks added in order;
// beta = 0 overwrites.
__global__ void sum_k_chunks_kernel(const float* work,
                                    int64_t chunks,
                                    int64_t M,
                                    int64_t N,
                                    float alpha,
                                    float beta,
                                    float* c,
                                    int64_t ldc) {
  const int64_t count = M * N;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < count;
       e += int64_t(gridDim.x) * blockDim.x) {
    float total = work[e];
    for (int64_t i = 1; i < chunks; ++i) total += work[i * count + e];
    float& out = c[(e / N) * ldc + e % N];
    out = beta == 0.0f ? alpha * total : alpha * total + beta * out;
  }
}

// src: `count` matrices of (rows, cols) with leading dimension ld, matrix i at src + i * stride;
// dst: (count, rows, cols) packed bf16 bits. Every value must be a bf16 value (or NaN).
__global__ void narrow_to_bf16_kernel(const float* src,
                                      int64_t stride,
                                      int64_t count,
                                      int64_t rows,
                                      int64_t cols,
                                      int64_t ld,
                                      uint16_t* dst) {
  const int64_t total = count * rows * cols;
  for (int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; e < total;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t col = e % cols, row = (e / cols) % rows, i = e / (rows * cols);
    dst[e] = bf16_bits(src[i * stride + row * ld + col]);
  }
}

/// Runs the GEMM of `s` over the chunks of `split` and sums them into c (alpha, beta as in
/// gemm_cuda). run_chunks(k0, length, batch, out) writes the products over K ranges
/// [k0 + i * length, k0 + (i + 1) * length) for i < batch to out + i * M * N, packed.
template <typename RunChunks>
void sum_over_k_split(
    const GemmShape& s, KSplit split, float alpha, float beta, float* c, RunChunks run_chunks) {
  const int64_t full = s.K / split.chunk, rest = s.K - full * split.chunk, area = s.M * s.N;
  float* work = static_cast<float*>(cuda_allocate(split.chunks * area * int64_t(sizeof(float))));
  if (full > 0) run_chunks(0, split.chunk, full, work);
  if (rest > 0) run_chunks(full * split.chunk, rest, 1, work + full * area);
  sum_k_chunks_kernel<<<grid_for(area), kThreads, 0, cuda::stream()>>>(work, split.chunks, s.M, s.N,
                                                                       alpha, beta, c, s.ldc);
  cuda_free(work);  // stream-ordered: later work on the stream runs after the sum
  LATTICE_CUDA_LAUNCHED("gemm");
}

/// Elements between consecutive k of op(A) and of op(B) as stored (row-major, see GemmShape).
int64_t a_k_step(const GemmShape& s) {
  return s.transpose_a ? s.lda : 1;
}
int64_t b_k_step(const GemmShape& s) {
  return s.transpose_b ? 1 : s.ldb;
}

/// The distance between consecutive pointers when it is the same non-negative one for all (0
/// for one matrix repeated), nullopt otherwise.
template <typename T>
std::optional<int64_t> uniform_stride(const T* const* pointers, int64_t count) {
  const int64_t stride = count > 1 ? pointers[1] - pointers[0] : 0;
  for (int64_t i = 2; i < count; ++i)
    if (pointers[i] - pointers[i - 1] != stride) return std::nullopt;
  if (stride < 0) return std::nullopt;
  return stride;
}

/// C_i = op(A_i) @ op(B_i) for i < count on bf16 bits on the tensor cores, fp32 sums: A_i at
/// a + i * a_step with leading dimension s.lda, so for B; c: (count, M, N) packed. A single
/// product with few output tiles and a long K runs as chunks of K (plan_k_split).
void bf16_strided_product(const GemmShape& s,
                          const uint16_t* a,
                          int64_t a_step,
                          const uint16_t* b,
                          int64_t b_step,
                          float* c,
                          int64_t count) {
  const cublasOperation_t op_b = s.transpose_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_a = s.transpose_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const float one = 1.0f, zero = 0.0f;
  // Products of bf16 values are exact in fp32; the tensor cores sum them in fp32. Column-major,
  // as in gemm_cuda: C^T = op(B)^T op(A)^T.
  const auto product = [&](int64_t k0, int64_t length, int64_t a_stride, int64_t b_stride,
                           float* out, int64_t batch) {
    LATTICE_CUBLAS_CHECK(cublasGemmStridedBatchedEx_64(
        cublas_handle(), op_b, op_a, s.N, s.M, length, &one, b + k0 * b_k_step(s), CUDA_R_16BF,
        s.ldb, b_stride, a + k0 * a_k_step(s), CUDA_R_16BF, s.lda, a_stride, &zero, out, CUDA_R_32F,
        s.N, s.M * s.N, batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  };
  const KSplit split = count == 1 ? plan_k_split(s.M, s.N, s.K) : KSplit{1, s.K};
  if (split.chunks == 1) {
    product(0, s.K, a_step, b_step, c, count);
    return;
  }
  sum_over_k_split(s, split, 1.0f, 0.0f, c,
                   [&](int64_t k0, int64_t length, int64_t batch, float* out) {
                     product(k0, length, length * a_k_step(s), length * b_k_step(s), out, batch);
                   });
}

}  // namespace

void gemm_cuda(
    const GemmShape& s, float alpha, const float* a, const float* b, float beta, float* c) {
  check_gemm_shape(s);
  if (s.M == 0 || s.N == 0) return;
  if (s.K == 0) {
    scale_matrix_kernel<<<grid_for(s.M * s.N), kThreads, 0, cuda::stream()>>>(c, s.M, s.N, s.ldc,
                                                                              beta);
    LATTICE_CUDA_LAUNCHED("gemm");
    return;
  }
  // cuBLAS is column-major: the row-major C (M, N) is the column-major C^T (N, M), and
  // C^T = op(B)^T op(A)^T, where the row-major op(B) and op(A) read column-major are already
  // op(B)^T and op(A)^T untransposed.
  const cublasOperation_t op_b = s.transpose_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_a = s.transpose_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const KSplit split = plan_k_split(s.M, s.N, s.K);
  if (split.chunks == 1) {
    LATTICE_CUBLAS_CHECK(cublasSgemm_64(cublas_handle(), op_b, op_a, s.N, s.M, s.K, &alpha, b,
                                        s.ldb, a, s.lda, &beta, c, s.ldc));
    return;
  }
  const float one = 1.0f, zero = 0.0f;
  sum_over_k_split(s, split, alpha, beta, c,
                   [&](int64_t k0, int64_t length, int64_t batch, float* out) {
                     LATTICE_CUBLAS_CHECK(cublasSgemmStridedBatched_64(
                         cublas_handle(), op_b, op_a, s.N, s.M, length, &one, b + k0 * b_k_step(s),
                         s.ldb, length * b_k_step(s), a + k0 * a_k_step(s), s.lda,
                         length * a_k_step(s), &zero, out, s.N, s.M * s.N, batch));
                   });
}

void gemm_batched_cuda(const GemmShape& s,
                       float alpha,
                       const float* const* a,
                       const float* const* b,
                       float beta,
                       float* const* c,
                       int64_t count) {
  check_gemm_shape(s);
  if (count == 0 || s.M == 0 || s.N == 0) return;
  if (s.K == 0 || count == 1) {
    for (int64_t i = 0; i < count; ++i) gemm_cuda(s, alpha, a[i], b[i], beta, c[i]);
    return;
  }
  const cublasOperation_t op_b = s.transpose_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_a = s.transpose_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  // Matrices at equal distances (attention's heads) need no pointer arrays on the device.
  const auto a_stride = uniform_stride(a, count), b_stride = uniform_stride(b, count);
  const auto c_stride = uniform_stride(c, count);
  if (a_stride && b_stride && c_stride) {
    LATTICE_CUBLAS_CHECK(cublasSgemmStridedBatched_64(
        cublas_handle(), op_b, op_a, s.N, s.M, s.K, &alpha, b[0], s.ldb, *b_stride, a[0], s.lda,
        *a_stride, &beta, c[0], s.ldc, *c_stride, count));
    return;
  }
  // The three pointer arrays go to the device in one copy (stream-ordered, so the scratch can
  // return to the cache at once: later work on the stream runs after this GEMM).
  std::vector<const void*> pointers;
  pointers.reserve(size_t(3 * count));
  for (int64_t i = 0; i < count; ++i) pointers.push_back(b[i]);
  for (int64_t i = 0; i < count; ++i) pointers.push_back(a[i]);
  for (int64_t i = 0; i < count; ++i) pointers.push_back(c[i]);
  const int64_t bytes = int64_t(pointers.size() * sizeof(void*));
  void* device_pointers = cuda_allocate(bytes);
  LATTICE_CUDA_CHECK(cudaMemcpyAsync(device_pointers, pointers.data(), size_t(bytes),
                                     cudaMemcpyHostToDevice, cuda::stream()),
                     "gemm_batched");
  const auto* table = static_cast<const float* const*>(device_pointers);
  // Column-major, as in gemm_cuda: C_i^T = op(B_i)^T op(A_i)^T.
  const cublasStatus_t status = cublasSgemmBatched_64(
      cublas_handle(), op_b, op_a, s.N, s.M, s.K, &alpha, table, s.ldb, table + count, s.lda, &beta,
      const_cast<float* const*>(table + 2 * count), s.ldc, count);
  cuda_free(device_pointers);
  LATTICE_CUBLAS_CHECK(status);
}

void gemm_bf16_batched_cuda(
    const GemmShape& s, const float* const* a, const float* const* b, float* c, int64_t count) {
  check_bf16_gemm(s, count);
  if (s.M == 0 || s.N == 0 || count == 0) return;
  const auto a_stride = uniform_stride(a, count), b_stride = uniform_stride(b, count);
  if (s.K == 0 || !a_stride || !b_stride) {
    // Nothing to narrow, or matrices scattered in memory (no caller makes them): the fp32 GEMM
    // computes the same products.
    std::vector<float*> outputs;
    for (int64_t i = 0; i < count; ++i) outputs.push_back(c + i * s.M * s.N);
    gemm_batched_cuda(s, 1.0f, a, b, 0.0f, outputs.data(), count);
    return;
  }
  // Each operand narrowed in its stored orientation, once when every entry reads one matrix.
  const int64_t a_rows = s.transpose_a ? s.K : s.M, a_cols = s.transpose_a ? s.M : s.K;
  const int64_t b_rows = s.transpose_b ? s.N : s.K, b_cols = s.transpose_b ? s.K : s.N;
  const int64_t a_count = *a_stride == 0 ? 1 : count, b_count = *b_stride == 0 ? 1 : count;
  auto* narrowed = static_cast<uint16_t*>(cuda_allocate(
      (a_count * a_rows * a_cols + b_count * b_rows * b_cols) * int64_t(sizeof(uint16_t))));
  uint16_t* const a16 = narrowed;
  uint16_t* const b16 = narrowed + a_count * a_rows * a_cols;
  narrow_to_bf16_kernel<<<grid_for(a_count * a_rows * a_cols), kThreads, 0, cuda::stream()>>>(
      a[0], *a_stride, a_count, a_rows, a_cols, s.lda, a16);
  LATTICE_CUDA_LAUNCHED("gemm");
  narrow_to_bf16_kernel<<<grid_for(b_count * b_rows * b_cols), kThreads, 0, cuda::stream()>>>(
      b[0], *b_stride, b_count, b_rows, b_cols, s.ldb, b16);
  LATTICE_CUDA_LAUNCHED("gemm");
  // The narrowed operands, packed: leading dimensions are their stored columns.
  GemmShape packed = s;
  packed.lda = a_cols;
  packed.ldb = b_cols;
  bf16_strided_product(packed, a16, a_count == 1 ? 0 : a_rows * a_cols, b16,
                       b_count == 1 ? 0 : b_rows * b_cols, c, count);
  cuda_free(narrowed);  // stream-ordered, as in gemm_batched_cuda
}

void gemm_bf16_bits_batched_cuda(const GemmShape& s,
                                 const uint16_t* const* a,
                                 const uint16_t* const* b,
                                 float* c,
                                 int64_t count) {
  check_bf16_gemm(s, count);
  if (s.M == 0 || s.N == 0 || count == 0) return;
  if (s.K == 0) {  // the empty sum: c (count * M, N) is zero
    scale_matrix_kernel<<<grid_for(count * s.M * s.N), kThreads, 0, cuda::stream()>>>(
        c, count * s.M, s.N, s.N, 0.0f);
    LATTICE_CUDA_LAUNCHED("gemm");
    return;
  }
  const auto a_stride = uniform_stride(a, count), b_stride = uniform_stride(b, count);
  if (a_stride && b_stride) {
    bf16_strided_product(s, a[0], *a_stride, b[0], *b_stride, c, count);
    return;
  }
  for (int64_t i = 0; i < count; ++i)  // matrices scattered in memory: one product each
    bf16_strided_product(s, a[i], 0, b[i], 0, c + i * s.M * s.N, 1);
}

void batched_gemm_f64_cuda(
    const double* a, const double* b, double* c, int64_t batches, int64_t M, int64_t N, int64_t K) {
  const int64_t count = batches * M * N;
  if (count == 0) return;
  batched_gemm_f64_kernel<<<grid_for(count), kThreads, 0, cuda::stream()>>>(a, b, c, batches, M, N,
                                                                            K);
  LATTICE_CUDA_LAUNCHED("batched_gemm_f64");
}

}  // namespace lattice
