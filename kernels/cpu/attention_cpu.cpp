// CPU attention kernels: the causal mask (small, one thread), and fused attention, the
// reference its CUDA twin is tested against: each query row's scores, softmax and weighted sum
// in double, rows in parallel forward and heads in parallel backward, every sum in key order.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/attention.h"
#include "kernels/cpu/parallel.h"

namespace lattice {

void causal_mask_cpu(float* mask, int64_t queries, int64_t keys) {
  for (int64_t t = 0; t < queries; ++t)
    for (int64_t s = 0; s < keys; ++s)
      mask[t * keys + s] = s > t ? -std::numeric_limits<float>::infinity() : 0.0f;
}

namespace {

/// The keys query t sees: all of them, or with `causal` keys 0..t.
int64_t visible_keys(const AttentionShape& s, int64_t t) {
  return s.causal ? std::min(t + 1, s.keys) : s.keys;
}

template <typename T>
double dot_in_double(const T* a, const T* b, int64_t n) {
  double sum = 0.0;
  for (int64_t c = 0; c < n; ++c) sum += double(a[c]) * double(b[c]);
  return sum;
}

/// The work below which a fused attention call runs on the calling thread.
int64_t attention_work(const AttentionShape& s) {
  return s.heads * s.queries * s.keys * (s.dim + s.value_dim);
}

}  // namespace

template <typename T>
void attention_forward_cpu(
    const AttentionShape& s, const T* q, const T* k, const T* v, T* out, T* logsumexp) {
  const int64_t rows = s.heads * s.queries, d = s.dim, dv = s.value_dim;
#pragma omp parallel if (attention_work(s) > kParallelMin)
  {
    std::vector<double> scores(static_cast<size_t>(s.keys)), weighted(static_cast<size_t>(dv));
#pragma omp for
    for (int64_t row = 0; row < rows; ++row) {
      const int64_t h = row / s.queries, t = row % s.queries, visible = visible_keys(s, t);
      const T* q_t = q + row * d;
      const T* k_h = k + h * s.keys * d;
      const T* v_h = v + h * s.keys * dv;
      double max = -std::numeric_limits<double>::infinity();
      for (int64_t j = 0; j < visible; ++j) {
        scores[size_t(j)] = s.scale * dot_in_double(q_t, k_h + j * d, d);
        max = std::max(max, scores[size_t(j)]);
      }
      double total = 0.0;
      std::fill(weighted.begin(), weighted.end(), 0.0);
      for (int64_t j = 0; j < visible; ++j) {
        const double p = std::exp(scores[size_t(j)] - max);
        total += p;
        for (int64_t c = 0; c < dv; ++c) weighted[size_t(c)] += p * double(v_h[j * dv + c]);
      }
      for (int64_t c = 0; c < dv; ++c)
        out[row * dv + c] = visible > 0 ? T(weighted[size_t(c)] / total) : T(0);
      logsumexp[row] = visible > 0 ? T(max + std::log(total)) : -std::numeric_limits<T>::infinity();
    }
  }
}

template <typename T>
void attention_backward_cpu(const AttentionShape& s,
                            const T* q,
                            const T* k,
                            const T* v,
                            const T* out,
                            const T* logsumexp,
                            const T* grad_out,
                            T* dq,
                            T* dk,
                            T* dv) {
  const int64_t d = s.dim, dvw = s.value_dim;
#pragma omp parallel if (attention_work(s) > kParallelMin)
  {
    std::vector<double> dq_t(static_cast<size_t>(d)), dk_h(static_cast<size_t>(s.keys * d)),
        dv_h(static_cast<size_t>(s.keys * dvw));
#pragma omp for
    for (int64_t h = 0; h < s.heads; ++h) {
      const T* k_h = k + h * s.keys * d;
      const T* v_h = v + h * s.keys * dvw;
      std::fill(dk_h.begin(), dk_h.end(), 0.0);
      std::fill(dv_h.begin(), dv_h.end(), 0.0);
      for (int64_t t = 0; t < s.queries; ++t) {
        const int64_t row = h * s.queries + t;
        const T* q_t = q + row * d;
        const T* g_t = grad_out + row * dvw;
        // D_t = rowsum(dO * O): the softmax backward's sum of P * dP, from the output
        const double row_dot = dot_in_double(g_t, out + row * dvw, dvw);
        std::fill(dq_t.begin(), dq_t.end(), 0.0);
        for (int64_t j = 0, visible = visible_keys(s, t); j < visible; ++j) {
          const double p =
              std::exp(s.scale * dot_in_double(q_t, k_h + j * d, d) - double(logsumexp[row]));
          const double ds = p * (dot_in_double(g_t, v_h + j * dvw, dvw) - row_dot);
          for (int64_t c = 0; c < dvw; ++c) dv_h[size_t(j * dvw + c)] += p * double(g_t[c]);
          for (int64_t c = 0; c < d; ++c) {
            dq_t[size_t(c)] += ds * double(k_h[j * d + c]);
            dk_h[size_t(j * d + c)] += ds * double(q_t[c]);
          }
        }
        for (int64_t c = 0; c < d; ++c) dq[row * d + c] = T(s.scale * dq_t[size_t(c)]);
      }
      for (int64_t i = 0; i < s.keys * d; ++i)
        dk[h * s.keys * d + i] = T(s.scale * dk_h[size_t(i)]);
      for (int64_t i = 0; i < s.keys * dvw; ++i) dv[h * s.keys * dvw + i] = T(dv_h[size_t(i)]);
    }
  }
}

template void attention_forward_cpu(
    const AttentionShape&, const float*, const float*, const float*, float*, float*);
template void attention_forward_cpu(
    const AttentionShape&, const double*, const double*, const double*, double*, double*);
template void attention_backward_cpu(const AttentionShape&,
                                     const float*,
                                     const float*,
                                     const float*,
                                     const float*,
                                     const float*,
                                     const float*,
                                     float*,
                                     float*,
                                     float*);
template void attention_backward_cpu(const AttentionShape&,
                                     const double*,
                                     const double*,
                                     const double*,
                                     const double*,
                                     const double*,
                                     const double*,
                                     double*,
                                     double*,
                                     double*);

}  // namespace lattice
