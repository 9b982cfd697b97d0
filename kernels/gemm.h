// GEMM, backend-neutral: C = alpha * op(A) @ op(B) + beta * C on row-major fp32 matrices, the
// engine behind matmul, linear and convolution (ops/quantized_gemm.cpp calls it), and the
// float64 batched product of gradient checks. The CPU version calls oneDNN's sgemm (the fastest
// measured here); gemm_reference_cpu is the plain triple loop tests check it against. Operands
// whose values are all bf16 values can run as oneDNN's bf16 matmul instead (gemm_bf16_batched_cpu,
// where the CPU multiplies bf16 natively), which computes the same products.
#pragma once

#include <cstdint>

namespace lattice {

/// op(A): (M, K), op(B): (K, N), C: (M, N), all row-major with leading dimensions lda, ldb,
/// ldc (elements between rows of the stored matrix). op(X) = X, or X^T when transpose_x.
struct GemmShape {
  int64_t M = 0, N = 0, K = 0;
  bool transpose_a = false, transpose_b = false;
  int64_t lda = 0, ldb = 0, ldc = 0;
};

/// Fills in the leading dimensions of densely stored A, B and C.
GemmShape dense_gemm(int64_t M, int64_t N, int64_t K, bool transpose_a, bool transpose_b);

/// Throws lattice::Error "[gemm] ..." on negative sizes or leading dimensions smaller than the
/// rows they hold (both backends check shapes with it).
void check_gemm_shape(const GemmShape& shape);
/// check_gemm_shape, and a batch of `count` >= 0 written packed (ldc = N), as the bf16 GEMMs
/// write C.
void check_bf16_gemm(const GemmShape& shape, int64_t count);

/// A GEMM's K cut into consecutive ranges of `chunk` (the last may be shorter), `chunks` in all.
struct KSplit {
  int64_t chunks = 1, chunk = 0;
};

/// How the GPU GEMM splits K. cuBLAS gives a GEMM about as many CTAs as it has output tiles,
/// however long K is: the tiny LLaMA's weight gradients, (256, 256) summed over 2048 tokens,
/// ran on 2 of the H100's 132 SMs for 0.41 ms each (ncu on bench_llama), three quarters of the
/// step. A GEMM of fewer than 64 tiles of 128 x 128 whose K allows runs as chunks of K side by
/// side, about 128 tiles in all, chunks a multiple of 32 and at least 128 long, whose products
/// are then added in chunk order; otherwise {1, K}. The plan depends on the shape alone (not
/// on the GPU's load or SM count), so a seeded run repeats its bits.
KSplit plan_k_split(int64_t M, int64_t N, int64_t K);

/// C = alpha * op(A) @ op(B) + beta * C. Throws lattice::Error on inconsistent shapes. The CUDA
/// twins (kernels/cuda/gemm_cuda.cu): gemm_cuda on cuBLAS sgemm with TF32 off.
void gemm_cpu(
    const GemmShape& shape, float alpha, const float* a, const float* b, float beta, float* c);
void gemm_cuda(
    const GemmShape& shape, float alpha, const float* a, const float* b, float beta, float* c);

/// C_i = alpha * op(A_i) @ op(B_i) + beta * C_i for every i, one shape for all: the matrices of
/// a batched matmul (attention's heads) in one call. a, b, c: host arrays of `count` pointers
/// (to device memory for CUDA, where cuBLAS's batched sgemm runs them in one launch; the CPU
/// calls gemm_cpu on each).
void gemm_batched_cpu(const GemmShape& shape,
                      float alpha,
                      const float* const* a,
                      const float* const* b,
                      float beta,
                      float* const* c,
                      int64_t count);
void gemm_batched_cuda(const GemmShape& shape,
                       float alpha,
                       const float* const* a,
                       const float* const* b,
                       float beta,
                       float* const* c,
                       int64_t count);

/// Whether oneDNN multiplies bf16 natively on this CPU (AVX512-BF16 or AMX; it also honours
/// ONEDNN_MAX_CPU_ISA), the condition for gemm_bf16_batched_cpu.
bool native_bf16_gemm_cpu();

/// C_i = op(A_i) @ op(B_i) for i < count, on fp32 operands every value of which is a bf16 value
/// (at most 8 significant bits): each operand is narrowed to bf16 exactly (its low 16 bits are
/// zero) and oneDNN's bf16 matmul sums the products, which are exact, in fp32. The result is
/// the fp32 GEMM's sum in another order, except that the instructions flush bf16 subnormals
/// (|v| < 2^-126) in the operands and the partial sums to zero (NUMERICS.md). a, b: host arrays
/// of `count` pointers laid out as in gemm_batched_cpu (an operand whose pointers are all equal
/// is narrowed once); c: (count, M, N) packed, so shape.ldc must be N. Throws lattice::Error
/// "[gemm] ..." where native_bf16_gemm_cpu() is false.
void gemm_bf16_batched_cpu(
    const GemmShape& shape, const float* const* a, const float* const* b, float* c, int64_t count);
/// The CUDA twin: operands narrowed on the device, cuBLAS's bf16 GEMM on the tensor cores with
/// fp32 sums (entries at equal distances, the layout every caller makes; others run the fp32
/// GEMM, the same products).
void gemm_bf16_batched_cuda(
    const GemmShape& shape, const float* const* a, const float* const* b, float* c, int64_t count);
/// gemm_bf16_batched_cpu on operands given as bf16 bits (a quantize kernel's _bf16 output),
/// laid out alike: read in place where each operand's matrices are dense and one after another
/// (or one matrix for all), else packed first. Same primitive, so the same bits, as for the fp32
/// values of those bits.
void gemm_bf16_bits_batched_cpu(const GemmShape& shape,
                                const uint16_t* const* a,
                                const uint16_t* const* b,
                                float* c,
                                int64_t count);
/// The CUDA twin: cuBLAS's bf16 GEMM reads the bits in place at their leading dimensions, all
/// entries in one call where they lie at equal distances, else one call each. The same sums as
/// gemm_bf16_batched_cuda on the fp32 values of those bits, so the same bits.
void gemm_bf16_bits_batched_cuda(const GemmShape& shape,
                                 const uint16_t* const* a,
                                 const uint16_t* const* b,
                                 float* c,
                                 int64_t count);

/// c = a @ b per batch entry in float64, each sum in k order (gradient checks want the exact
/// loop, not a blocked one). a: (batches, M, K), b: (batches, K, N), c: (batches, M, N).
void batched_gemm_f64_cpu(
    const double* a, const double* b, double* c, int64_t batches, int64_t M, int64_t N, int64_t K);
void batched_gemm_f64_cuda(
    const double* a, const double* b, double* c, int64_t batches, int64_t M, int64_t N, int64_t K);

/// The same as a plain loop with fp64 accumulation (reference for tests).
void gemm_reference_cpu(
    const GemmShape& shape, float alpha, const float* a, const float* b, float beta, float* c);

}  // namespace lattice
