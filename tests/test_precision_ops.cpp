// The precision stack inside ops: activation and gradient lattices, GEMM operand quantizers
// forward and backward along their reduction axes, scope lifetime and seeded determinism; the
// lattice reasoning that skips re-quantization and picks the bf16 GEMM.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "autograd/autograd.h"
#include "core/scalar/bits.h"
#include "kernels/block_scaled_gemm.h"
#include "kernels/gemm.h"
#include "ops/ops.h"
#include "ops/quantized_gemm.h"
#include "ops/spatial_ops.h"
#include "precision_support.h"
#include "tensor/precision_stack.h"
#include "tensor/random.h"

using namespace lattice;
using test::dequantized;
using test::product;

namespace {

bool on_lattice(const Tensor& t, const Format& f) {
  return t.to_vector<float>() == cast(t, f).to_vector<float>();
}

}  // namespace

TEST_CASE("a bf16 stack puts op outputs and gradients on the bf16 lattice, only in its scope") {
  const Tensor x = set_requires_grad(randn({8, 16}, RandomStream{.seed = 1}));
  const Tensor w = set_requires_grad(randn({16, 4}, RandomStream{.seed = 2}));
  Tensor y;
  {
    PrecisionScope scope(parse_precision_stack("w=bf16,a=bf16,g=bf16"));
    y = tanh(add(matmul(x, w), full({}, 0.1)));
    backward(sum(mul(y, y)));
  }
  CHECK(on_lattice(y, bf16));
  CHECK(on_lattice(grad(x), bf16));
  CHECK(on_lattice(grad(w), bf16));
  CHECK(!on_lattice(matmul(x, w), bf16));  // outside the scope: fp32 again
}

TEST_CASE("an MXFP4 GEMM stack equals the GEMM on dequantized operands, forward and backward") {
  const int64_t M = 8, K = 64, N = 32;
  const Tensor a = set_requires_grad(randn({M, K}, RandomStream{.seed = 3}));
  const Tensor b = set_requires_grad(randn({K, N}, RandomStream{.seed = 4}));
  const Tensor g = randn({M, N}, RandomStream{.seed = 5});
  const Quantizer mxfp4 = parse_quantizer("mxfp4");
  {
    PrecisionScope scope(parse_precision_stack("gemm=mxfp4"));
    const Tensor y = matmul(a, b);
    // Forward: a along K (its axis 1), b along K (its axis 0).
    CHECK(y.to_vector<float>() ==
          product(dequantized(a, mxfp4, 1), dequantized(b, mxfp4, 0), M, N, K, false, false));
    backward(y, g);
  }
  // dA = Q(g along N) @ Q(b along N)^T; dB = Q(a along M)^T @ Q(g along M).
  CHECK(grad(a).to_vector<float>() ==
        product(dequantized(g, mxfp4, 1), dequantized(b, mxfp4, 1), M, K, N, false, true));
  CHECK(grad(b).to_vector<float>() ==
        product(dequantized(a, mxfp4, 0), dequantized(g, mxfp4, 0), K, N, M, true, false));
}

TEST_CASE("stochastic GEMM quantization replays bit for bit after manual_seed") {
  const Tensor a = randn({4, 32}, RandomStream{.seed = 6}),
               b = randn({32, 4}, RandomStream{.seed = 7});
  const auto run = [&] {
    manual_seed(11);
    PrecisionScope scope(parse_precision_stack("gemm=mxfp4:sr"));
    return std::vector<std::vector<float>>{matmul(a, b).to_vector<float>(),
                                           matmul(a, b).to_vector<float>()};
  };
  const auto first = run(), second = run();
  CHECK(first == second);
  CHECK(first[0] != first[1]);  // fresh random bits per call
}

