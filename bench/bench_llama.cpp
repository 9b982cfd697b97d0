// Training-step time of the tiny LLaMA (vocab 256, dim 256, 4 layers, 4 heads, SwiGLU 688,
// RMSNorm, RoPE, causal attention, untied head; batch 16 x 128 random tokens by default; next-token
// cross entropy; AdamW lr 3e-4, wd 0.1) — the model ../shared/peers/torch_bench.py times in PyTorch
// — with an optional precision stack. Reports median ms/step, tokens/s and peak resident memory.
// Usage: bench_llama [--steps N] [--warmup N] [--stack SPEC] [--device D] [--batch B] [--seq T]
//                    [--gemm auto|exact-fp32]
#include <cstdio>
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
  const std::optional<bench::StepFlags> flags =
      bench::parse_step_flags(argc, argv, program, 10, 2, {{"batch", "16"}, {"seq", "128"}});
  if (!flags) return 2;
  const std::optional<int64_t> batch_flag = bench::integer_flag(flags->all, "batch", program, 1);
  const std::optional<int64_t> seq_flag = bench::integer_flag(flags->all, "seq", program, 1);
  if (!batch_flag || !seq_flag) return 2;
  const PrecisionStack& stack = flags->stack;
  const int64_t batch = *batch_flag, length = *seq_flag, vocab = 256;
  manual_seed(0);
  models::Llama llama(models::LlamaConfig{});
  llama.to(flags->device);
  const Tensor tokens =
      clamp(scale(uniform({batch, length + 1}, 0.0, 1.0, RandomStream{.seed = 1}), vocab), 0,
            vocab - 1)
          .to(DType::int64);
  const Tensor input = tokens.narrow(1, 0, length).contiguous().to(flags->device);
  const Tensor target = tokens.narrow(1, 1, length).reshape({-1}).to(flags->device);
  optim::AdamW adamw(optim::one_group(llama.named_parameters(), 3e-4, 0.1), {}, stack);

  PrecisionScope scope(stack);
  float loss_value = 0.0f;
  const std::vector<double> times = bench::time_steps(flags->warmup, flags->steps, [&] {
    llama.zero_grad();
    const Tensor loss = cross_entropy(llama(input).reshape({-1, vocab}), target);
    backward(loss);
    adamw.step();
    loss_value = loss.item<float>();
  });
  const double median = bench::median(times);
  std::printf(
      "llama d256 L4 H4 b%lldx%lld adamw, %lld params, stack %s, %s: median %.1f ms/step (min "
      "%.1f, "
      "max %.1f) over %lld steps, %.0f tokens/s, peak RSS %.1f MiB, final loss %.4f, GEMMs: %s\n",
      (long long)batch, (long long)length, (long long)llama.parameter_count(),
      to_string(stack).c_str(), device_name(flags->device), median, times.front(), times.back(),
      (long long)flags->steps, double(batch * length) / (median / 1000.0), bench::peak_rss_mib(),
      loss_value, describe_gemm_path().c_str());
  return 0;
}
