// Fused attention (kernels/attention.h, ops/attention_ops.h): the CPU twin against the composed
// scaled_dot_product_attention over a sweep of shapes (float64 values and gradients to
// rounding, float32 within 1e-5 normwise of the float64 composite, with the same bits on any
// thread count), its edge cases (no keys, NaN) and errors,
// which calls of nn::scaled_dot_product_attention and MultiHeadAttention take it, and on a GPU
// the CUDA kernels against the CPU twin within the tolerances stated at each check, replaying
// to the bit. Without a GPU the CUDA cases skip; the kernels must then throw lattice::Error.
#include <doctest/doctest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "autograd/autograd.h"
#include "core/error.h"
#include "cuda_support.h"
#include "kernels/attention.h"
#include "kernels/device_memory.h"
#include "nn/attention.h"
#include "nn/functional.h"
#include "ops/attention_ops.h"
#include "ops/ops.h"
#include "tensor/precision_stack.h"
#include "tensor/random.h"
#include "tensor/tape.h"

using namespace lattice;
using lattice::test::DeviceArray;

namespace {

/// One attention call: q (batch, heads, queries, dim), k (.., keys, dim), v (.., keys,
/// value_dim), inputs drawn from U(-range, range).
struct Case {
  int64_t batch, heads, queries, keys, dim, value_dim;
  bool causal;
  double scale, range;
};

std::string describe(const Case& c) {
  std::ostringstream text;
  text << "B=" << c.batch << " H=" << c.heads << " T=" << c.queries << " S=" << c.keys
       << " d=" << c.dim << " dv=" << c.value_dim << (c.causal ? " causal" : "")
       << " scale=" << c.scale << " range=" << c.range;
  return text.str();
}

// The CPU sweep: T != S, one query, odd T, d = 1, d = 64, T = S = 1, dv != d, and scores large
// enough (|s| up to ~20) that each row's maximum moves between keys.
constexpr Case kCpuCases[] = {
    {2, 3, 5, 7, 4, 6, false, 0.5, 1.0},
    {1, 2, 1, 9, 8, 8, false, 0.35, 1.0},
    {1, 1, 37, 37, 16, 16, true, 0.25, 1.0},
    {2, 1, 6, 6, 1, 3, true, 1.0, 1.0},
    {1, 2, 20, 33, 64, 64, false, 0.125, 1.0},
    {1, 1, 1, 1, 3, 2, true, 0.5, 1.0},
    {1, 2, 9, 9, 32, 48, true, 0.2, 1.0},
    {1, 1, 40, 70, 24, 24, false, 1.0, 2.0},
    // float32 runs tiles of 32 queries and 128 keys: several of each, ragged at both ends, head
    // dims off the 16-lane vectors, causal rows whose keys span two tiles, and large scores whose
    // row maximum moves from one key tile to the next (the online softmax's rescaling).
    {1, 2, 130, 300, 33, 17, false, 0.15, 1.0},
    {2, 1, 200, 200, 64, 64, true, 0.125, 1.0},
    {1, 1, 150, 150, 16, 16, true, 1.0, 2.0},
    {1, 1, 3, 260, 1, 1, false, 2.0, 2.0},
};

struct Inputs {
  Tensor q, k, v;
};

/// The case's q, k, v as float32 values, converted to `dtype` (so both dtypes hold the same
/// numbers), each requiring a gradient.
Inputs make_inputs(const Case& c, DType dtype, uint64_t seed) {
  const auto draw = [&](const Shape& shape, uint64_t offset) {
    const Tensor t = uniform(shape, -c.range, c.range, RandomStream{.seed = seed + offset});
    return set_requires_grad(t.to(dtype));
  };
  return {draw({c.batch, c.heads, c.queries, c.dim}, 0), draw({c.batch, c.heads, c.keys, c.dim}, 1),
          draw({c.batch, c.heads, c.keys, c.value_dim}, 2)};
}

/// The output of `attention` and the gradients of sum(output * weights) with respect to q, k,
/// v, all on the host as double.
struct Results {
  std::vector<double> output, dq, dk, dv;
};

/// Any tensor's values on the host as double.
std::vector<double> host_doubles(const Tensor& t) {
  return t.to(Device::cpu).to(DType::float64).contiguous().to_vector<double>();
}

template <typename Attention>
Results run(const Inputs& in, Attention&& attention) {
  const Tensor out = attention(in.q, in.k, in.v);
  const Tensor weights =
      uniform(out.shape(), 0.5, 1.5, RandomStream{.seed = 7}).to(out.dtype()).to(out.device());
  backward(sum(mul(out, weights)));
  Results r{host_doubles(out), host_doubles(grad(in.q)), host_doubles(grad(in.k)),
            host_doubles(grad(in.v))};
  for (const Tensor* t : {&in.q, &in.k, &in.v}) zero_grad(*t);
  return r;
}

/// max |actual - expected| / max(1, max |expected|): a normwise error, since cancellation leaves
/// small entries with the absolute error of the large ones.
double normwise_error(const std::vector<double>& actual, const std::vector<double>& expected) {
  REQUIRE(actual.size() == expected.size());
  double largest = 1.0, worst = 0.0;
  for (double e : expected) largest = std::max(largest, std::fabs(e));
  for (size_t i = 0; i < actual.size(); ++i)
    worst = std::max(worst, std::isnan(actual[i]) ? INFINITY : std::fabs(actual[i] - expected[i]));
  return worst / largest;
}

void check_results(const Results& actual, const Results& expected, double tolerance) {
  CAPTURE(tolerance);
  CHECK(normwise_error(actual.output, expected.output) <= tolerance);
  CHECK(normwise_error(actual.dq, expected.dq) <= tolerance);
  CHECK(normwise_error(actual.dk, expected.dk) <= tolerance);
  CHECK(normwise_error(actual.dv, expected.dv) <= tolerance);
}

Results composed(const Inputs& in, const Case& c) {
  return run(in, [&](const Tensor& q, const Tensor& k, const Tensor& v) {
    return nn::scaled_dot_product_attention(q, k, v, c.causal, c.scale).output;
  });
}

Results fused(const Inputs& in, const Case& c) {
  return run(in, [&](const Tensor& q, const Tensor& k, const Tensor& v) {
    return fused_attention(q, k, v, c.causal, c.scale);
  });
}

}  // namespace