TEST_CASE("a bf16 accumulator rounds the running sum every K products") {
  // Summing 3000 ones: fp32 counts exactly. A bf16 running sum rounded after every product
  // stalls at 256 (256 + 1 ties back to 256); rounded every 8 products it stalls at 2048
  // (2048 + 8 ties back, the spacing there is 16); rounded once at the end it is bf16(3000).
  const Tensor a = ones({1, 3000}), b = ones({3000, 1});
  CHECK(matmul(a, b).item<float>() == 3000.0f);
  const auto sum_with = [&](const char* spec) {
    PrecisionScope scope(parse_precision_stack(spec));
    return matmul(a, b).item<float>();
  };
  CHECK(sum_with("acc=bf16:k1") == 256.0f);
  CHECK(sum_with("acc=bf16:k8") == 2048.0f);
  CHECK(sum_with("acc=bf16") == 3008.0f);
}

TEST_CASE("the op trace logs each op's operand lattices, output format and accumulator") {
  const Tensor x = randn({8, 64}, RandomStream{.seed = 8}),
               w = randn({64, 4}, RandomStream{.seed = 9});
  set_op_trace(true);
  clear_op_trace();
  {
    PrecisionScope scope(parse_precision_stack("a=bf16,gemm=mxfp4,acc=bf16:k32"));
    relu(matmul(x, w));
  }
  set_op_trace(false);
  relu(x);  // not logged
  REQUIRE(op_trace().size() == 2);
  CHECK(to_string(op_trace()[0]) ==
        "matmul(mxfp4 (8, 64), mxfp4 (64, 4)) -> bf16 (8, 4), acc bf16:k32");
  CHECK(to_string(op_trace()[1]) == "relu(bf16 (8, 4)) -> bf16 (8, 4), acc fp32");
  clear_op_trace();
}

TEST_CASE("conv2d under an MXFP4 stack quantizes weights and im2col columns along C*KH*KW") {
  const Tensor x = randn({2, 4, 6, 6}, RandomStream{.seed = 10});
  const Tensor w = randn({8, 4, 3, 3}, RandomStream{.seed = 11});
  Tensor y;
  {
    PrecisionScope scope(parse_precision_stack("gemm=mxfp4"));
    y = conv2d(x, w, {}, 1, 1);
  }
  // The same GEMM spelled out: w (8, 36) and the columns (2, 36, 36), both quantized along the
  // 36 = C*KH*KW products each output sums.
  Quantizer along_k = parse_quantizer("mxfp4");
  along_k.scaling->axis = 1;
  const Tensor w_q = quantize(w.reshape({8, 36}), along_k);
  const Tensor cols_q = quantize(im2col(x, 3, 3, 1, 1, 1), along_k);
  CHECK(y.to_vector<float>() == matmul(w_q, cols_q).to_vector<float>());
  CHECK(y.to_vector<float>() != conv2d(x, w, {}, 1, 1).to_vector<float>());
}

TEST_CASE("Λg follows the stack each op ran under, so a module's override reaches its gradients") {
  const Tensor x = set_requires_grad(randn({8, 16}, RandomStream{.seed = 21}));
  const Tensor w = set_requires_grad(randn({16, 4}, RandomStream{.seed = 22}));
  Tensor hidden;
  {
    // The first op runs under a g=bf16 stack (as inside an overridden module), the rest under
    // fp32; backward runs under fp32.
    PrecisionScope inner(parse_precision_stack("g=bf16"));
    hidden = matmul(x, w);
  }
  const Tensor loss = sum(mul(tanh(hidden), tanh(hidden)));
  backward(loss);
  CHECK(on_lattice(grad(x), bf16));  // passed back by the bf16 matmul
  CHECK(on_lattice(grad(w), bf16));
  // Without the inner stack the same gradients are off the bf16 lattice.
  zero_grad(x);
  zero_grad(w);
  backward(sum(mul(tanh(matmul(x, w)), tanh(matmul(x, w)))));
  CHECK(!on_lattice(grad(x), bf16));
}

