// Training-step time of an MLP 784-H-H-10 (ReLU, batch 512, cross entropy, Adam 1e-3) on a
// fixed random batch under one or more precision stacks, interleaved in one run, with each
// stack's median as a ratio to the first's. H = 256 is the model ../shared/peers/torch_bench.py
// times in PyTorch; H = 512 is the mnist trainer's MLP. Reports peak resident memory too.
// Usage: bench_mlp [--steps N] [--warmup N] [--hidden H] [--stacks SPEC;SPEC;...] [--device D]
//                  [--gemm auto|exact-fp32|fp8-blocks]
//   e.g. bench_mlp --hidden 512 --stacks 'fp32;mxfp4'   (MXFP4 step time / fp32 step time)
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "autograd/autograd.h"
#include "bench/bench_support.h"
#include "core/text.h"
#include "nn/layers.h"
#include "ops/ops.h"
#include "optim/optimizer.h"
#include "tensor/precision_stack.h"
#include "tensor/random.h"

using namespace lattice;

int main(int argc, char** argv) {
  const char* program = "bench_mlp";
  bench::Flags flags{{"steps", "20"},    {"warmup", "3"},   {"hidden", "256"},
                     {"stacks", "fp32"}, {"device", "cpu"}, {"gemm", "auto"}};
  if (!bench::parse_flags(argc, argv, program, flags) || !bench::apply_gemm_flag(flags, program))
    return 2;
  const std::optional<int64_t> steps = bench::integer_flag(flags, "steps", program, 1);
  const std::optional<int64_t> warmup = bench::integer_flag(flags, "warmup", program, 0);
  const std::optional<int64_t> hidden = bench::integer_flag(flags, "hidden", program, 1);
  const std::optional<Device> device = bench::device_flag(flags, program);
  if (!steps || !warmup || !hidden || !device) return 2;
  const int64_t batch = 512;
  const Tensor x = randn({batch, 784}, RandomStream{.seed = 9}, DType::float32, *device);
  std::vector<int64_t> labels;
  for (int64_t i = 0; i < batch; ++i) labels.push_back(i % 10);
  const Tensor targets = from_vector<int64_t>(labels, {batch}).to(*device);

  std::vector<PrecisionStack> stacks;
  std::vector<std::unique_ptr<nn::Sequential>> mlps;
  std::vector<std::unique_ptr<optim::Adam>> optimizers;
  try {
    for (const std::string& spec : split(flags["stacks"], ';')) {
      stacks.push_back(parse_precision_stack(spec));
      manual_seed(0);
      mlps.push_back(std::make_unique<nn::Sequential>(std::vector<std::shared_ptr<nn::Module>>{
          std::make_shared<nn::Linear>(784, *hidden),
          std::make_shared<nn::Activation>(nn::Activation::Kind::relu),
          std::make_shared<nn::Linear>(*hidden, *hidden),
          std::make_shared<nn::Activation>(nn::Activation::Kind::relu),
          std::make_shared<nn::Linear>(*hidden, 10)}));
      mlps.back()->to(*device);
      optimizers.push_back(
          std::make_unique<optim::Adam>(optim::one_group(mlps.back()->named_parameters(), 1e-3),
                                        optim::AdamOptions{}, stacks.back()));
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "%s: %s\n", program, e.what());
    return 2;
  }

  std::vector<float> losses(stacks.size());
  const std::vector<std::vector<double>> times =
      bench::time_interleaved_steps(stacks, *warmup, *steps, [&](size_t i) {
        optimizers[i]->zero_grad();
        const Tensor loss = cross_entropy((*mlps[i])(x), targets);
        backward(loss);
        optimizers[i]->step();
        losses[i] = loss.item<float>();
      });
  for (size_t i = 0; i < times.size(); ++i) {
    const double median = bench::median(times[i]);
    std::printf(
        "mlp 784-%lld-%lld-10 b%lld adam, stack %s, %s: median %.2f ms/step (min %.2f, max %.2f) "
        "over %lld steps, %.0f samples/s, %.2fx the first stack, final loss %.4f\n",
        (long long)*hidden, (long long)*hidden, (long long)batch, to_string(stacks[i]).c_str(),
        device_name(*device), median, times[i].front(), times[i].back(), (long long)*steps,
        double(batch) / (median / 1000.0), median / bench::median(times[0]), losses[i]);
  }
  std::printf("peak RSS %.1f MiB, GEMMs: %s\n", bench::peak_rss_mib(),
              describe_gemm_path(*device).c_str());
  return 0;
}
