// CUDA attention kernels: the causal mask, one thread per entry (bit for bit the CPU's), and
// fused attention in fp32 (FlashAttention-2 on the CUDA cores): a block keeps 16 query rows, 4
// per warp, and streams the keys through shared memory 32 at a time, one per lane, with an
// online softmax in base 2 (exp2f of scores pre-multiplied by log2 e). The backward recomputes
// the probabilities from the log-sum-exp: one kernel per 16 keys sums their dk and dv over the
// query tiles, another per 16 queries sums dq over the key tiles. No atomics, every sum in a
// fixed order: a run replays to the bit. Against the CPU twin (double), results agree within
// fp32 rounding of the sums, not bit for bit.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cuda/std/limits>
#include <type_traits>

#include "core/error.h"
#include "kernels/attention.h"
#include "kernels/cuda/runtime.h"
#include "kernels/device_memory.h"

namespace lattice {
namespace {

// mask: (queries, keys).
__global__ void causal_mask_kernel(float* mask, int64_t queries, int64_t keys) {
  const int64_t n = queries * keys;
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < n;
       k += int64_t(gridDim.x) * blockDim.x)
    mask[k] = k % keys > k / keys ? -::cuda::std::numeric_limits<float>::infinity() : 0.0f;
}

constexpr int kWarpSize = 32;
constexpr unsigned kFullMask = 0xffffffffu;
constexpr int kWarps = 4;
constexpr int kAttentionThreads = kWarps * kWarpSize;
// Query rows (forward, dq) or keys (dk, dv) each warp owns, and so each block.
constexpr int kRowsPerWarp = 4;
constexpr int kBlockRows = kWarps * kRowsPerWarp;
// Keys (forward, dq) or queries (dk, dv) streamed per step: one per lane.
constexpr int kTile = kWarpSize;
constexpr float kLog2e = 1.44269504088896340736f;
constexpr float kLn2 = 0.69314718055994530942f;
constexpr float kInfinity = ::cuda::std::numeric_limits<float>::infinity();

struct FusedArgs {
  int64_t queries, keys;
  int dim, value_dim;
  bool causal;
  float scale;       // scores = scale * q k^T
  float scale_log2;  // scale * log2(e): scores in base-2 units, for exp2f
};

/// A row stride of `width` floats that is odd, so 32 lanes reading column c of 32 different
/// rows hit 32 different banks.
__host__ __device__ int odd_stride(int width) {
  return width | 1;
}

__device__ float warp_max(float x) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2)
    x = fmaxf(x, __shfl_xor_sync(kFullMask, x, offset));
  return x;
}

/// The butterfly leaves every lane the same bits: each step adds the same two operands.
__device__ float warp_sum(float x) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2)
    x += __shfl_xor_sync(kFullMask, x, offset);
  return x;
}

/// dst[r * stride + c] = src[(first + r) * width + c] for r < rows, c < width, and 0 for rows at
/// or past `limit`. The whole block loads, consecutive threads along a row.
__device__ void load_rows(
    float* dst, int stride, const float* src, int64_t first, int rows, int64_t limit, int width) {
  for (int i = threadIdx.x; i < rows * width; i += blockDim.x) {
    const int r = i / width, c = i - r * width;
    dst[r * stride + c] = first + r < limit ? src[(first + r) * width + c] : 0.0f;
  }
}

/// Whether query t sees key j (both may lie past the end of their tile's data).
__device__ bool sees(const FusedArgs& a, int64_t t, int64_t j) {
  return t < a.queries && j < a.keys && (!a.causal || j <= t);
}

/// The keys a block of query rows first_row.. (clipped to the queries) needs: with the causal
/// mask, none past its last row.
__device__ int64_t key_end_for_rows(const FusedArgs& a, int64_t first_row) {
  if (!a.causal) return a.keys;
  const int64_t row_end = first_row + kBlockRows < a.queries ? first_row + kBlockRows : a.queries;
  return row_end < a.keys ? row_end : a.keys;
}

// Shared-memory floats of each kernel, for the launch and for the kernel's carving.
size_t forward_shared_floats(int d, int dv) {
  return size_t(kBlockRows * d + kTile * odd_stride(d) + kTile * dv);
}
size_t backward_shared_floats(int d, int dv) {
  return size_t(kBlockRows * d + kBlockRows * dv + kTile * odd_stride(d) + kTile * odd_stride(dv) +
                2 * kTile);
}