TEST_CASE("within_bf16 reads bf16 exactness off a lattice, never off values") {
  for (const Format& f :
       {bf16, e5m2, e4m3, e3m2, e2m3, e2m1, e8m3, int8, int4, ue8m0, Format::integer(9)})
    CHECK(within_bf16(f));
  for (const Format& f : {fp32, tf32, fp16, Format::integer(10)}) CHECK(!within_bf16(f));
  for (const char* name : {"bf16", "e4m3", "mxfp8", "mxfp6", "mxfp4", "mxint8"})
    CHECK_MESSAGE(within_bf16(parse_quantizer(name)), name);
  // NVFP4's e4m3 scales and fp32 tensor scale make values with more significant bits.
  for (const char* name : {"fp16", "fp32", "nvfp4"})
    CHECK_MESSAGE(!within_bf16(parse_quantizer(name)), name);
  // The encode rule divides by its scale: exact for power-of-two scales without tensor scale.
  CHECK(within_bf16(parse_precision_stack("pure-fp4-e8m0").gemm.input));
  CHECK(!within_bf16(parse_precision_stack("pure-fp4-e4m3").gemm.input));
  CHECK(!within_bf16(parse_precision_stack("ue5m3-fp4").gemm.input));
  // Quantizing into bf16 bits refuses lattices outside bf16.
  const std::vector<float> x(32, 0.3f);
  std::vector<uint16_t> bits(32);
  const std::vector<int64_t> shape{32};
  CHECK_THROWS_WITH_AS(
      quantize_bf16_bits(parse_quantizer("fp16"), x, bits, shape, {}),
      doctest::Contains("[quantize] bf16 output needs a quantizer whose values are bf16 values "
                        "up to a tensor factor (at most 8 significant bits), got fp16 elements"),
      Error);
  quantize_bf16_bits(parse_quantizer("mxfp4"), x, bits, shape, {});
  CHECK(bits[0] == bf16_bits(0.25f));  // scale 2^-4 (amax 0.3), 0.3 / 2^-4 = 4.8 rounds to 4
}

TEST_CASE("quantizing values already on the quantizer's lattice returns them, sharing storage") {
  const Tensor x = set_requires_grad(randn({4, 64}, RandomStream{.seed = 21}));
  const Tensor on_bf16 = cast(x, bf16);
  const Tensor again = cast(on_bf16, bf16, Rounding{.mode = RoundingMode::stochastic});
  CHECK(same_storage(again, on_bf16));
  CHECK(again.format() == bf16);
  backward(sum(again));  // a node of its own: no cycle through the shared input
  CHECK(grad(x).to_vector<float>() == std::vector<float>(4 * 64, 1.0f));
  // The claim the skip rests on: every rounding mode maps a lattice point to itself, which the
  // kernels confirm on these values.
  for (const Format& f : {bf16, e4m3, e2m1}) {
    const std::vector<float> values = cast(x, f).to_vector<float>();
    for (RoundingMode mode : {RoundingMode::nearest_even, RoundingMode::stochastic,
                              RoundingMode::toward_zero, RoundingMode::toward_positive}) {
      const Quantizer q{f, Rounding{.mode = mode}, std::nullopt};
      CHECK(leaves_unchanged(q, f));
      std::vector<float> out(values.size());
      quantize(q, values, out, std::vector<int64_t>{4, 64}, RandomStream{.seed = 5});
      CHECK(out == values);
    }
  }
  // Flushing, saturating or another lattice may change them: those run the kernel.
  CHECK(!leaves_unchanged(Quantizer{bf16, Rounding{.subnormals = Subnormals::flush}, std::nullopt},
                          bf16));
  CHECK(!leaves_unchanged(Quantizer{bf16, Rounding{.overflow = Overflow::saturate}, std::nullopt},
                          bf16));
  CHECK(!leaves_unchanged(Quantizer{e4m3, Rounding{}, std::nullopt}, bf16));
  CHECK(!leaves_unchanged(parse_quantizer("mxfp8"), e4m3));
  CHECK(!same_storage(cast(on_bf16, e4m3), on_bf16));
}

