// quantize() and cast() as tensor ops: the kernels' exact values, the format label, and the
// straight-through or custom backward.
#include <doctest/doctest.h>

#include <cstring>
#include <vector>

#include "autograd/autograd.h"
#include "ops/ops.h"
#include "tensor/precision_stack.h"

using namespace lattice;

TEST_CASE("cast onto bf16 gives bf16-lattice values labelled bf16, RNE by bit arithmetic") {
  const Tensor x = randn({64}, RandomStream{.seed = 1});
  const Tensor y = cast(x, bf16);
  CHECK(y.format() == bf16);
  const std::vector<float> in = x.to_vector<float>(), out = y.to_vector<float>();
  for (size_t i = 0; i < in.size(); ++i) {
    uint32_t u;
    std::memcpy(&u, &in[i], 4);
    u = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;
    float expected;
    std::memcpy(&expected, &u, 4);
    REQUIRE(out[i] == expected);
  }
}

TEST_CASE("quantize with an MXFP4 quantizer equals the kernel on the raw array, along any axis") {
  const Tensor x = randn({8, 64}, RandomStream{.seed = 2});
  Quantizer q = parse_quantizer("mxfp4");
  for (int axis : {-1, 0}) {
    q.scaling->axis = axis;
    const std::vector<float> in = x.to_vector<float>();
    std::vector<float> expected(in.size());
    const int64_t shape[] = {8, 64};
    quantize(q, in, expected, shape, RandomStream{.seed = 3});
    CHECK(quantize(x, q, RandomStream{.seed = 3}).to_vector<float>() == expected);
    CHECK(quantize(x.t(), q).shape() == Shape{64, 8});  // strided input
  }
}

TEST_CASE(
    "a transposed view is quantized in its packed order: Q(w^T) = Q(w along the other "
    "axis)^T bit for bit, stochastic rounding included, and reads no packed copy") {
  const Tensor w = randn({40, 96}, RandomStream{.seed = 4});
  Quantizer q = parse_quantizer_spec("mxfp4:sr");
  for (int axis : {0, 1}) {
    q.scaling->axis = axis;
    Quantizer on_w = q;
    on_w.scaling->axis = 1 - axis;  // axis `axis` of w^T is axis 1 - axis of w
    const Tensor viewed = quantize(w.t(), q, RandomStream{.seed = 5});
    const Tensor packed = quantize(w, on_w, RandomStream{.seed = 5});
    CHECK(viewed.shape() == Shape{96, 40});
    CHECK(viewed.to_vector<float>() == packed.t().to_vector<float>());
    CHECK(viewed.stride(0) == 1);  // a view of the packed result
  }
}

TEST_CASE("quantize is straight-through by default and takes a custom backward") {
  const Tensor x = set_requires_grad(from_vector<float>({0.3f, 1.7f, -2.6f}, {3}));
  backward(sum(mul(cast(x, e2m1), cast(x, e2m1))));  // d/dx of Q(x)^2 with STE = 2 Q(x)
  CHECK(grad(x).to_vector<float>() == std::vector<float>{1.0f, 3.0f, -6.0f});
  zero_grad(x);
  const QuantizerBackward clipped = [](const Tensor& g, const Tensor& input, const Tensor&) {
    // Pass the gradient only where |x| <= 2 (a clipped STE).
    std::vector<float> mask;
    for (float v : input.to_vector<float>()) mask.push_back(v >= -2.0f && v <= 2.0f ? 1.0f : 0.0f);
    return mul(g, from_vector<float>(mask, input.shape()));
  };
  backward(sum(quantize(x, Quantizer{e2m1, Rounding{}, std::nullopt}, {}, clipped)));
  CHECK(grad(x).to_vector<float>() == std::vector<float>{1.0f, 1.0f, 0.0f});
}

TEST_CASE("stochastic quantize is reproducible per stream and rejects non-float32 input") {
  const Tensor x = full({1000}, 0.3);
  Quantizer q = parse_quantizer("e2m1");
  q.rounding = parse_rounding("sr");
  const RandomStream stream{.seed = 4};
  CHECK(quantize(x, q, stream).to_vector<float>() == quantize(x, q, stream).to_vector<float>());
  const float m = mean(quantize(x, q, stream)).item<float>();
  CHECK(m == doctest::Approx(0.3).epsilon(0.1));  // P(0.5) = 0.6: mean 0.3, sd 0.0078
  CHECK_THROWS_WITH_AS(cast(zeros({2}, DType::float64), bf16),
                       "[quantize] expects float32, got float64", Error);
}
