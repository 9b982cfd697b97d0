// CUDA GEMM kernels: gemm_cuda on cuBLAS's sgemm in its default math mode (full fp32 products and
// sums: TF32 tensor cores stay off, as on the CPU), and the float64 batched product as a plain
// loop, one thread per output summing in k order like batched_gemm_f64_cpu.
#include <cublas_v2.h>

#include <mutex>
#include <vector>

#include "core/error.h"
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
  LATTICE_CUBLAS_CHECK(cublasSgemm_64(cublas_handle(), s.transpose_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                                      s.transpose_a ? CUBLAS_OP_T : CUBLAS_OP_N, s.N, s.M, s.K,
                                      &alpha, b, s.ldb, a, s.lda, &beta, c, s.ldc));
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
  if (s.K == 0) {
    for (int64_t i = 0; i < count; ++i) gemm_cuda(s, alpha, a[i], b[i], beta, c[i]);
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
      cublas_handle(), s.transpose_b ? CUBLAS_OP_T : CUBLAS_OP_N,
      s.transpose_a ? CUBLAS_OP_T : CUBLAS_OP_N, s.N, s.M, s.K, &alpha, table, s.ldb, table + count,
      s.lda, &beta, const_cast<float* const*>(table + 2 * count), s.ldc, count);
  cuda_free(device_pointers);
  LATTICE_CUBLAS_CHECK(status);
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
