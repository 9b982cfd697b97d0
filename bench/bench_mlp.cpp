// Training-step time of the MLP 784-256-256-10 (ReLU, batch 512, cross entropy, Adam 1e-3) on
// a fixed random batch — the model ../shared/peers/torch_bench.py times in PyTorch — with an
// optional precision stack. Reports median ms/step and peak resident memory.
// Usage: bench_mlp [--steps N] [--warmup N] [--stack SPEC]
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "autograd/autograd.h"
#include "tensor/ops.h"
#include "tensor/precision_stack.h"

using namespace lattice;

namespace {

struct Adam {  // the textbook update, kept here until the optimizers land in optim/
  std::vector<Tensor> parameters, m, v;
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  int step = 0;

  explicit Adam(std::vector<Tensor> p) : parameters(std::move(p)) {
    for (const Tensor& t : parameters) m.push_back(zeros(t.shape())), v.push_back(zeros(t.shape()));
  }
  void update() {
    NoGradGuard no_grad;
    ++step;
    const double correction1 = 1.0 - std::pow(beta1, step),
                 correction2 = 1.0 - std::pow(beta2, step);
    for (size_t i = 0; i < parameters.size(); ++i) {
      const Tensor g = grad(parameters[i]);
      m[i].copy_(add(scale(m[i], beta1), scale(g, 1.0 - beta1)));
      v[i].copy_(add(scale(v[i], beta2), scale(mul(g, g), 1.0 - beta2)));
      const Tensor denominator = add(sqrt(scale(v[i], 1.0 / correction2)), full({}, eps));
      parameters[i].copy_(sub(parameters[i], div(scale(m[i], lr / correction1), denominator)));
    }
  }
};

}  // namespace

int main(int argc, char** argv) {
  int steps = 20, warmup = 3;
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
      std::fprintf(stderr, "bench_mlp: unknown flag %s (known: --steps, --warmup, --stack)\n",
                   flag.c_str());
      return 2;
    }
  }
  PrecisionStack stack;
  try {
    stack = parse_precision_stack(spec);
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_mlp: %s\n", e.what());
    return 2;
  }
  const int64_t batch = 512;
  const auto layer = [](int64_t in, int64_t out, uint64_t seed) {
    const double bound = 1.0 / std::sqrt(double(in));  // PyTorch's nn.Linear init range
    return std::vector<Tensor>{
        set_requires_grad(uniform({in, out}, -bound, bound, RandomStream{.seed = seed})),
        set_requires_grad(uniform({out}, -bound, bound, RandomStream{.seed = seed + 100}))};
  };
  std::vector<Tensor> parameters;
  for (const auto& [in, out, seed] : {std::tuple{784, 256, 1}, {256, 256, 2}, {256, 10, 3}})
    for (const Tensor& t : layer(in, out, uint64_t(seed))) parameters.push_back(t);
  const Tensor x = randn({batch, 784}, RandomStream{.seed = 9});
  std::vector<int64_t> labels;
  for (int64_t i = 0; i < batch; ++i) labels.push_back(i % 10);
  const Tensor targets = from_vector<int64_t>(labels, {batch});
  Adam adam(parameters);

  PrecisionScope scope(stack);
  std::vector<double> times;
  float loss_value = 0.0f;
  for (int step = 0; step < warmup + steps; ++step) {
    const auto start = std::chrono::steady_clock::now();
    for (const Tensor& p : parameters) zero_grad(p);
    Tensor h = relu(add(matmul(x, parameters[0]), parameters[1]));
    h = relu(add(matmul(h, parameters[2]), parameters[3]));
    const Tensor loss = cross_entropy(add(matmul(h, parameters[4]), parameters[5]), targets);
    backward(loss);
    adam.update();
    loss_value = loss.item<float>();
    const std::chrono::duration<double, std::milli> elapsed =
        std::chrono::steady_clock::now() - start;
    if (step >= warmup) times.push_back(elapsed.count());
  }
  std::sort(times.begin(), times.end());
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  std::printf(
      "mlp 784-256-256-10 b%lld adam, stack %s: median %.2f ms/step (min %.2f, max %.2f) "
      "over %d steps, %.0f samples/s, peak RSS %.1f MiB, final loss %.4f\n",
      (long long)batch, to_string(stack).c_str(), times[times.size() / 2], times.front(),
      times.back(), steps, double(batch) / (times[times.size() / 2] / 1000.0),
      double(usage.ru_maxrss) / 1024.0, loss_value);
  return 0;
}
