// Training-step time of the tiny LLaMA (vocab 256, dim 256, 4 layers, 4 heads, SwiGLU 688,
// RMSNorm, RoPE, causal attention, untied head; batch 16 x 128 random tokens; next-token cross
// entropy; AdamW lr 3e-4, wd 0.1) — the model ../shared/peers/torch_bench.py times in PyTorch —
// with an optional precision stack. Reports median ms/step, tokens/s and peak resident memory.
// Usage: bench_llama [--steps N] [--warmup N] [--stack SPEC]
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "autograd/autograd.h"
#include "examples/models/llama.h"
#include "optim/optimizer.h"
#include "tensor/ops.h"
#include "tensor/precision_stack.h"
#include "tensor/random.h"

using namespace lattice;

int main(int argc, char** argv) {
  int steps = 10, warmup = 2;
  std::string spec = "fp32";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--steps")
      steps = std::atoi(argv[i + 1]);
    else if (flag == "--warmup")
      warmup = std::atoi(argv[i + 1]);
    else if (flag == "--stack")
      spec = argv[i + 1];
    else {
      std::fprintf(stderr, "bench_llama: unknown flag %s (known: --steps, --warmup, --stack)\n",
                   flag.c_str());
      return 2;
    }
  }
  PrecisionStack stack;
  try {
    stack = parse_precision_stack(spec);
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_llama: %s\n", e.what());
    return 2;
  }
  const int64_t batch = 16, length = 128, vocab = 256;
  manual_seed(0);
  models::Llama llama(models::LlamaConfig{});
  const Tensor tokens =
      clamp(scale(uniform({batch, length + 1}, 0.0, 1.0, RandomStream{.seed = 1}), vocab), 0,
            vocab - 1)
          .to(DType::int64);
  const Tensor input = tokens.narrow(1, 0, length).contiguous();
  const Tensor target = tokens.narrow(1, 1, length).reshape({-1});
  optim::AdamW adamw(optim::one_group(llama.named_parameters(), 3e-4, 0.1), {}, stack);

  PrecisionScope scope(stack);
  std::vector<double> times;
  float loss_value = 0.0f;
  for (int step = 0; step < warmup + steps; ++step) {
    const auto start = std::chrono::steady_clock::now();
    llama.zero_grad();
    const Tensor loss = cross_entropy(llama(input).reshape({-1, vocab}), target);
    backward(loss);
    adamw.step();
    loss_value = loss.item<float>();
    const std::chrono::duration<double, std::milli> elapsed =
        std::chrono::steady_clock::now() - start;
    if (step >= warmup) times.push_back(elapsed.count());
  }
  std::sort(times.begin(), times.end());
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const double median = times[times.size() / 2];
  std::printf(
      "llama d256 L4 H4 b%lldx%lld adamw, %lld params, stack %s: median %.1f ms/step (min %.1f, "
      "max %.1f) over %d steps, %.0f tokens/s, peak RSS %.1f MiB, final loss %.4f\n",
      (long long)batch, (long long)length, (long long)llama.parameter_count(),
      to_string(stack).c_str(), median, times.front(), times.back(), steps,
      double(batch * length) / (median / 1000.0), double(usage.ru_maxrss) / 1024.0, loss_value);
  return 0;
}