// q: (heads, queries, d), k: (heads, keys, d), v: (heads, keys, dv), out: (heads, queries, dv),
// logsumexp: (heads, queries). One block per 16 query rows of a head; warp w owns rows
// 4w..4w+3, lane l key l of each tile and output columns l, l + 32, ... (kChunks of them).
template <int kChunks>
__global__ void __launch_bounds__(kAttentionThreads) attention_forward_kernel(
    FusedArgs a, const float* q, const float* k, const float* v, float* out, float* logsumexp) {
  extern __shared__ float shared[];
  const int d = a.dim, dv = a.value_dim, k_stride = odd_stride(d);
  float* q_s = shared;                  // (16, d): read by all lanes at once
  float* k_s = q_s + kBlockRows * d;    // (32, k_stride): lane l reads row l
  float* v_s = k_s + kTile * k_stride;  // (32, dv): lanes read consecutive columns
  const int64_t tiles = (a.queries + kBlockRows - 1) / kBlockRows;
  const int64_t head = int64_t(blockIdx.x) / tiles;
  const int64_t first_row = (int64_t(blockIdx.x) % tiles) * kBlockRows;
  const int warp = int(threadIdx.x) / kWarpSize, lane = int(threadIdx.x) % kWarpSize;
  const float* k_h = k + head * a.keys * d;
  const float* v_h = v + head * a.keys * dv;
  load_rows(q_s, d, q + head * a.queries * d, first_row, kBlockRows, a.queries, d);
  const float* q_w = q_s + warp * kRowsPerWarp * d;

  // Per row: the running maximum m (base-2 units), the sum l of exp2(score - m), and the
  // unnormalised output o, all rescaled when m grows.
  float m[kRowsPerWarp], l[kRowsPerWarp], o[kRowsPerWarp][kChunks];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    m[r] = -kInfinity;
    l[r] = 0.0f;
#pragma unroll
    for (int i = 0; i < kChunks; ++i) o[r][i] = 0.0f;
  }
  const int64_t key_end = key_end_for_rows(a, first_row);
  for (int64_t key0 = 0; key0 < key_end; key0 += kTile) {
    __syncthreads();  // the last tile's readers are done
    load_rows(k_s, k_stride, k_h, key0, kTile, a.keys, d);
    load_rows(v_s, dv, v_h, key0, kTile, a.keys, dv);
    __syncthreads();
    float p[kRowsPerWarp] = {};
    const float* k_row = k_s + lane * k_stride;
#pragma unroll 4
    for (int c = 0; c < d; ++c) {
      const float kc = k_row[c];
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) p[r] = fmaf(q_w[r * d + c], kc, p[r]);
    }
    const int64_t key = key0 + lane;
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const int64_t t = first_row + warp * kRowsPerWarp + r;
      const float score = sees(a, t, key) ? p[r] * a.scale_log2 : -kInfinity;
      const float m_new = fmaxf(m[r], warp_max(score));
      // Until a row sees a key its maximum stays -inf: keep its zeros (no -inf minus -inf).
      const bool none = m_new == -kInfinity;
      const float alpha = none ? 1.0f : exp2f(m[r] - m_new);
      p[r] = none ? 0.0f : exp2f(score - m_new);
      l[r] = l[r] * alpha + warp_sum(p[r]);
      m[r] = m_new;
#pragma unroll
      for (int i = 0; i < kChunks; ++i) o[r][i] *= alpha;
    }
#pragma unroll 4
    for (int j = 0; j < kTile; ++j) {
      float p_j[kRowsPerWarp];
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) p_j[r] = __shfl_sync(kFullMask, p[r], j);
#pragma unroll
      for (int i = 0; i < kChunks; ++i) {
        const int col = lane + i * kWarpSize;
        if (col >= dv) continue;
        const float vj = v_s[j * dv + col];
#pragma unroll
        for (int r = 0; r < kRowsPerWarp; ++r) o[r][i] = fmaf(p_j[r], vj, o[r][i]);
      }
    }
  }
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int64_t t = first_row + warp * kRowsPerWarp + r;
    if (t >= a.queries) continue;
    const int64_t row = head * a.queries + t;
