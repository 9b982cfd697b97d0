// CPU GEMM through oneDNN's dnnl_sgemm (row-major, OpenMP threads), the bf16 GEMM of operands on
// bf16 lattices (fp32 values narrowed here, or bf16 bits) through oneDNN's matmul primitive, the
// float64 batched loop and the reference loop.
#include <omp.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <tuple>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/scalar/bits.h"
#include "kernels/cpu/parallel.h"
#include "kernels/gemm.h"

namespace lattice {

void check_gemm_shape(const GemmShape& s) {
  LATTICE_CHECK(s.M >= 0 && s.N >= 0 && s.K >= 0, "[gemm] negative size (", s.M, ", ", s.N, ", ",
                s.K, ")");
  const int64_t a_cols = s.transpose_a ? s.M : s.K, b_cols = s.transpose_b ? s.K : s.N;
  LATTICE_CHECK(s.lda >= std::max<int64_t>(1, a_cols) && s.ldb >= std::max<int64_t>(1, b_cols) &&
                    s.ldc >= std::max<int64_t>(1, s.N),
                "[gemm] leading dimensions (", s.lda, ", ", s.ldb, ", ", s.ldc,
                ") are smaller than the rows they hold (", a_cols, ", ", b_cols, ", ", s.N, ")");
}

void check_bf16_gemm(const GemmShape& s, int64_t count) {
  check_gemm_shape(s);
  LATTICE_CHECK(count >= 0, "[gemm] negative batch count ", count);
  LATTICE_CHECK(s.ldc == std::max<int64_t>(1, s.N),
                "[gemm] the bf16 GEMM writes packed output (ldc ", s.N, "), got ldc ", s.ldc);
}

KSplit plan_k_split(int64_t M, int64_t N, int64_t K) {
  constexpr int64_t kTile = 128, kTargetTiles = 128, kMinChunk = 128;
  const int64_t tiles = ((M + kTile - 1) / kTile) * ((N + kTile - 1) / kTile);
  const int64_t wanted =
      std::min(K / kMinChunk, (kTargetTiles + tiles - 1) / std::max<int64_t>(tiles, 1));
  if (tiles * 2 > kTargetTiles || wanted < 2) return {1, K};
  const int64_t chunk = ((K + wanted - 1) / wanted + 31) / 32 * 32;
  return {(K + chunk - 1) / chunk, chunk};
}

GemmShape dense_gemm(int64_t M, int64_t N, int64_t K, bool transpose_a, bool transpose_b) {
  return GemmShape{M,
                   N,
                   K,
                   transpose_a,
                   transpose_b,
                   std::max<int64_t>(1, transpose_a ? M : K),
                   std::max<int64_t>(1, transpose_b ? K : N),
                   std::max<int64_t>(1, N)};
}

void gemm_cpu(
    const GemmShape& s, float alpha, const float* a, const float* b, float beta, float* c) {
  check_gemm_shape(s);
  if (s.M == 0 || s.N == 0) return;
  if (s.K == 0) {  // C = beta * C, which oneDNN leaves untouched; beta = 0 overwrites NaN too
    for (int64_t i = 0; i < s.M; ++i)
      for (int64_t j = 0; j < s.N; ++j)
        c[i * s.ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * s.ldc + j];
    return;
  }
  const dnnl_status_t status = dnnl_sgemm(s.transpose_a ? 'T' : 'N', s.transpose_b ? 'T' : 'N', s.M,
                                          s.N, s.K, alpha, a, s.lda, b, s.ldb, beta, c, s.ldc);
  LATTICE_CHECK(status == dnnl_success, "[gemm] oneDNN sgemm failed with status ", int(status));
}

void gemm_batched_cpu(const GemmShape& shape,
                      float alpha,
                      const float* const* a,
                      const float* const* b,
                      float beta,
                      float* const* c,
                      int64_t count) {
  for (int64_t i = 0; i < count; ++i) gemm_cpu(shape, alpha, a[i], b[i], beta, c[i]);
}

bool native_bf16_gemm_cpu() {
  static const bool native = [] {
    const auto bf16 = unsigned(dnnl_cpu_isa_avx512_core_bf16);  // AMX's mask contains it
    return (unsigned(dnnl_get_effective_cpu_isa()) & bf16) == bf16;
  }();
  return native;
}

namespace {

/// One GEMM operand of a batch: `count` matrices of rows x cols stored with leading dimension
/// ld (or one, when `may_share` and every pointer is the same), narrowed into dense bf16
/// matrices, one after another in `out`. Returns the number of matrices narrowed.
int64_t narrow_operand(const float* const* x,
                       int64_t count,
                       int64_t rows,
                       int64_t cols,
                       int64_t ld,
                       bool may_share,
                       std::vector<uint16_t>& out) {
  const bool shared =
      may_share && std::all_of(x, x + count, [&](const float* p) { return p == x[0]; });
  const int64_t matrices = shared ? 1 : count, total_rows = matrices * rows;
  if (out.size() < size_t(total_rows * cols)) out.resize(size_t(total_rows * cols));
  uint16_t* y = out.data();
#pragma omp parallel for schedule(static) if (total_rows * cols >= kParallelMin)
  for (int64_t r = 0; r < total_rows; ++r) {
    const float* row = x[r / rows] + (r % rows) * ld;
    uint16_t* narrowed = y + r * cols;
    for (int64_t j = 0; j < cols; ++j) narrowed[j] = bf16_bits(row[j]);
  }
  return matrices;
}

/// The matmul primitive of one geometry (its operands' batch counts, sizes and orientations),
/// built once per thread count: oneDNN plans a primitive's split over the threads it has when
/// the primitive is created. The cache forgets everything past kMaxPlans geometries (sampling
/// with a growing sequence meets a new one per token), so it stays bounded.
dnnl::matmul bf16_matmul(const GemmShape& s,
                         int64_t a_count,
                         int64_t b_count,
                         int64_t count,
                         const dnnl::memory::desc& a,
                         const dnnl::memory::desc& b,
                         const dnnl::memory::desc& c,
                         const dnnl::engine& engine) {
  using Key = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, bool, bool, int>;
  static std::mutex mutex;
  static std::map<Key, dnnl::matmul> plans;
  const Key key{
      a_count, b_count, count, s.M, s.N, s.K, s.transpose_a, s.transpose_b, omp_get_max_threads()};
  const std::lock_guard<std::mutex> lock(mutex);
  constexpr size_t kMaxPlans = 512;
  auto found = plans.find(key);
  if (found == plans.end() && plans.size() >= kMaxPlans) plans.clear();
  if (found == plans.end())
    found = plans
                .emplace(key, dnnl::matmul(dnnl::matmul::primitive_desc(dnnl::matmul::desc(a, b, c),
                                                                        engine)))
                .first;
  return found->second;
}

/// The bf16 matmul of a_count and b_count (1 or count) dense matrices of bf16 bits, each in its
/// stored orientation, into c: (count, M, N) packed.
void bf16_matmul_dense(const GemmShape& s,
                       const uint16_t* a,
                       int64_t a_count,
                       const uint16_t* b,
                       int64_t b_count,
                       float* c,
                       int64_t count) {
  using dnnl::memory;
  const auto matrices = [](int64_t batch, int64_t rows, int64_t cols, bool transposed,
                           memory::data_type type) {
    return memory::desc(
        {batch, rows, cols}, type,
        transposed ? memory::dims{rows * cols, 1, rows} : memory::dims{rows * cols, cols, 1});
  };
  const memory::desc a_desc = matrices(a_count, s.M, s.K, s.transpose_a, memory::data_type::bf16);
  const memory::desc b_desc = matrices(b_count, s.K, s.N, s.transpose_b, memory::data_type::bf16);
  const memory::desc c_desc = matrices(count, s.M, s.N, false, memory::data_type::f32);
  try {
    static const dnnl::engine engine(dnnl::engine::kind::cpu, 0);
    dnnl::stream stream(engine);
    // oneDNN reads the operands only; its handles take non-const pointers.
    bf16_matmul(s, a_count, b_count, count, a_desc, b_desc, c_desc, engine)
        .execute(stream, {{DNNL_ARG_SRC, memory(a_desc, engine, const_cast<uint16_t*>(a))},
                          {DNNL_ARG_WEIGHTS, memory(b_desc, engine, const_cast<uint16_t*>(b))},
                          {DNNL_ARG_DST, memory(c_desc, engine, c)}});
    stream.wait();
  } catch (const dnnl::error& e) {
    throw Error(
        concat("[gemm] oneDNN bf16 matmul failed: ", e.what(), " (status ", int(e.status), ")"));
  }
}

/// Checks and the cases without products; true when there is a matmul to run.
bool bf16_gemm_has_products(const GemmShape& s, float* c, int64_t count) {
  check_bf16_gemm(s, count);
  LATTICE_CHECK(native_bf16_gemm_cpu(),
                "[gemm] this CPU has no native bf16 GEMM (AVX512-BF16 or AMX) for oneDNN to run");
  if (s.M == 0 || s.N == 0 || count == 0) return false;
  if (s.K == 0) {
    std::fill(c, c + count * s.M * s.N, 0.0f);
    return false;
  }
  return true;
}

/// One operand of bf16 bits, `count` matrices of rows x cols with leading dimension ld, as
/// dense matrices one after another: in place where they already are (or one matrix, when
/// `may_share` and every pointer is the same), else copied into `scratch`. Returns the first
/// matrix and the number of matrices, as narrow_operand counts them.
std::pair<const uint16_t*, int64_t> dense_bits(const uint16_t* const* x,
                                               int64_t count,
                                               int64_t rows,
                                               int64_t cols,
                                               int64_t ld,
                                               bool may_share,
                                               std::vector<uint16_t>& scratch) {
  const bool shared =
      may_share && std::all_of(x, x + count, [&](const uint16_t* p) { return p == x[0]; });
  const int64_t matrices = shared ? 1 : count, size = rows * cols;
  bool in_place = ld == cols || rows == 1;
  for (int64_t i = 1; i < matrices && in_place; ++i) in_place = x[i] == x[0] + i * size;
  if (in_place) return {x[0], matrices};
  if (scratch.size() < size_t(matrices * size)) scratch.resize(size_t(matrices * size));
  for (int64_t i = 0; i < matrices; ++i)
    for (int64_t r = 0; r < rows; ++r)
      std::copy_n(x[i] + r * ld, cols, scratch.data() + i * size + r * cols);
  return {scratch.data(), matrices};
}

}  // namespace

void gemm_bf16_batched_cpu(
    const GemmShape& s, const float* const* a, const float* const* b, float* c, int64_t count) {
  if (!bf16_gemm_has_products(s, c, count)) return;
  // Each operand narrowed in its stored orientation (no transposing copy): op(A) is the
  // (M, K) matrix with strides (K, 1), or (1, M) when A is stored transposed; so for B.
  thread_local std::vector<uint16_t> a_bf16, b_bf16;
  // oneDNN broadcasts one operand's single matrix over the batch, not both.
  const int64_t a_count = narrow_operand(a, count, s.transpose_a ? s.K : s.M,
                                         s.transpose_a ? s.M : s.K, s.lda, true, a_bf16);
  const int64_t b_count = narrow_operand(b, count, s.transpose_b ? s.N : s.K,
                                         s.transpose_b ? s.K : s.N, s.ldb, a_count > 1, b_bf16);
  bf16_matmul_dense(s, a_bf16.data(), a_count, b_bf16.data(), b_count, c, count);
}

void gemm_bf16_bits_batched_cpu(const GemmShape& s,
                                const uint16_t* const* a,
                                const uint16_t* const* b,
                                float* c,
                                int64_t count) {
  if (!bf16_gemm_has_products(s, c, count)) return;
  thread_local std::vector<uint16_t> a_scratch, b_scratch;
  const auto [a16, a_count] = dense_bits(a, count, s.transpose_a ? s.K : s.M,
                                         s.transpose_a ? s.M : s.K, s.lda, true, a_scratch);
  const auto [b16, b_count] = dense_bits(b, count, s.transpose_b ? s.N : s.K,
                                         s.transpose_b ? s.K : s.N, s.ldb, a_count > 1, b_scratch);
  bf16_matmul_dense(s, a16, a_count, b16, b_count, c, count);
}

void batched_gemm_f64_cpu(
    const double* a, const double* b, double* c, int64_t batches, int64_t M, int64_t N, int64_t K) {
  for (int64_t i = 0; i < batches; ++i)
    for (int64_t r = 0; r < M; ++r)
      for (int64_t col = 0; col < N; ++col) {
        double total = 0.0;
        for (int64_t k = 0; k < K; ++k)
          total += a[i * M * K + r * K + k] * b[i * K * N + k * N + col];
        c[i * M * N + r * N + col] = total;
      }
}

void gemm_reference_cpu(
    const GemmShape& s, float alpha, const float* a, const float* b, float beta, float* c) {
  check_gemm_shape(s);
  for (int64_t i = 0; i < s.M; ++i)
    for (int64_t j = 0; j < s.N; ++j) {
      double sum = 0.0;
      for (int64_t k = 0; k < s.K; ++k) {
        const float a_ik = s.transpose_a ? a[k * s.lda + i] : a[i * s.lda + k];
        const float b_kj = s.transpose_b ? b[j * s.ldb + k] : b[k * s.ldb + j];
        sum += double(a_ik) * double(b_kj);
      }
      float& out = c[i * s.ldc + j];
      // beta = 0 overwrites (NaN in C does not propagate), as BLAS specifies.
      out = float(double(alpha) * sum + (beta == 0.0f ? 0.0 : double(beta) * double(out)));
    }
}

}  // namespace lattice