TEST_CASE("fused_attention matches the composed attention in float64, values and gradients") {
  for (const Case& c : kCpuCases) {
    INFO(describe(c));
    const Inputs in = make_inputs(c, DType::float64, 11);
    // Both are exact to double rounding: a few hundred ulps of double at most.
    check_results(fused(in, c), composed(in, c), 1e-12);
  }
}

TEST_CASE("fused_attention in float32 lies within 1e-5 of the float64 composite") {
  // float32 sums in fp32 over at most 300 keys or 200 queries, as the composed ops do, and its
  // backward reads the log-sum-exp rounded to fp32 (|lse| <= ~25 here: 2e-6 relative on each
  // probability), so 1e-5 normwise holds with room, while a wrong index, a missed key or a
  // tile's missed rescaling is off by O(1).
  for (const Case& c : kCpuCases) {
    INFO(describe(c));
    const Results expected = composed(make_inputs(c, DType::float64, 11), c);
    const Inputs in = make_inputs(c, DType::float32, 11);
    check_results(fused(in, c), expected, 1e-5);
  }
}

TEST_CASE("fused_attention in float32 gives the same bits on one, two or three threads") {
  // Each head is one thread's, its tiles in a fixed order: the thread count only changes which
  // thread takes a head. Six heads, causal, several query and key tiles.
  const Case c{2, 3, 150, 150, 40, 24, true, 0.15, 1.0};
  const int threads = omp_get_max_threads();
  std::vector<Results> runs;
  for (const int count : {1, 2, 3}) {
    omp_set_num_threads(count);
    runs.push_back(fused(make_inputs(c, DType::float32, 17), c));
  }
  omp_set_num_threads(threads);
  for (size_t i = 1; i < runs.size(); ++i) {
    CAPTURE(i);
    CHECK(runs[i].output == runs[0].output);
    CHECK(runs[i].dq == runs[0].dq);
    CHECK(runs[i].dk == runs[0].dk);
    CHECK(runs[i].dv == runs[0].dv);
  }
}