#pragma unroll
    for (int i = 0; i < kChunks; ++i) {
      const int col = lane + i * kWarpSize;
      if (col < dv) out[row * dv + col] = l[r] > 0.0f ? o[r][i] / l[r] : 0.0f;
    }
    if (lane == 0) logsumexp[row] = l[r] > 0.0f ? (m[r] + log2f(l[r])) * kLn2 : -kInfinity;
  }
}

// row_dot (rows) = rowsum(grad_out * out) over (rows, width): D of the FlashAttention-2
// backward. One warp per row.
__global__ void attention_row_dot_kernel(
    const float* out, const float* grad_out, float* row_dot, int64_t rows, int width) {
  const int lane = int(threadIdx.x) % kWarpSize;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x / kWarpSize);
  for (int64_t row = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) / kWarpSize; row < rows;
       row += warps) {
    float sum = 0.0f;
    for (int c = lane; c < width; c += kWarpSize)
      sum = fmaf(grad_out[row * width + c], out[row * width + c], sum);
    sum = warp_sum(sum);
    if (lane == 0) row_dot[row] = sum;
  }
}

// dk, dv for 16 keys of a head per block: warp w owns keys 4w..4w+3 and their dk, dv columns
// l, l + 32, ... in lane l; the queries stream through shared memory 32 at a time, lane l
// computing P and dS for query l of the tile.
template <int kChunks>
__global__ void __launch_bounds__(kAttentionThreads)
    attention_backward_keys_kernel(FusedArgs a,
                                   const float* q,
                                   const float* k,
                                   const float* v,
                                   const float* grad_out,
                                   const float* logsumexp,
                                   const float* row_dot,
                                   float* dk,
                                   float* dv) {
  extern __shared__ float shared[];
  const int d = a.dim, dvw = a.value_dim, q_stride = odd_stride(d), g_stride = odd_stride(dvw);
  float* k_s = shared;                    // (16, d): read by all lanes at once
  float* v_s = k_s + kBlockRows * d;      // (16, dv)
  float* q_s = v_s + kBlockRows * dvw;    // (32, q_stride): lane l reads row l
  float* g_s = q_s + kTile * q_stride;    // (32, g_stride)
  float* lse_s = g_s + kTile * g_stride;  // (32) in base-2 units
  float* d_s = lse_s + kTile;             // (32)
  const int64_t tiles = (a.keys + kBlockRows - 1) / kBlockRows;
  const int64_t head = int64_t(blockIdx.x) / tiles;
  const int64_t first_key = (int64_t(blockIdx.x) % tiles) * kBlockRows;
  const int warp = int(threadIdx.x) / kWarpSize, lane = int(threadIdx.x) % kWarpSize;
  const float* q_h = q + head * a.queries * d;
  const float* g_h = grad_out + head * a.queries * dvw;
  load_rows(k_s, d, k + head * a.keys * d, first_key, kBlockRows, a.keys, d);
  load_rows(v_s, dvw, v + head * a.keys * dvw, first_key, kBlockRows, a.keys, dvw);
  const float* k_w = k_s + warp * kRowsPerWarp * d;
  const float* v_w = v_s + warp * kRowsPerWarp * dvw;

  float dk_acc[kRowsPerWarp][kChunks] = {}, dv_acc[kRowsPerWarp][kChunks] = {};
  // With the causal mask, queries before the first key see none of the block's keys.
  const int64_t query_begin = a.causal ? first_key / kTile * kTile : 0;
  for (int64_t query0 = query_begin; query0 < a.queries; query0 += kTile) {
    __syncthreads();  // the last tile's readers are done
    load_rows(q_s, q_stride, q_h, query0, kTile, a.queries, d);
    load_rows(g_s, g_stride, g_h, query0, kTile, a.queries, dvw);
    if (threadIdx.x < kTile) {
      const int64_t t = query0 + threadIdx.x;
      const bool inside = t < a.queries;
      lse_s[threadIdx.x] = inside ? logsumexp[head * a.queries + t] * kLog2e : 0.0f;
      d_s[threadIdx.x] = inside ? row_dot[head * a.queries + t] : 0.0f;
    }
    __syncthreads();
    // Lane l: query0 + l against the warp's keys: p = P, ds = dS.
    float p[kRowsPerWarp] = {}, ds[kRowsPerWarp] = {};
    const float* q_row = q_s + lane * q_stride;
#pragma unroll 4
    for (int c = 0; c < d; ++c) {
      const float qc = q_row[c];
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) p[r] = fmaf(qc, k_w[r * d + c], p[r]);
    }
    const float* g_row = g_s + lane * g_stride;
#pragma unroll 4
    for (int c = 0; c < dvw; ++c) {
      const float gc = g_row[c];
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) ds[r] = fmaf(gc, v_w[r * dvw + c], ds[r]);
    }
    const int64_t t = query0 + lane;
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const int64_t key = first_key + warp * kRowsPerWarp + r;
      p[r] = sees(a, t, key) ? exp2f(p[r] * a.scale_log2 - lse_s[lane]) : 0.0f;
      ds[r] = p[r] * (ds[r] - d_s[lane]);
    }
