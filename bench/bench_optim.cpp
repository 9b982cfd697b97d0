// Optimizer step time on the parameter shapes of a 4-layer LLaMA (dim 512, FFN 1376, vocab
// 8192; ~21M parameters): the fused optim::AdamW and StableSpam next to a textbook AdamW written
// as a chain of tensor ops, measured in the same run. Reports median ms/step and GB/s.
// Usage: bench_optim [--steps N] [--stack SPEC]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "autograd/autograd.h"
#include "ops/ops.h"
#include "optim/optimizer.h"
#include "tensor/precision_stack.h"

using namespace lattice;
using namespace lattice::optim;

namespace {

NamedTensors llama_parameters() {
  const int64_t dim = 512, ffn = 1376, vocab = 8192, layers = 4;
  NamedTensors params;
  auto add_param = [&](const std::string& name, Shape shape) {
    Tensor t = randn(shape, uint64_t(params.size() + 1));
    set_requires_grad(t);
    t.impl()->autograd->grad = randn(shape, uint64_t(1000 + params.size()));
    params.emplace_back(name, t);
  };
  add_param("embed", {vocab, dim});
  for (int64_t l = 0; l < layers; ++l) {
    const std::string p = concat("layers.", l, ".");
    for (const char* w : {"wq", "wk", "wv", "wo"}) add_param(p + w, {dim, dim});
    add_param(p + "w1", {ffn, dim});
    add_param(p + "w3", {ffn, dim});
    add_param(p + "w2", {dim, ffn});
    add_param(p + "attn_norm", {dim});
    add_param(p + "ffn_norm", {dim});
  }
  add_param("norm", {dim});
  add_param("lm_head", {vocab, dim});
  return params;
}

double median_ms(int steps, const std::function<void()>& step) {
  step();  // first step allocates state
  std::vector<double> times;
  for (int i = 0; i < steps; ++i) {
    const auto start = std::chrono::steady_clock::now();
    step();
    times.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
            .count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int steps = 20;
  std::string stack_spec = "fp32";
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--steps") == 0) steps = std::atoi(argv[i + 1]);
    if (std::strcmp(argv[i], "--stack") == 0) stack_spec = argv[i + 1];
  }
  const PrecisionStack stack = parse_precision_stack(stack_spec);
  const NamedTensors params = llama_parameters();
  int64_t numel = 0;
  for (const auto& [name, t] : params) numel += t.numel();
  // AdamW reads p, g, m, v and writes p, m, v: 28 bytes per parameter.
  const double gigabytes = double(numel) * 28 / 1e9;
  std::printf("parameters: %.2fM, stack %s\n", double(numel) / 1e6, stack_spec.c_str());

  AdamW adamw(one_group(params, 1e-4, 0.1), AdamOptions{}, stack);
  const double fused = median_ms(steps, [&] { adamw.step(); });
  std::printf("optim::AdamW (fused)      %8.2f ms/step  %6.1f GB/s\n", fused,
              gigabytes / fused * 1e3);

  StableSpam spam(one_group(params, 1e-4, 0.1), StableSpamOptions{}, stack);
  const double spam_ms = median_ms(steps, [&] { spam.step(); });
  std::printf("optim::StableSpam         %8.2f ms/step\n", spam_ms);

  // Baseline: the same AdamW as a chain of tensor ops (one pass and one temporary per op).
  std::vector<Tensor> m, v;
  for (const auto& [name, t] : params) m.push_back(zeros(t.shape())), v.push_back(zeros(t.shape()));
  int t_step = 0;
  const double chained = median_ms(steps, [&] {
    NoGradGuard no_grad;
    ++t_step;
    const double c1 = 1 - std::pow(0.9, t_step), c2 = 1 - std::pow(0.999, t_step);
    for (size_t i = 0; i < params.size(); ++i) {
      const Tensor& p = params[i].second;
      const Tensor g = grad(p);
      m[i].copy_(add(scale(m[i], 0.9), scale(g, 0.1)));
      v[i].copy_(add(scale(v[i], 0.999), scale(mul(g, g), 0.001)));
      const Tensor update =
          div(scale(m[i], 1e-4 / c1), add(sqrt(scale(v[i], 1 / c2)), full({}, 1e-8)));
      p.copy_(sub(scale(p, 1 - 1e-5), update));
    }
  });
  std::printf("AdamW as tensor ops       %8.2f ms/step  (fused is %.1fx faster)\n", chained,
              chained / fused);
  return 0;
}