TEST_CASE("the CPU twin gives a row that sees no key zeros, a -inf log-sum-exp, no gradient") {
  // Keys == 0: the only way a row sees nothing (the causal mask leaves every row key 0).
  const AttentionShape s{2, 3, 0, 4, 2, false, 0.5};
  const std::vector<float> q(2 * 3 * 4, 0.5f), grad_out(2 * 3 * 2, 1.0f);
  std::vector<float> out(2 * 3 * 2, NAN), logsumexp(2 * 3, NAN), dq(q.size(), NAN);
  attention_forward_cpu<float>(s, q.data(), nullptr, nullptr, out.data(), logsumexp.data());
  for (float o : out) CHECK(o == 0.0f);
  for (float l : logsumexp) CHECK(l == -std::numeric_limits<float>::infinity());
  attention_backward_cpu<float>(s, q.data(), nullptr, nullptr, out.data(), logsumexp.data(),
                                grad_out.data(), dq.data(), nullptr, nullptr);
  for (float g : dq) CHECK(g == 0.0f);
}

TEST_CASE("a NaN query gives its own row NaN in fused_attention, as in the composed ops") {
  // Large scores too (range 30: |s| up to ~10^4): the other rows stay finite.
  for (const DType dtype : {DType::float32, DType::float64}) {
    INFO(dtype_name(dtype));
    const Case c{1, 2, 5, 150, 8, 3, false, 1.0, 30.0};
    const Inputs in = make_inputs(c, dtype, 13);
    std::vector<double> q = host_doubles(in.q);
    q[size_t((1 * 5 + 2) * 8 + 3)] = std::nan("");  // head 1, query 2
    const Tensor nan_q = from_vector<double>(q, in.q.shape()).to(dtype);
    const std::vector<double> fused_out =
        host_doubles(fused_attention(nan_q, in.k, in.v, false, 1.0));
    const std::vector<double> composed_out =
        host_doubles(nn::scaled_dot_product_attention(nan_q, in.k, in.v, false, 1.0).output);
    for (int64_t row = 0; row < 2 * 5; ++row)
      for (int64_t j = 0; j < 3; ++j) {
        CAPTURE(row);
        const size_t i = size_t(row * 3 + j);
        CHECK(std::isnan(fused_out[i]) == (row == 7));
        CHECK(std::isnan(composed_out[i]) == (row == 7));
      }
  }
  // The kernel's log-sum-exp of that row is NaN too (a row that sees no key gets -inf).
  const AttentionShape s{1, 3, 2, 2, 1, false, 1.0};  // 3 queries, 2 keys, d = 2, dv = 1
  const std::vector<float> q{1.0f, 2.0f, 0.5f, 0.25f, NAN, 1.0f}, k{1.0f, -1.0f, 0.5f, 2.0f},
      v{3.0f, 4.0f};
  std::vector<float> out(3), logsumexp(3);
  attention_forward_cpu<float>(s, q.data(), k.data(), v.data(), out.data(), logsumexp.data());
  CHECK(std::isnan(out[2]));
  CHECK(std::isnan(logsumexp[2]));
  CHECK(std::isfinite(logsumexp[0]));
}