#pragma unroll 4
    for (int j = 0; j < kTile; ++j) {
      float p_j[kRowsPerWarp], ds_j[kRowsPerWarp];
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) {
        p_j[r] = __shfl_sync(kFullMask, p[r], j);
        ds_j[r] = __shfl_sync(kFullMask, ds[r], j);
      }
#pragma unroll
      for (int i = 0; i < kChunks; ++i) {
        const int col = lane + i * kWarpSize;
        if (col < dvw) {
          const float g = g_s[j * g_stride + col];
#pragma unroll
          for (int r = 0; r < kRowsPerWarp; ++r) dv_acc[r][i] = fmaf(p_j[r], g, dv_acc[r][i]);
        }
        if (col < d) {
          const float qv = q_s[j * q_stride + col];
#pragma unroll
          for (int r = 0; r < kRowsPerWarp; ++r) dk_acc[r][i] = fmaf(ds_j[r], qv, dk_acc[r][i]);
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int64_t key = first_key + warp * kRowsPerWarp + r;
    if (key >= a.keys) continue;
    const int64_t row = head * a.keys + key;
#pragma unroll
    for (int i = 0; i < kChunks; ++i) {
      const int col = lane + i * kWarpSize;
      if (col < d) dk[row * d + col] = dk_acc[r][i] * a.scale;
      if (col < dvw) dv[row * dvw + col] = dv_acc[r][i];
    }
  }
}

// dq for 16 query rows of a head per block: warp w owns rows 4w..4w+3 and their dq columns
// l, l + 32, ... in lane l; the keys stream through shared memory 32 at a time, lane l
// computing P and dS for key l of the tile.
template <int kChunks>
__global__ void __launch_bounds__(kAttentionThreads)
    attention_backward_queries_kernel(FusedArgs a,
                                      const float* q,
                                      const float* k,
                                      const float* v,
                                      const float* grad_out,
                                      const float* logsumexp,
                                      const float* row_dot,
                                      float* dq) {
  extern __shared__ float shared[];
  const int d = a.dim, dvw = a.value_dim, k_stride = odd_stride(d), v_stride = odd_stride(dvw);
  float* q_s = shared;                  // (16, d): read by all lanes at once
  float* g_s = q_s + kBlockRows * d;    // (16, dv)
  float* k_s = g_s + kBlockRows * dvw;  // (32, k_stride): lane l reads row l
  float* v_s = k_s + kTile * k_stride;  // (32, v_stride)
  const int64_t tiles = (a.queries + kBlockRows - 1) / kBlockRows;
  const int64_t head = int64_t(blockIdx.x) / tiles;
  const int64_t first_row = (int64_t(blockIdx.x) % tiles) * kBlockRows;
  const int warp = int(threadIdx.x) / kWarpSize, lane = int(threadIdx.x) % kWarpSize;
  const float* k_h = k + head * a.keys * d;
  const float* v_h = v + head * a.keys * dvw;
  load_rows(q_s, d, q + head * a.queries * d, first_row, kBlockRows, a.queries, d);
  load_rows(g_s, dvw, grad_out + head * a.queries * dvw, first_row, kBlockRows, a.queries, dvw);
  const float* q_w = q_s + warp * kRowsPerWarp * d;
  const float* g_w = g_s + warp * kRowsPerWarp * dvw;
  float lse[kRowsPerWarp], row_d[kRowsPerWarp];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int64_t t = first_row + warp * kRowsPerWarp + r;
    const bool inside = t < a.queries;
    lse[r] = inside ? logsumexp[head * a.queries + t] * kLog2e : 0.0f;
    row_d[r] = inside ? row_dot[head * a.queries + t] : 0.0f;
  }

  float dq_acc[kRowsPerWarp][kChunks] = {};
  const int64_t key_end = key_end_for_rows(a, first_row);
  for (int64_t key0 = 0; key0 < key_end; key0 += kTile) {
    __syncthreads();  // the last tile's readers are done
    load_rows(k_s, k_stride, k_h, key0, kTile, a.keys, d);
    load_rows(v_s, v_stride, v_h, key0, kTile, a.keys, dvw);
    __syncthreads();
    // Lane l: key key0 + l against the warp's rows: p = P, ds = dS.
    float p[kRowsPerWarp] = {}, ds[kRowsPerWarp] = {};
    const float* k_row = k_s + lane * k_stride;
#pragma unroll 4
    for (int c = 0; c < d; ++c) {
      const float kc = k_row[c];
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) p[r] = fmaf(q_w[r * d + c], kc, p[r]);
    }
    const float* v_row = v_s + lane * v_stride;
