// Training-step time of the tiny LLaMA (vocab 256, dim 256, 4 layers, 4 heads, SwiGLU 688,
// RMSNorm, RoPE, causal attention, untied head; batch 16 x 128 random tokens; next-token cross
// entropy; AdamW lr 3e-4, wd 0.1) — the model ../shared/peers/torch_bench.py times in PyTorch —
// with an optional precision stack. Reports median ms/step, tokens/s and peak resident memory.
// Usage: bench_llama [--steps N] [--warmup N] [--stack SPEC]
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "autograd/autograd.h"
#include "examples/models/llama.h"
#include "tensor/ops.h"
#include "tensor/precision_stack.h"
#include "tensor/random.h"

using namespace lattice;

namespace {

struct AdamW {  // PyTorch's AdamW update in one pass per parameter, until optim/ lands
  std::vector<Tensor> parameters, m, v;
  double lr = 3e-4, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.1;
  int step = 0;

  explicit AdamW(std::vector<Tensor> p) : parameters(std::move(p)) {
    for (const Tensor& t : parameters) m.push_back(zeros(t.shape())), v.push_back(zeros(t.shape()));
  }
  void update() {
    ++step;
    const double correction1 = 1.0 - std::pow(beta1, step),
                 correction2 = 1.0 - std::pow(beta2, step);
    for (size_t i = 0; i < parameters.size(); ++i) {
      const Tensor g = grad(parameters[i]).contiguous();
      float* p = parameters[i].data<float>();
      float *mi = m[i].data<float>(), *vi = v[i].data<float>();
      const float* gi = g.data<float>();
      const int64_t n = parameters[i].numel();
#pragma omp parallel for simd if (n > 65536)
      for (int64_t j = 0; j < n; ++j) {
        p[j] *= float(1.0 - lr * weight_decay);
        mi[j] = float(beta1) * mi[j] + float(1 - beta1) * gi[j];
        vi[j] = float(beta2) * vi[j] + float(1 - beta2) * gi[j] * gi[j];
        p[j] -=
            float(lr / correction1) * mi[j] / (std::sqrt(vi[j] / float(correction2)) + float(eps));
      }
    }
  }
};

}  // namespace

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
  AdamW adamw(llama.parameters());

  PrecisionScope scope(stack);
  std::vector<double> times;
  float loss_value = 0.0f;
  for (int step = 0; step < warmup + steps; ++step) {
    const auto start = std::chrono::steady_clock::now();
    llama.zero_grad();
    const Tensor loss = cross_entropy(llama(input).reshape({-1, vocab}), target);
    backward(loss);
    adamw.update();
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