TEST_CASE("fused_attention refuses shapes, dtypes and causal masks that do not fit") {
  const Tensor q = zeros({1, 2, 3, 4}), k = zeros({1, 2, 5, 4}), v = zeros({1, 2, 5, 6});
  CHECK_THROWS_WITH_AS(fused_attention(q, k, zeros({1, 2, 4, 6}), false, 1.0),
                       doctest::Contains("[fused_attention] q (1, 2, 3, 4)"), Error);
  CHECK_THROWS_WITH_AS(fused_attention(q, zeros({1, 2, 5, 3}), v, false, 1.0),
                       doctest::Contains("do not fit"), Error);
  CHECK_THROWS_WITH_AS(fused_attention(q, k, v.to(DType::float64), false, 1.0),
                       doctest::Contains("share one float dtype"), Error);
  CHECK_THROWS_WITH_AS(fused_attention(q, k, v, true, 1.0),
                       doctest::Contains("as many queries as keys, got 3 and 5"), Error);
  CHECK(fused_attention(q, k, v, false, 1.0).shape() == Shape{1, 2, 3, 6});
}

/// Which calls of scaled_dot_product_attention on `device` take fused_attention: an output-only
/// caller with no mask, no dropout and a stack that rounds nothing; every other call composes
/// the ops. The fused output (per-head scale included) agrees with the composed CPU one.
void check_fused_dispatch(Device device) {
  const Case c{2, 2, 8, 8, 16, 16, true, 0.25, 1.0};
  const Inputs host = make_inputs(c, DType::float32, 5);
  const Tensor q = host.q.to(device), k = host.k.to(device), v = host.v.to(device);
  const auto attend = [&](const nn::AttentionMasking& masking, nn::AttentionOutputs outputs) {
    return nn::scaled_dot_product_attention(q, k, v, true, 0.25, {}, masking, outputs);
  };
  using enum nn::AttentionOutputs;
  const nn::AttentionResult fused_result = attend({}, output_only);
  CHECK_FALSE(fused_result.scores.defined());
  CHECK_FALSE(fused_result.probabilities.defined());
  const nn::AttentionResult reference =
      nn::scaled_dot_product_attention(host.q, host.k, host.v, true, 0.25);
  REQUIRE(reference.scores.defined());
  CHECK(normwise_error(host_doubles(fused_result.output), host_doubles(reference.output)) <= 1e-5);
  // Whatever else needs the scores, or acts on them, keeps the composed ops.
  CHECK(attend({}, all).scores.defined());
  const Tensor mask = greater(ones({8, 8}), zeros({8, 8}));  // every key allowed
  CHECK(attend({.mask = mask}, output_only).scores.defined());
  CHECK(attend({.dropout = 0.1, .random = RandomStream{.seed = 1}}, output_only).scores.defined());
  for (const char* spec : {"a=bf16", "g=bf16", "gemm=bf16"}) {
    INFO(spec);
    PrecisionScope scope(parse_precision_stack(spec));
    CHECK(attend({}, output_only).scores.defined());
  }
  // A learned per-head scale multiplies q before the kernel.
  const Tensor per_head = from_vector<float>({0.5f, 0.25f}, {2});
  const Tensor scaled =
      nn::scaled_dot_product_attention(q, k, v, true, 0.0, per_head.to(device), {}, output_only)
          .output;
  const Tensor scaled_reference =
      nn::scaled_dot_product_attention(host.q, host.k, host.v, true, 0.0, per_head).output;
  CHECK(normwise_error(host_doubles(scaled), host_doubles(scaled_reference)) <= 1e-5);
}

TEST_CASE("on the CPU scaled_dot_product_attention takes the fused kernel only where it fits") {
  check_fused_dispatch(Device::cpu);
}

// ---------------------------------------------------------------------------------------------
// CUDA

