// Forward-and-backward time of the transformer's non-GEMM ops at the 9m LLaMA's shapes (batch 16
// x 128 tokens): causal attention (4 heads of 64) as a layer without a probe runs it (the fused
// kernel, ops/attention_ops.h, under a stack that rounds nothing) and composed with its two
// batched GEMMs (what a probe or a quantizing stack gets), the head's cross entropy over 4096
// classes, and SwiGLU's gated product silu(a) * b over 768 channels. Each case reports its
// median ms per forward and backward.
// Usage: bench_ops [--steps N] [--warmup N] [--stack SPEC] [--device D]
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "autograd/autograd.h"
#include "bench/bench_support.h"
#include "nn/functional.h"
#include "ops/ops.h"
#include "tensor/precision_stack.h"
#include "tensor/tape.h"

using namespace lattice;

int main(int argc, char** argv) {
  const char* program = "bench_ops";
  const std::optional<bench::StepFlags> flags = bench::parse_step_flags(argc, argv, program, 20, 3);
  if (!flags) return 2;
  const Device device = flags->device;
  const int64_t batch = 16, heads = 4, tokens = 128, head_dim = 64, classes = 4096, hidden = 768;
  const auto leaf = [&](const Shape& shape, uint64_t seed) {
    return set_requires_grad(randn(shape, seed).to(device));
  };
  const Tensor q = leaf({batch, heads, tokens, head_dim}, 1),
               k = leaf({batch, heads, tokens, head_dim}, 2),
               v = leaf({batch, heads, tokens, head_dim}, 3);
  const Tensor logits = leaf({batch * tokens, classes}, 4);
  const Tensor targets =
      clamp(scale(uniform({batch * tokens}, 0.0, 1.0, RandomStream{.seed = 5}), classes), 0,
            classes - 1)
          .to(DType::int64)
          .to(device);
  const Tensor gate = leaf({batch * tokens, hidden}, 6), up = leaf({batch * tokens, hidden}, 7);

  struct Case {
    const char* name;
    std::function<Tensor()> loss;
  };
  const std::vector<Case> cases = {
      {"causal attention (16 x 4 heads, 128 x 64)",
       [&] {
         return sum(nn::scaled_dot_product_attention(q, k, v, true, 0.125, {}, {},
                                                     nn::AttentionOutputs::output_only)
                        .output);
       }},
      {"causal attention, composed (scores kept)",
       [&] { return sum(nn::scaled_dot_product_attention(q, k, v, true, 0.125).output); }},
      {"cross entropy (2048 x 4096)", [&] { return cross_entropy(logits, targets); }},
      {"silu(a) * b (2048 x 768)", [&] { return sum(silu(gate) * up); }},
  };
  PrecisionScope scope(flags->stack);
  std::printf("%s, stack %s: median ms per forward and backward over %lld steps\n",
              device_name(device), to_string(flags->stack).c_str(), (long long)flags->steps);
  for (const Case& c : cases) {
    const std::vector<double> times = bench::time_steps(flags->warmup, flags->steps, [&] {
      backward(c.loss());
      if (device == Device::cuda) cuda_synchronize();
    });
    std::printf("| %-44s | %8.2f |\n", c.name, bench::median(times));
  }
  return 0;
}
