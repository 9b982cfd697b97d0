// conv2d's direct path (oneDNN's primitives, kernels/conv.h): float32 values and gradients
// against the float64 patch-row path over a table of geometries, which path each stack takes
// (read from the op trace), gradients only for the inputs that need them, the same bits from a
// rerun, bf16 passes for bf16 operands, under elementwise lattices the same roundings as the
// patch rows, and the CPU's patch-row node against im2col and matmul.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "autograd/autograd.h"
#include "kernels/gemm.h"
#include "ops/ops.h"
#include "ops/quantized_gemm.h"
#include "ops/spatial_ops.h"
#include "tensor/precision_stack.h"
#include "tensor/random.h"

using namespace lattice;

namespace {

struct Geometry {
  const char* what;
  Shape x, w;
  bool bias;
  Size2d stride, padding, dilation;
  int64_t groups;
};

const std::vector<Geometry>& geometries() {
  static const std::vector<Geometry> table{
      {"a first layer: 3 channels, padding 1", {2, 3, 12, 12}, {8, 3, 3, 3}, true, 1, 1, 1, 1},
      {"a grayscale first layer: one channel (plain layouts)",
       {2, 1, 9, 9},
       {4, 1, 3, 3},
       true,
       1,
       1,
       1,
       1},
      {"stride 2 over an odd size", {2, 16, 9, 9}, {24, 16, 3, 3}, true, 2, 1, 1, 1},
      {"1x1 kernel, one image, no bias", {1, 8, 10, 7}, {8, 8, 1, 1}, false, 1, 0, 1, 1},
      {"per-axis stride, padding and dilation, groups 2",
       {2, 8, 11, 13},
       {12, 4, 3, 2},
       true,
       {2, 1},
       {1, 2},
       {2, 1},
       2},
      {"depthwise", {2, 6, 5, 5}, {6, 1, 3, 3}, true, 1, 1, 1, 6},
      {"the kernel covers the image", {3, 4, 6, 6}, {5, 4, 6, 6}, true, 1, 0, 1, 1},
      {"stride 3 leaves the far pixels out", {2, 4, 8, 8}, {4, 4, 3, 3}, true, 3, 0, 1, 1},
      {"dilation 3 with padding 2", {2, 4, 7, 7}, {6, 4, 3, 3}, false, 1, 2, 3, 1},
  };
  return table;
}

Tensor random(const Shape& shape, uint64_t seed, DType dtype) {
  return uniform(shape, -1.0, 1.0, RandomStream{.seed = seed}).to(dtype);
}

/// The output and the gradients of x, w (and the bias) for the loss sum(y * r), r fixed; with
/// `on_bf16` every operand, r too, holds bf16 values and is labelled so (as under a bf16 stack).
std::vector<std::vector<double>> run(const Geometry& g, DType dtype, bool on_bf16 = false) {
  const auto operand = [&](const Shape& shape, uint64_t seed) {
    const Tensor values = random(shape, seed, DType::float32);
    return (on_bf16 ? cast(values, bf16) : values).to(dtype);
  };
  const Tensor x = set_requires_grad(operand(g.x, 1)), w = set_requires_grad(operand(g.w, 2)),
               b = g.bias ? set_requires_grad(operand({g.w[0]}, 3)) : Tensor{};
  const Tensor y = conv2d(x, w, b, g.stride, g.padding, g.dilation, g.groups);
  backward(y, operand(y.shape(), 4));  // d sum(y * r) / dy = r
  std::vector<std::vector<double>> out{y.to_vector<double>(), grad(x).to_vector<double>(),
                                       grad(w).to_vector<double>()};
  if (g.bias) out.push_back(grad(b).to_vector<double>());
  return out;
}

/// The names of the ops `body` runs, backward rules included.
template <typename Body>
std::vector<std::string> traced_ops(Body&& body) {
  set_op_trace(true, /*backward=*/true);
  clear_op_trace();
  body();
  set_op_trace(false);
  std::vector<std::string> names;
  for (const OpTrace& entry : op_trace()) names.push_back(entry.op);
  clear_op_trace();
  return names;
}

bool contains(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

}  // namespace

TEST_CASE("direct conv2d's float32 values and gradients match the float64 patch-row path") {
  // With bf16 operands each pass runs oneDNN's bf16 primitive where the CPU has one (or fp32
  // where oneDNN has none for the geometry): the same exact products, summed in fp32.
  for (const bool on_bf16 : {false, true})
    for (const Geometry& g : geometries()) {
      INFO(g.what, on_bf16 ? ", bf16 operands" : "");
      std::vector<std::vector<double>> got, expected;
      const std::vector<std::string> ops =
          traced_ops([&] { got = run(g, DType::float32, on_bf16); });
      CHECK(contains(ops, "conv2d"));  // the direct path ran, forward and backward
      CHECK(contains(ops, "conv2d.dgrad"));
      CHECK(contains(ops, "conv2d.wgrad"));
      CHECK(!contains(ops, "matmul"));
      expected = run(g, DType::float64, on_bf16);
      REQUIRE(got.size() == expected.size());
      const char* names[] = {"y", "dx", "dw", "dbias"};
      for (size_t k = 0; k < got.size(); ++k) {
        INFO(names[k]);
        REQUIRE(got[k].size() == expected[k].size());
        double largest = 0.0;
        for (double v : expected[k]) largest = std::max(largest, std::fabs(v));
        for (size_t i = 0; i < got[k].size(); ++i)
          CHECK(std::fabs(got[k][i] - expected[k][i]) <=
                1e-5 * (std::fabs(expected[k][i]) + largest));
      }
    }
}

TEST_CASE("conv2d takes the patch rows and matmul wherever a GEMM operand is quantized") {
  const Tensor x = random({2, 4, 6, 6}, 5, DType::float32),
               w = random({4, 4, 3, 3}, 6, DType::float32);
  const auto path = [&](const std::string& stack, DType dtype) {
    PrecisionScope scope(parse_precision_stack(stack));
    return traced_ops([&] { conv2d(x.to(dtype), w.to(dtype), {}, 1, 1); });
  };
  CHECK(path("fp32", DType::float32) == std::vector<std::string>{"conv2d"});
  // Elementwise lattices round the op's output and gradients, not its operands.
  for (const char* stack : {"a=bf16", "w=bf16,a=bf16,g=bf16", "a=e4m3:sr,g=e5m2:sr"}) {
    INFO(stack);
    const std::vector<std::string> ops = path(stack, DType::float32);
    CHECK(contains(ops, "conv2d"));
    CHECK(!contains(ops, "matmul"));
  }
  for (const char* stack : {"gemm=mxfp4", "acc=bf16:k32", "gemm=bf16"}) {
    INFO(stack);
    const std::vector<std::string> ops = path(stack, DType::float32);
    CHECK(contains(ops, "matmul"));
    CHECK(!contains(ops, "conv2d"));
  }
  CHECK(!contains(path("fp32", DType::float64), "conv2d"));
}

TEST_CASE("direct conv2d computes the gradients its inputs need, the bias's alone too") {
  const Tensor x = random({2, 3, 5, 5}, 7, DType::float32),
               w = random({4, 3, 3, 3}, 8, DType::float32),
               b = set_requires_grad(random({4}, 9, DType::float32));
  const Tensor y = conv2d(x, w, b, 1, 1);
  const Tensor r = random(y.shape(), 10, DType::float32);
  backward(sum(mul(y, r)));
  // d/dbias_o of sum(y * r) is the sum of r over channel o's positions.
  const std::vector<float> expected = sum(r, {0, 2, 3}).to_vector<float>(),
                           got = grad(b).to_vector<float>();
  REQUIRE(got.size() == expected.size());
  for (size_t o = 0; o < got.size(); ++o)
    CHECK(got[o] == doctest::Approx(expected[o]).epsilon(1e-5));
  CHECK(!grad(x).defined());
  CHECK(!grad(w).defined());

  const Tensor w2 = set_requires_grad(detach(w));
  const std::vector<std::string> ops = traced_ops([&] { backward(sum(conv2d(x, w2, {}, 1, 1))); });
  CHECK(contains(ops, "conv2d.wgrad"));
  CHECK(!contains(ops, "conv2d.dgrad"));  // x needs no gradient: a first layer's input
}

TEST_CASE("direct conv2d gives the same bits when run again") {
  const Geometry& g = geometries()[3];
  const std::vector<std::vector<double>> first = run(g, DType::float32),
                                         second = run(g, DType::float32);
  CHECK(first == second);
}

namespace {

/// Integers in [-15, 15]: bf16 values whose products and sums stay exact in fp32, so any two
/// summation orders agree to the bit and only the roundings onto the lattices show.
Tensor integers(const Shape& shape, uint64_t seed) {
  std::vector<float> values(size_t(numel(shape)));
  for (float& v : values) {
    seed = seed * 6364136223846793005u + 1442695040888963407u;
    v = float(int64_t(seed >> 33) % 31 - 15);
  }
  return from_vector<float>(values, shape).with_format(bf16);
}

}  // namespace

TEST_CASE("under elementwise lattices conv2d is one op on every path: the same roundings") {
  // The direct convolution (its passes in bf16 where the CPU multiplies bf16) against the patch
  // rows (which gemm=bf16 forces; it changes no bf16 value): with one group the CPU's patch-row
  // node, with two im2col and matmul. Each rounds the output onto Λa before and after the bias
  // add and the gradients onto Λg once, where they reach x, w and the bias. Sums of up to 8 x 9
  // products of integers of up to 15 need more than bf16's 8 bits, so a rounding in another
  // place (such as the patch rows' gradients before they are folded, as the composed path once
  // did) changes values.
  for (const int64_t groups : {1, 2}) {
    INFO("groups ", groups);
    const Tensor x0 = integers({2, 8, 7, 7}, 11), w0 = integers({6, 8 / groups, 3, 3}, 12),
                 b0 = integers({6}, 13), r = integers({2, 6, 7, 7}, 14);
    const auto run_under = [&](const std::string& stack, std::vector<std::string>& ops) {
      PrecisionScope scope(parse_precision_stack(stack));
      const Tensor x = set_requires_grad(detach(x0)), w = set_requires_grad(detach(w0)),
                   b = set_requires_grad(detach(b0));
      std::vector<std::vector<float>> out;
      ops = traced_ops([&] {
        const Tensor y = conv2d(x, w, b, 1, 1, 1, groups);
        backward(y, r);
        out = {y.to_vector<float>(), grad(x).to_vector<float>(), grad(w).to_vector<float>(),
               grad(b).to_vector<float>()};
      });
      return out;
    };
    std::vector<std::string> direct_ops, patch_ops;
    const auto direct = run_under("w=bf16,a=bf16,g=bf16", direct_ops);
    const auto patch_rows = run_under("w=bf16,a=bf16,g=bf16,gemm=bf16", patch_ops);
    CHECK(contains(direct_ops, "conv2d"));
    CHECK(contains(patch_ops, "matmul"));
    CHECK(contains(patch_ops, groups == 1 ? "conv2d.dgrad" : "matmul.dgrad"));
    const char* names[] = {"y", "dx", "dw", "dbias"};
    for (size_t k = 0; k < direct.size(); ++k) {
      INFO(names[k]);
      CHECK(direct[k] == patch_rows[k]);
    }
    // Rounded where they should be: a sum of exact fp32 products rounded once onto bf16.
    for (const std::vector<float>& values : direct) {
      const Tensor t = from_vector<float>(values, {int64_t(values.size())});
      CHECK(cast(t, bf16, Rounding{}, RandomStream{}).to_vector<float>() == values);
    }
  }
}

TEST_CASE("direct conv2d runs each pass of bf16 operands in bf16 where the CPU multiplies bf16") {
  // 2^-130 is a bf16 subnormal, which the bf16 instructions flush: a pass that ran in bf16
  // gives 0 where fp32 gives 2^-130. Two channels, so the primitives pick blocked layouts.
  const float tiny = std::ldexp(1.0f, -130);
  const float expected = native_bf16_gemm_cpu() ? 0.0f : tiny;
  const auto passes = [&](const Format& label) {
    const Tensor x =
        set_requires_grad(from_vector<float>({tiny, 1.0f}, {1, 2, 1, 1}).with_format(label));
    const Tensor w =
        set_requires_grad(from_vector<float>({1.0f, 0.0f}, {1, 2, 1, 1}).with_format(label));
    const Tensor y = conv2d(x, w, {}, 1, 0);
    backward(y, full({1, 1, 1, 1}, tiny).with_format(label));
    // y = tiny * 1; dx = dy * w = (tiny, 0); dw = dy * x = (tiny * tiny, tiny * 1).
    return std::vector<float>{y.item<float>(), grad(x).to_vector<float>()[0],
                              grad(w).to_vector<float>()[1]};
  };
  CHECK(passes(bf16) == std::vector<float>(3, expected));
  CHECK(passes(fp32) == std::vector<float>(3, tiny));  // an fp32 label: fp32 passes
  const GemmPath before = gemm_path();
  set_gemm_path(GemmPath::exact_fp32);
  CHECK(passes(bf16) == std::vector<float>(3, tiny));
  set_gemm_path(before);
}

TEST_CASE(
    "conv2d over quantized patch rows equals im2col and matmul, its input gradient unfolded") {
  // One node on the CPU (forward matmul's GEMM, backward the weight's gradient as matmul's and
  // the input's as a backward-data convolution of matmul's dgrad operands) against the same
  // graph written with im2col and matmul, under stochastic MXFP4 GEMM operands: the same random
  // streams in the same order, and with integer inputs exact sums, so the same bits.
  const Tensor x0 = integers({2, 8, 7, 7}, 21), w0 = integers({6, 8, 3, 3}, 22),
               b0 = integers({6}, 23), r = integers({2, 6, 7, 7}, 24);
  const auto run = [&](bool composed, std::vector<std::string>& ops) {
    PrecisionScope scope(parse_precision_stack("gemm=mxfp4:sr"));
    manual_seed(9);
    const Tensor x = set_requires_grad(detach(x0)), w = set_requires_grad(detach(w0)),
                 b = set_requires_grad(detach(b0));
    std::vector<std::vector<float>> out;
    ops = traced_ops([&] {
      Tensor y;
      if (composed) {
        const Tensor rows = im2col(x, 3, 3, 1, 1, 1).transpose(1, 2).reshape({2 * 49, 72});
        y = add(matmul(rows, w.reshape({6, 72}).t()).reshape({2, 7, 7, 6}).permute({0, 3, 1, 2}),
                b.reshape({6, 1, 1}));
      } else {
        y = conv2d(x, w, b, 1, 1);
      }
      backward(y, r);
      out = {y.to_vector<float>(), grad(x).to_vector<float>(), grad(w).to_vector<float>(),
             grad(b).to_vector<float>()};
    });
    return out;
  };
  std::vector<std::string> node_ops, composed_ops;
  const auto node = run(false, node_ops), composed = run(true, composed_ops);
  CHECK(contains(node_ops, "conv2d.dgrad"));  // the input gradient as a convolution
  CHECK(contains(composed_ops, "matmul.dgrad"));
  const char* names[] = {"y", "dx", "dw", "dbias"};
  for (size_t k = 0; k < node.size(); ++k) {
    INFO(names[k]);
    CHECK(node[k] == composed[k]);
  }
}

TEST_CASE("on the fp8-blocks path conv2d's input gradient stays the golden model's GEMM") {
  const GemmPath before = gemm_path();
  const auto dgrad_ops = [](GemmPath path) {
    set_gemm_path(path);
    PrecisionScope scope(parse_precision_stack("gemm=mxfp8"));
    const Tensor x = set_requires_grad(integers({1, 32, 4, 4}, 31)),
                 w = set_requires_grad(integers({32, 32, 1, 1}, 32));
    return traced_ops([&] { backward(sum(conv2d(x, w))); });
  };
  CHECK(contains(dgrad_ops(GemmPath::automatic), "conv2d.dgrad"));
  const std::vector<std::string> fp8 = dgrad_ops(GemmPath::fp8_blocks);
  CHECK(contains(fp8, "matmul.dgrad"));
  CHECK(!contains(fp8, "conv2d.dgrad"));
  set_gemm_path(before);
}