TEST_CASE(
    "relu, max_pool2d and upsampling keep their input's lattice, so Λa's rounding of it is "
    "skipped") {
  // Under a stochastic Λa the skipped rounding still draws its stream: what follows draws the
  // same bits whether the input was labelled or not.
  const PrecisionScope scope(parse_precision_stack("a=e4m3:sr"));
  const Tensor values = cast(randn({1, 2, 4, 4}, RandomStream{.seed = 31}), e4m3);
  // How each rounding onto Λa went: skipped (the output is its input) or run.
  std::vector<bool> skipped;
  set_quantizer_observer(
      [&](QuantizerSite site, const Quantizer&, const Tensor& input, const Tensor& output) {
        if (site == QuantizerSite::activation) skipped.push_back(same_storage(input, output));
      });
  const auto run = [&](const Tensor& x) {
    manual_seed(5);
    skipped.clear();
    const Tensor rectified = relu(x);
    // max_pool2d's output: the pixels of relu's, so it goes on as e4m3 with no rounding.
    const Tensor twice = relu(max_pool2d(rectified, 2));
    const Tensor next = cast(full({64}, 0.3f), e4m3, Rounding{.mode = RoundingMode::stochastic},
                             next_random_stream());
    return std::vector<Tensor>{rectified, twice, next};
  };
  const std::vector<Tensor> unlabelled = run(values.with_format(fp32));
  CHECK(skipped == std::vector<bool>{false, true});  // the first relu's output is rounded
  const std::vector<Tensor> labelled = run(values);
  CHECK(skipped == std::vector<bool>{true, true});
  set_quantizer_observer({});
  for (size_t i = 0; i < labelled.size(); ++i) {
    CHECK(labelled[i].to_vector<float>() == unlabelled[i].to_vector<float>());
    if (i < 2) CHECK(labelled[i].format() == e4m3);
  }
  CHECK(upsample_nearest2d(values, 2).format() == e4m3);
  CHECK(upsample_nearest2d(values.with_format(fp32), 2).format() == fp32);
}

namespace {

/// Sets the process's GEMM path for a scope.
struct GemmPathScope {
  GemmPath before = gemm_path();
  explicit GemmPathScope(GemmPath path) {
    set_gemm_path(path);
  }
  ~GemmPathScope() {
    set_gemm_path(before);
  }
};

}  // namespace

TEST_CASE("matmul runs bf16 operands as the bf16 GEMM where the CPU has one, and exact-fp32 not") {
  // 2^-130 is a bf16 subnormal: the bf16 instructions flush it, which tells the paths apart.
  const float tiny = std::ldexp(1.0f, -130);
  const Tensor a = full({1, 1}, tiny).with_format(bf16), b = ones({1, 1}).with_format(bf16);
  {
    GemmPathScope path(GemmPath::automatic);
    CHECK(matmul(a, b).item<float>() == (native_bf16_gemm_cpu() ? 0.0f : tiny));
    CHECK(matmul(a.with_format(fp32), b).item<float>() == tiny);  // fp32 label: fp32 GEMM
  }
  {
    GemmPathScope path(GemmPath::exact_fp32);
    CHECK(matmul(a, b).item<float>() == tiny);
  }
  // Under an MXFP8 stack every GEMM (forward, dgrad, wgrad) may run in bf16; both paths agree
  // to fp32 summation order.
  const Tensor x = set_requires_grad(randn({33, 200}, RandomStream{.seed = 22}));
  const Tensor w = set_requires_grad(randn({200, 17}, RandomStream{.seed = 23}));
  const auto run = [&](GemmPath p) {
    GemmPathScope path(p);
    zero_grad(x), zero_grad(w);
    manual_seed(3);
    PrecisionScope scope(parse_precision_stack("gemm=mxfp8"));
    const Tensor y = matmul(x, w);
    backward(sum(mul(y, y)));
    return std::vector<std::vector<float>>{y.to_vector<float>(), grad(x).to_vector<float>(),
                                           grad(w).to_vector<float>()};
  };
  const auto fast = run(GemmPath::automatic), exact = run(GemmPath::exact_fp32);
  for (size_t t = 0; t < fast.size(); ++t)
    for (size_t i = 0; i < fast[t].size(); ++i) {
      const float tolerance = 1e-5f * std::max(1.0f, std::fabs(exact[t][i]));
      REQUIRE(std::fabs(fast[t][i] - exact[t][i]) <= tolerance);
    }
  CHECK(parse_gemm_path("auto") == GemmPath::automatic);
  CHECK(parse_gemm_path("exact-fp32") == GemmPath::exact_fp32);
  CHECK(parse_gemm_path("fp8-blocks") == GemmPath::fp8_blocks);
  CHECK_THROWS_WITH_AS(
      parse_gemm_path("fast"),
      "[gemm] unknown GEMM path \"fast\" (expected auto, exact-fp32 or fp8-blocks)", Error);
}