#pragma unroll 4
    for (int c = 0; c < dvw; ++c) {
      const float vc = v_row[c];
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) ds[r] = fmaf(g_w[r * dvw + c], vc, ds[r]);
    }
    const int64_t key = key0 + lane;
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const int64_t t = first_row + warp * kRowsPerWarp + r;
      p[r] = sees(a, t, key) ? exp2f(p[r] * a.scale_log2 - lse[r]) : 0.0f;
      ds[r] = p[r] * (ds[r] - row_d[r]);
    }
#pragma unroll 4
    for (int j = 0; j < kTile; ++j) {
      float ds_j[kRowsPerWarp];
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) ds_j[r] = __shfl_sync(kFullMask, ds[r], j);
#pragma unroll
      for (int i = 0; i < kChunks; ++i) {
        const int col = lane + i * kWarpSize;
        if (col >= d) continue;
        const float kv = k_s[j * k_stride + col];
#pragma unroll
        for (int r = 0; r < kRowsPerWarp; ++r) dq_acc[r][i] = fmaf(ds_j[r], kv, dq_acc[r][i]);
      }
    }
  }
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const int64_t t = first_row + warp * kRowsPerWarp + r;
    if (t >= a.queries) continue;
#pragma unroll
    for (int i = 0; i < kChunks; ++i) {
      const int col = lane + i * kWarpSize;
      if (col < d) dq[(head * a.queries + t) * d + col] = dq_acc[r][i] * a.scale;
    }
  }
}

/// Checks the shape against the kernels' limits and packs their arguments.
FusedArgs fused_args(const AttentionShape& s, const char* op) {
  LATTICE_CHECK(s.dim >= 1 && s.dim <= kFusedAttentionMaxHeadDim && s.value_dim >= 1 &&
                    s.value_dim <= kFusedAttentionMaxHeadDim,
                "[", op, "] head dims ", s.dim, " (q, k) and ", s.value_dim, " (v) must lie in 1..",
                kFusedAttentionMaxHeadDim);
  LATTICE_CHECK(!s.causal || s.queries == s.keys, "[", op, "] the causal mask needs as many ",
                "queries as keys, got ", s.queries, " and ", s.keys);
  return FusedArgs{s.queries,
                   s.keys,
                   int(s.dim),
                   int(s.value_dim),
                   s.causal,
                   float(s.scale),
                   float(s.scale * 1.44269504088896340736)};
}

/// Blocks of `rows_per_head` rows in 16s over every head, as one grid dimension.
unsigned blocks_for_rows(int64_t heads, int64_t rows_per_head, const char* op) {
  const int64_t blocks = heads * ((rows_per_head + kBlockRows - 1) / kBlockRows);
  LATTICE_CHECK(blocks < (int64_t(1) << 31), "[", op, "] ", heads, " heads of ", rows_per_head,
                " rows need more than 2^31 blocks");
  return unsigned(blocks);
}

