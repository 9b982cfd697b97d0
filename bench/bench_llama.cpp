// Training-step time of the tiny LLaMA (vocab 256, dim 256, 4 layers, 4 heads, SwiGLU 688,
// RMSNorm, RoPE, causal attention, untied head; batch 16 x 128 random tokens by default; next-token
// cross entropy; AdamW lr 3e-4, wd 0.1) — the model ../shared/peers/torch_bench.py times in PyTorch
// — under one or more precision stacks, interleaved step by step in one run, each median with
// its ratio to the first stack's. Reports median ms/step, tokens/s and peak resident memory.
// Usage: bench_llama [--steps N] [--warmup N] [--stack SPEC[;SPEC...]] [--device D] [--batch B]
//                    [--seq T] [--gemm auto|exact-fp32|fp8-blocks]
//   e.g. bench_llama --stack 'fp32;bf16;mxfp4'   (each stack's step time / the fp32 step's)
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "autograd/autograd.h"
#include "bench/bench_support.h"
#include "examples/models/llama.h"
#include "ops/ops.h"
#include "optim/optimizer.h"
#include "tensor/precision_stack.h"
#include "tensor/random.h"

using namespace lattice;

int main(int argc, char** argv) {
  const char* program = "bench_llama";
  const std::optional<bench::StepFlags> flags = bench::parse_step_flags(
      argc, argv, program, 10, 2, {{"batch", "16"}, {"seq", "128"}}, /*several_stacks=*/true);
  if (!flags) return 2;
  const std::optional<int64_t> batch_flag = bench::integer_flag(flags->all, "batch", program, 1);
  const std::optional<int64_t> seq_flag = bench::integer_flag(flags->all, "seq", program, 1);
  if (!batch_flag || !seq_flag) return 2;
  const int64_t batch = *batch_flag, length = *seq_flag, vocab = 256;
  const Tensor tokens =
      clamp(scale(uniform({batch, length + 1}, 0.0, 1.0, RandomStream{.seed = 1}), vocab), 0,
            vocab - 1)
          .to(DType::int64);
  const Tensor input = tokens.narrow(1, 0, length).contiguous().to(flags->device);
  const Tensor target = tokens.narrow(1, 1, length).reshape({-1}).to(flags->device);
  std::vector<std::unique_ptr<models::Llama>> llamas;
  std::vector<std::unique_ptr<optim::AdamW>> optimizers;
  for (const PrecisionStack& stack : flags->stacks) {
    manual_seed(0);
    llamas.push_back(std::make_unique<models::Llama>(models::LlamaConfig{}));
    llamas.back()->to(flags->device);
    optimizers.push_back(std::make_unique<optim::AdamW>(
        optim::one_group(llamas.back()->named_parameters(), 3e-4, 0.1), optim::AdamOptions{},
        stack));
  }
  std::vector<float> losses(flags->stacks.size());
  const std::vector<std::vector<double>> times =
      bench::time_interleaved_steps(flags->stacks, flags->warmup, flags->steps, [&](size_t i) {
        llamas[i]->zero_grad();
        const Tensor loss = cross_entropy((*llamas[i])(input).reshape({-1, vocab}), target);
        backward(loss);
        optimizers[i]->step();
        losses[i] = loss.item<float>();
      });
  for (size_t i = 0; i < times.size(); ++i) {
    const double median = bench::median(times[i]);
    std::printf(
        "llama d256 L4 H4 b%lldx%lld adamw, %lld params, stack %s, %s: median %.1f ms/step (min "
        "%.1f, max %.1f) over %lld steps, %.0f tokens/s, %.2fx the first stack, final loss "
        "%.4f\n",
        (long long)batch, (long long)length, (long long)llamas[i]->parameter_count(),
        to_string(flags->stacks[i]).c_str(), device_name(flags->device), median, times[i].front(),
        times[i].back(), (long long)flags->steps, double(batch * length) / (median / 1000.0),
        median / bench::median(times[0]), losses[i]);
  }
  std::printf("peak RSS %.1f MiB, GEMMs: %s\n", bench::peak_rss_mib(),
              describe_gemm_path(flags->device).c_str());
  return 0;
}