namespace {

/// The GPU sweep: the CPU's shapes and longer ones that span many key and query tiles (256
/// keys, 130 x 77), head dims at the kernels' limit (128), odd ones (33, 31, 65 > 64), a
/// 16-row block exactly, no keys at all, and large scores (|s| up to ~40).
constexpr Case kGpuCases[] = {
    {2, 3, 5, 7, 4, 6, false, 0.5, 1.0},         {1, 2, 1, 9, 8, 8, false, 0.35, 1.0},
    {1, 1, 37, 37, 16, 16, true, 0.25, 1.0},     {2, 1, 6, 6, 1, 3, true, 1.0, 1.0},
    {1, 2, 20, 33, 64, 64, false, 0.125, 1.0},   {1, 1, 1, 1, 3, 2, true, 0.5, 1.0},
    {1, 2, 9, 9, 32, 48, true, 0.2, 1.0},        {1, 3, 256, 256, 64, 64, true, 0.125, 1.0},
    {2, 1, 130, 77, 128, 128, false, 0.09, 1.0}, {1, 1, 37, 37, 96, 40, true, 0.1, 1.0},
    {1, 1, 65, 200, 33, 1, false, 0.17, 1.0},    {1, 1, 16, 16, 32, 32, true, 0.18, 1.0},
    {1, 1, 17, 17, 31, 65, true, 0.18, 1.0},     {2, 3, 4, 0, 8, 8, false, 0.35, 1.0},
    {2, 1, 100, 100, 64, 64, true, 1.0, 2.0},    {1, 2, 48, 48, 128, 24, true, 0.09, 1.0},
};

/// Uniform values in [-range, range) from a Philox stream.
std::vector<float> random_floats(int64_t count, uint64_t seed, double range) {
  std::vector<float> values(static_cast<size_t>(count));
  const RandomStream random{.seed = seed};
  for (int64_t i = 0; i < count; ++i)
    values[size_t(i)] =
        float(range * (2.0 * double(random.word(uint64_t(i))) / 4294967296.0 - 1.0));
  return values;
}

std::vector<double> widen(const std::vector<float>& v) {
  return {v.begin(), v.end()};
}

/// One case's kernel inputs and results on the host: the CPU twin's forward and backward, and
/// the GPU's from the same inputs (its backward from its own out and log-sum-exp, as the op
/// runs it).
struct KernelRun {
  AttentionShape s;
  std::vector<float> q, k, v, grad_out;
  std::vector<float> out, logsumexp, dq, dk, dv;
};

KernelRun host_inputs(const Case& c) {
  KernelRun r;
  r.s = {c.batch * c.heads, c.queries, c.keys, c.dim, c.value_dim, c.causal, c.scale};
  const int64_t heads = r.s.heads;
  r.q = random_floats(heads * c.queries * c.dim, 21, c.range);
  r.k = random_floats(heads * c.keys * c.dim, 22, c.range);
  r.v = random_floats(heads * c.keys * c.value_dim, 23, c.range);
  r.grad_out = random_floats(heads * c.queries * c.value_dim, 24, 1.0);
  return r;
}

/// The CPU twin's results in float64 on the case's inputs (each rounded once to float at the
/// end): the reference the GPU's fp32 sums are measured against.
KernelRun cpu_run(const Case& c) {
  KernelRun r = host_inputs(c);
  const std::vector<double> q = widen(r.q), k = widen(r.k), v = widen(r.v), g = widen(r.grad_out);
  std::vector<double> out(size_t(r.s.heads * c.queries * c.value_dim)),
      logsumexp(size_t(r.s.heads * c.queries)), dq(q.size()), dk(k.size()), dv(v.size());
  attention_forward_cpu(r.s, q.data(), k.data(), v.data(), out.data(), logsumexp.data());
  attention_backward_cpu(r.s, q.data(), k.data(), v.data(), out.data(), logsumexp.data(), g.data(),
                         dq.data(), dk.data(), dv.data());
  const auto narrow = [](const std::vector<double>& x) {
    return std::vector<float>(x.begin(), x.end());
  };
  r.out = narrow(out), r.logsumexp = narrow(logsumexp);
  r.dq = narrow(dq), r.dk = narrow(dk), r.dv = narrow(dv);
  return r;
}

/// The GPU's results, every output starting as NaN so an element a kernel misses shows.
KernelRun gpu_run(const Case& c) {
  KernelRun r = host_inputs(c);
  const auto poisoned = [](size_t n) {
    return std::vector<float>(n, std::numeric_limits<float>::quiet_NaN());
  };
  const DeviceArray<float> q(r.q), k(r.k), v(r.v), grad_out(r.grad_out);
  const DeviceArray<float> out(poisoned(size_t(r.s.heads * c.queries * c.value_dim))),
      logsumexp(poisoned(size_t(r.s.heads * c.queries))), dq(poisoned(r.q.size())),
      dk(poisoned(r.k.size())), dv(poisoned(r.v.size()));
  attention_forward_cuda(r.s, q.data, k.data, v.data, out.data, logsumexp.data);
  attention_backward_cuda(r.s, q.data, k.data, v.data, out.data, logsumexp.data, grad_out.data,
                          dq.data, dk.data, dv.data);
  cuda_synchronize();
  r.out = out.download();
  r.logsumexp = logsumexp.download();
  r.dq = dq.download();
  r.dk = dk.download();
  r.dv = dv.download();
  return r;
}

/// A row's log-sum-exp may be -inf (no keys): equal infinities count as no error.
std::vector<double> finite_or_zero(const std::vector<float>& v) {
  std::vector<double> out;
  for (float x : v) out.push_back(std::isinf(x) && x < 0 ? 0.0 : double(x));
  return out;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * 4) == 0);
}

}  // namespace