TEST_CASE("matmul of MX operands runs the block-scaled FP8 GEMM on the fp8-blocks path") {
  // x (64, 96) @ w (96, 32), w a transposed view as nn::Linear's weight: the forward (K = 96),
  // dgrad (K = 32) and wgrad (K = 64) all reduce over multiples of 32.
  const Tensor x = set_requires_grad(randn({64, 96}, RandomStream{.seed = 31}));
  const Tensor w_stored = set_requires_grad(randn({32, 96}, RandomStream{.seed = 32}));
  for (const char* format : {"mxfp8", "mxfp8_e5m2", "mxfp6", "mxfp6_e3m2", "mxfp4"}) {
    const auto run = [&](GemmPath p) {
      GemmPathScope path(p);
      zero_grad(x), zero_grad(w_stored);
      manual_seed(3);
      PrecisionScope scope(parse_precision_stack(std::string("gemm=") + format));
      const Tensor y = matmul(x, w_stored.t());
      backward(sum(mul(y, y)));
      return std::vector<std::vector<float>>{y.to_vector<float>(), grad(x).to_vector<float>(),
                                             grad(w_stored).to_vector<float>()};
    };
    const auto blocks = run(GemmPath::fp8_blocks), exact = run(GemmPath::exact_fp32);
    INFO(format);
    // The same products summed in another order: within 1e-5 of each tensor's largest value.
    for (size_t t = 0; t < blocks.size(); ++t) {
      float largest = 0.0f;
      for (const float v : exact[t]) largest = std::max(largest, std::fabs(v));
      for (size_t i = 0; i < blocks[t].size(); ++i)
        REQUIRE(std::fabs(blocks[t][i] - exact[t][i]) <= 1e-5f * largest);
    }
    // The forward is the kernels' block-scaled GEMM of the quantized operands, to the bit.
    const Quantizer q = parse_quantizer(format);
    Quantizer along_k = q;
    const Tensor xq = quantize(detach(x), along_k);
    along_k.scaling->axis = 0;
    const Tensor wq = quantize(detach(w_stored).t(), along_k).contiguous();
    const bool e5m2 = std::string(format) == "mxfp8_e5m2";
    const Fp8Format carrier = e5m2 ? Fp8Format::e5m2 : Fp8Format::e4m3;
    const int target = e5m2 ? 15 : std::string(format) == "mxfp6" ? 7 : 8;
    std::vector<uint8_t> a_codes(64 * 96), b_codes(32 * 96);
    std::vector<float> a_scales(64 * 3), b_scales(32 * 3), y(64 * 32);
    pack_fp8_blocks_cpu(xq.data<float>(), 64, 96, 96, 1, target, carrier, a_codes.data(),
                        a_scales.data(), nullptr);
    pack_fp8_blocks_cpu(wq.data<float>(), 32, 96, 1, 32, target, carrier, b_codes.data(),
                        b_scales.data(), nullptr);
    block_scaled_gemm_cpu(BlockScaledGemm{64, 32, 96, 32, carrier, carrier, 1.0f}, a_codes.data(),
                          a_scales.data(), b_codes.data(), b_scales.data(), y.data());
    CHECK(std::memcmp(y.data(), blocks[0].data(), y.size() * sizeof(float)) == 0);
  }
  // NVFP4 (e4m3 scales times a tensor scale) and block sizes other than 32 keep the automatic
  // path's GEMM, the same bits.
  const auto forward = [&](GemmPath p, const char* stack) {
    GemmPathScope path(p);
    PrecisionScope scope(parse_precision_stack(stack));
    return matmul(detach(x), detach(w_stored).t()).to_vector<float>();
  };
  for (const char* stack : {"gemm=nvfp4", "gemm=mxfp4:b16"})
    CHECK(forward(GemmPath::fp8_blocks, stack) == forward(GemmPath::automatic, stack));
}