/// f(std::integral_constant<int, chunks>{}) for the 32-column chunks that cover the wider of
/// the head dims (1..4).
template <typename F>
void with_chunks(const FusedArgs& a, F&& f) {
  switch ((std::max(a.dim, a.value_dim) + kWarpSize - 1) / kWarpSize) {
    case 1:
      return f(std::integral_constant<int, 1>{});
    case 2:
      return f(std::integral_constant<int, 2>{});
    case 3:
      return f(std::integral_constant<int, 3>{});
    default:
      return f(std::integral_constant<int, 4>{});
  }
}

/// Launches `kernel` on `blocks` blocks with `floats` floats of dynamic shared memory, raising
/// the kernel's limit past the default 48 KiB where it needs more (at head dims near 128).
template <typename... Params, typename... Args>
void launch(
    void (*kernel)(Params...), unsigned blocks, size_t floats, const char* op, Args&&... args) {
  const size_t bytes = floats * sizeof(float);
  if (bytes > 48 * 1024)
    LATTICE_CUDA_CHECK(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)), op);
  kernel<<<blocks, kAttentionThreads, bytes, cuda::stream()>>>(std::forward<Args>(args)...);
  LATTICE_CUDA_LAUNCHED(op);
}

/// Device scratch from the caching allocator, returned when it goes out of scope.
struct AttentionScratch {
  float* data;
  explicit AttentionScratch(int64_t floats)
      : data(static_cast<float*>(cuda_allocate(floats * int64_t(sizeof(float))))) {}
  ~AttentionScratch() {
    cuda_free(data);
  }
  AttentionScratch(const AttentionScratch&) = delete;
  AttentionScratch& operator=(const AttentionScratch&) = delete;
};

}  // namespace

void causal_mask_cuda(float* mask, int64_t queries, int64_t keys) {
  if (queries * keys == 0) return;
  causal_mask_kernel<<<cuda::grid_for(queries * keys), cuda::kThreads, 0, cuda::stream()>>>(
      mask, queries, keys);
  LATTICE_CUDA_LAUNCHED("causal_mask_cuda");
}

void attention_forward_cuda(const AttentionShape& s,
                            const float* q,
                            const float* k,
                            const float* v,
                            float* out,
                            float* logsumexp) {
  const char* op = "attention_forward_cuda";
  const FusedArgs a = fused_args(s, op);
  if (s.heads * s.queries == 0) return;
  const unsigned blocks = blocks_for_rows(s.heads, s.queries, op);
  with_chunks(a, [&](auto chunks) {
    launch(attention_forward_kernel<decltype(chunks)::value>, blocks,
           forward_shared_floats(a.dim, a.value_dim), op, a, q, k, v, out, logsumexp);
  });
}

void attention_backward_cuda(const AttentionShape& s,
                             const float* q,
                             const float* k,
                             const float* v,
                             const float* out,
                             const float* logsumexp,
                             const float* grad_out,
                             float* dq,
                             float* dk,
                             float* dv) {
  const char* op = "attention_backward_cuda";
  const FusedArgs a = fused_args(s, op);
  const int64_t rows = s.heads * s.queries;
  const AttentionScratch row_dot(rows);
  if (rows > 0) {
    const int64_t warps_per_block = kAttentionThreads / kWarpSize;
    attention_row_dot_kernel<<<cuda::grid_for(rows, int(warps_per_block)), kAttentionThreads, 0,
                               cuda::stream()>>>(out, grad_out, row_dot.data, rows, a.value_dim);
    LATTICE_CUDA_LAUNCHED(op);
  }
  const size_t floats = backward_shared_floats(a.dim, a.value_dim);
  with_chunks(a, [&](auto chunks) {
    constexpr int kChunks = decltype(chunks)::value;
    if (s.heads * s.keys > 0)
      launch(attention_backward_keys_kernel<kChunks>, blocks_for_rows(s.heads, s.keys, op), floats,
             op, a, q, k, v, grad_out, logsumexp, static_cast<const float*>(row_dot.data), dk, dv);
    if (rows > 0)
      launch(attention_backward_queries_kernel<kChunks>, blocks_for_rows(s.heads, s.queries, op),
             floats, op, a, q, k, v, grad_out, logsumexp, static_cast<const float*>(row_dot.data),
             dq);
  });
}

}  // namespace lattice