TEST_CASE("without a CUDA device the fused attention kernels throw lattice::Error") {
  if (cuda_available()) return;
  float values[8] = {};
  const AttentionShape s{1, 2, 2, 2, 2, false, 1.0};
  CHECK_THROWS_AS(attention_forward_cuda(s, values, values, values, values, values), Error);
  CHECK_THROWS_AS(attention_backward_cuda(s, values, values, values, values, values, values, values,
                                          values, values),
                  Error);
  MESSAGE("no CUDA device here: the fused attention GPU cases skip");
}

TEST_CASE("CUDA fused attention matches the CPU twin within fp32 rounding of its sums") {
  if (!cuda_available()) return;
  for (const Case& c : kGpuCases) {
    INFO(describe(c));
    const KernelRun expected = cpu_run(c), actual = gpu_run(c);
    // The GPU sums in fp32 (the twin in double): scores from d products, probabilities through
    // exp2f (2 ulp), sums over up to 256 keys or queries. Typical errors are ~1e-6 of the
    // largest entry; the bounds leave 10x room, and 10x more for |scores| up to ~40, where an
    // fp32 score's own rounding (~4e-6) moves its probability as much. The -inf log-sum-exp
    // of a row without keys must match exactly (finite_or_zero maps -inf to 0 on both sides).
    const double large = c.range > 1.0 ? 10.0 : 1.0;
    CHECK(normwise_error(widen(actual.out), widen(expected.out)) <= 2e-5 * large);
    CHECK(normwise_error(finite_or_zero(actual.logsumexp), finite_or_zero(expected.logsumexp)) <=
          2e-6 * large);
    for (size_t i = 0; i < expected.logsumexp.size(); ++i)
      CHECK(std::isinf(actual.logsumexp[i]) == std::isinf(expected.logsumexp[i]));
    CHECK(normwise_error(widen(actual.dq), widen(expected.dq)) <= 1e-4 * large);
    CHECK(normwise_error(widen(actual.dk), widen(expected.dk)) <= 1e-4 * large);
    CHECK(normwise_error(widen(actual.dv), widen(expected.dv)) <= 1e-4 * large);
  }
}

TEST_CASE("CUDA fused attention replays to the bit: forward and backward twice") {
  if (!cuda_available()) return;
  // Many key and query tiles, causal and not, head dims at the limit, large scores.
  for (const Case& c : {Case{1, 3, 256, 256, 64, 64, true, 0.125, 1.0},
                        Case{2, 1, 130, 77, 128, 128, false, 0.09, 1.0},
                        Case{2, 1, 100, 100, 64, 64, true, 1.0, 2.0}}) {
    INFO(describe(c));
    const KernelRun first = gpu_run(c), second = gpu_run(c);
    CHECK(same_bits(first.out, second.out));
    CHECK(same_bits(first.logsumexp, second.logsumexp));
    CHECK(same_bits(first.dq, second.dq));
    CHECK(same_bits(first.dk, second.dk));
    CHECK(same_bits(first.dv, second.dv));
  }
}