TEST_CASE("GEMM operands quantized straight into bf16 bits multiply as their float32 values do") {
  // On a CPU with a bf16 GEMM, MX operands go to it quantized into bf16 bits; the observer sees
  // their float32 values, which, labelled bf16, the same GEMM reads narrowed: the same bits.
  const Tensor w_stored = set_requires_grad(randn({40, 96}, RandomStream{.seed = 41}));
  const Tensor w = set_requires_grad(randn({64, 24}, RandomStream{.seed = 42}));
  const Tensor x2 = set_requires_grad(randn({33, 96}, RandomStream{.seed = 43}));
  const Tensor x3 = set_requires_grad(randn({2, 5, 64}, RandomStream{.seed = 44}));
  const Tensor a = set_requires_grad(randn({3, 8, 64}, RandomStream{.seed = 45}));
  const Tensor b = set_requires_grad(randn({3, 64, 16}, RandomStream{.seed = 46}));
  const Tensor wide = set_requires_grad(randn({33, 128}, RandomStream{.seed = 47}));
  const Tensor q = set_requires_grad(randn({2, 8, 3, 64}, RandomStream{.seed = 48}));
  const Tensor k = set_requires_grad(randn({2, 8, 3, 64}, RandomStream{.seed = 49}));
  const std::vector<Tensor> leaves{w_stored, w, x2, x3, a, b, wide, q, k};
  // A Linear layer (w.t() a transposed view), a weight broadcast over a batch, a batched
  // product, a sliced operand, which is not a packed block, and attention's scores over head
  // views (matrices whose rows are strided).
  const auto products = [&] {
    return std::vector<Tensor>{matmul(x2, w_stored.t()), matmul(x3, w), matmul(a, b),
                               matmul(wide.slice(1, 0, 96), w_stored.t()),
                               matmul(q.transpose(1, 2), k.transpose(1, 2).transpose(-1, -2))};
  };
  const auto bits_equal = [](const std::vector<float>& p, const std::vector<float>& q) {
    return p.size() == q.size() && std::memcmp(p.data(), q.data(), p.size() * sizeof(float)) == 0;
  };
  {
    std::vector<Tensor> observed;  // each product's w then x
    set_quantizer_observer([&](QuantizerSite, const Quantizer&, const Tensor&,
                               const Tensor& output) { observed.push_back(output); });
    std::vector<Tensor> ys;
    {
      PrecisionScope scope(parse_precision_stack("gemm=mxfp4"));
      ys = products();
    }
    set_quantizer_observer({});
    REQUIRE(observed.size() == 2 * ys.size());
    for (size_t i = 0; i < ys.size(); ++i) {
      CAPTURE(i);
      const Tensor narrowed =
          matmul(observed[2 * i + 1].with_format(bf16), observed[2 * i].with_format(bf16));
      CHECK(bits_equal(ys[i].to_vector<float>(), narrowed.to_vector<float>()));
    }
  }
  // Forward and backward, observed or not, give the same bits; NVFP4's tensor scales applied to
  // the output agree with the exact-fp32 GEMM of the dequantized values to fp32 rounding.
  const auto run = [&](const std::string& stack, bool observed, GemmPath p) {
    GemmPathScope path(p);
    for (const Tensor& leaf : leaves) zero_grad(leaf);
    if (observed)
      set_quantizer_observer([](QuantizerSite, const Quantizer&, const Tensor&, const Tensor&) {});
    manual_seed(8);
    std::vector<std::vector<float>> results;
    {
      PrecisionScope scope(parse_precision_stack(stack));
      for (const Tensor& y : products()) {
        backward(sum(mul(y, y)));
        results.push_back(y.to_vector<float>());
      }
    }
    set_quantizer_observer({});
    for (const Tensor& leaf : leaves) results.push_back(grad(leaf).to_vector<float>());
    return results;
  };
  // Empty products: no rows, no columns, and K = 0 (zeros).
  for (const char* stack : {"gemm=mxfp4", "gemm=nvfp4"}) {
    PrecisionScope scope(parse_precision_stack(stack));
    CHECK(matmul(zeros({0, 64}), zeros({64, 8})).shape() == Shape{0, 8});
    CHECK(matmul(zeros({4, 64}), zeros({0, 64}).t()).shape() == Shape{4, 0});
    CHECK(matmul(ones({3, 0}), ones({0, 5})).to_vector<float>() == std::vector<float>(15, 0.0f));
  }
  for (const std::string stack : {"gemm=mxfp4,gemm.bwd=mxfp4:sr", "gemm=nvfp4,gemm.bwd=nvfp4:sr"}) {
    CAPTURE(stack);
    const auto direct = run(stack, false, GemmPath::automatic);
    const auto observed = run(stack, true, GemmPath::automatic);
    const auto exact = run(stack, false, GemmPath::exact_fp32);
    REQUIRE(direct.size() == observed.size());
    for (size_t i = 0; i < direct.size(); ++i) {
      CAPTURE(i);
      CHECK(bits_equal(direct[i], observed[i]));
      float largest = 0.0f, difference = 0.0f;  // of the tensor: sums cancel element by element
      for (size_t j = 0; j < direct[i].size(); ++j) {
        largest = std::max(largest, std::fabs(exact[i][j]));
        difference = std::max(difference, std::fabs(direct[i][j] - exact[i][j]));
      }
      CHECK(difference <= 1e-5f * largest);
    }
  }
}

TEST_CASE("an operand quantized where the GEMM reads it draws the stochastic bits of Q(x)") {
  // x packed goes through the fused kernels (FP8 codes on the fp8-blocks path, bf16 bits on the
  // CPU's bf16 GEMM); the same values as a slice of a wider tensor, not a packed block, are
  // quantized to fp32 first. Stochastic rounding everywhere: forward along K, wgrad along M.
  const Tensor x = set_requires_grad(randn({64, 96}, RandomStream{.seed = 61}));
  const Tensor wide =
      set_requires_grad(cat({detach(x), randn({64, 32}, RandomStream{.seed = 62})}, 1));
  const Tensor w_stored = set_requires_grad(randn({32, 96}, RandomStream{.seed = 63}));
  for (const GemmPath p : {GemmPath::fp8_blocks, GemmPath::automatic}) {
    CAPTURE(int(p));
    const auto run = [&](const Tensor& input, const Tensor& leaf) {
      GemmPathScope path(p);
      zero_grad(leaf), zero_grad(w_stored);
      manual_seed(4);
      PrecisionScope scope(parse_precision_stack("gemm=mxfp4:sr"));
      const Tensor y = matmul(input, w_stored.t());
      backward(sum(mul(y, y)));
      return std::vector<std::vector<float>>{
          y.to_vector<float>(), grad(leaf).slice(1, 0, 96).contiguous().to_vector<float>(),
          grad(w_stored).to_vector<float>()};
    };
    const auto fused = run(x, x), unfused = run(wide.slice(1, 0, 96), wide);
    for (size_t t = 0; t < fused.size(); ++t) {
      CAPTURE(t);
      CHECK(fused[t].size() == unfused[t].size());
      CHECK(std::memcmp(fused[t].data(), unfused[t].data(), fused[t].size() * sizeof(float)) == 0);
    }
  }
}