TEST_CASE("CUDA fused_attention refuses float64 and head dims past 128 with one line") {
  if (!cuda_available()) return;
  const Tensor q = zeros({1, 1, 2, 4}, DType::float64, Device::cuda);
  CHECK_THROWS_WITH_AS(fused_attention(q, q, q, false, 1.0),
                       doctest::Contains("runs float32 on cuda"), Error);
  const Tensor wide = zeros({1, 1, 2, 129}, DType::float32, Device::cuda);
  CHECK_THROWS_WITH_AS(fused_attention(wide, wide, wide, false, 1.0),
                       doctest::Contains("must lie in 1..128"), Error);
}

TEST_CASE("on CUDA scaled_dot_product_attention takes the fused kernel only where it fits") {
  if (!cuda_available()) return;
  check_fused_dispatch(Device::cuda);
}

TEST_CASE("a CUDA MultiHeadAttention runs fused attention without a probe, composed with one") {
  if (!cuda_available()) return;
  const auto make = [] {
    manual_seed(9);
    return std::make_shared<nn::MultiHeadAttention>(
        32, 4, nn::AttentionOptions{.causal = true, .learned_temperature = true});
  };
  const auto cpu_layer = make(), gpu_layer = make();
  gpu_layer->to(Device::cuda);
  const Tensor x = uniform({2, 11, 32}, -1.0, 1.0, RandomStream{.seed = 4});
  const auto traced_ops = [](const std::function<void()>& f) {
    clear_op_trace();
    set_op_trace(true);
    f();
    set_op_trace(false);
    std::vector<std::string> names;
    for (const OpTrace& entry : op_trace()) names.push_back(entry.op);
    clear_op_trace();
    return names;
  };
  const auto contains = [](const std::vector<std::string>& names, const std::string& name) {
    return std::find(names.begin(), names.end(), name) != names.end();
  };
  Tensor cpu_out, gpu_out;
  const std::vector<std::string> ops =
      traced_ops([&] { gpu_out = (*gpu_layer)(x.to(Device::cuda)); });
  CHECK(contains(ops, "fused_attention"));
  cpu_out = (*cpu_layer)(x);
  CHECK(normwise_error(host_doubles(gpu_out), host_doubles(cpu_out)) <= 1e-5);
  const Tensor weights = uniform(cpu_out.shape(), 0.5, 1.5, RandomStream{.seed = 8});
  backward(sum(mul(cpu_out, weights)));
  backward(sum(mul(gpu_out, weights.to(Device::cuda))));
  const auto cpu_params = cpu_layer->named_parameters(), gpu_params = gpu_layer->named_parameters();
  REQUIRE(cpu_params.size() == gpu_params.size());
  for (size_t i = 0; i < cpu_params.size(); ++i) {
    INFO(cpu_params[i].first);
    REQUIRE(grad(gpu_params[i].second).defined());
    CHECK(normwise_error(host_doubles(grad(gpu_params[i].second)),
                         host_doubles(grad(cpu_params[i].second))) <= 1e-4);
  }
  // With a probe the layer composes the ops, and the probe sees the probabilities.
  nn::AttentionInternals seen;
  gpu_layer->set_probe([&](const nn::AttentionInternals& internals) { seen = internals; });
  const std::vector<std::string> probed =
      traced_ops([&] { (void)(*gpu_layer)(x.to(Device::cuda)); });
  CHECK_FALSE(contains(probed, "fused_attention"));
  REQUIRE(seen.probabilities.defined());
  CHECK(seen.probabilities.shape() == Shape{2, 4, 11, 11});
}
