// Tensors on the GPU: storage from the caching allocator, copies between devices (strided and
// converting ones too), reads of device values, modules moved with to(Device), gradients that
// flow back across a device copy, and the one-line errors without a GPU or across devices;
// uploads that do not wait for the GPU, indices checked on it (their failure thrown at the next
// read back), cross entropy with its targets there, and quantized GEMMs (MX and NVFP4 operands
// quantized on the device into bf16 bits). Without a CUDA device only the error cases run.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "autograd/autograd.h"
#include "kernels/device_memory.h"
#include "nn/layers.h"
#include "ops/ops.h"
#include "ops/quantized_gemm.h"
#include "optim/optimizer.h"
#include "tensor/precision_stack.h"
#include "tensor/random.h"

using namespace lattice;

namespace {

bool same_floats(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

}  // namespace

TEST_CASE("without a CUDA device, cuda tensors fail with one line and cpu work goes on") {
  if (cuda_available()) return;
  CHECK_THROWS_WITH_AS(zeros({2}, DType::float32, Device::cuda), doctest::Contains("CUDA"), Error);
  CHECK_THROWS_WITH_AS(ones({3}).to(Device::cuda), doctest::Contains("CUDA"), Error);
  CHECK(ones({3}).to(Device::cpu).to_vector<float>() == std::vector<float>{1, 1, 1});
  nn::Linear layer(3, 2);
  CHECK_THROWS_AS(layer.to(Device::cuda), Error);
  CHECK(layer.weight.device() == Device::cpu);  // nothing moved, nothing lost
  MESSAGE("no CUDA device here: the GPU cases of this file skip");
}

TEST_CASE("tensors go to the GPU and back with the same bits, views and conversions included") {
  if (!cuda_available()) return;
  const Tensor x = uniform({5, 7}, -2.0, 2.0, RandomStream{.seed = 1});
  const Tensor on_gpu = x.to(Device::cuda);
  CHECK(on_gpu.device() == Device::cuda);
  CHECK(same_floats(on_gpu.to(Device::cpu).to_vector<float>(), x.to_vector<float>()));
  CHECK(same_floats(on_gpu.to_vector<float>(), x.to_vector<float>()));  // to_vector reads back
  // A transposed (strided) view copied across, and a converting copy on the device.
  CHECK(same_floats(x.t().to(Device::cuda).to_vector<float>(), x.t().to_vector<float>()));
  CHECK(on_gpu.t().contiguous().to(DType::float64).to_vector<double>() ==
        x.t().contiguous().to(DType::float64).to_vector<double>());
  // copy_ from a CPU broadcast source into a GPU slice.
  const Tensor target = zeros({4, 3}, DType::float32, Device::cuda);
  target.slice(0, 1, 3).copy_(from_vector<float>({1, 2, 3}));
  CHECK(target.to_vector<float>() == std::vector<float>{0, 0, 0, 1, 2, 3, 1, 2, 3, 0, 0, 0});
  CHECK(on_gpu.select(0, 2).select(0, 3).item<float>() ==
        x.select(0, 2).select(0, 3).item<float>());
  CHECK(to_string(ones({2}, DType::float32, Device::cuda)).find("device=cuda") !=
        std::string::npos);
  // int64 and bool round trips (index and mask dtypes).
  const Tensor labels = from_vector<int64_t>({3, -1, 7});
  CHECK(labels.to(Device::cuda).to_vector<int64_t>() == labels.to_vector<int64_t>());
  CHECK(from_vector<bool>({true, false}).to(Device::cuda).to_vector<bool>() ==
        std::vector<bool>{true, false});
}

TEST_CASE("the CUDA allocator reuses freed blocks and counts them") {
  if (!cuda_available()) return;
  const CudaMemoryStats before = cuda_memory_stats();
  { const Tensor a = empty({1000}, DType::float32, Device::cuda); }
  { const Tensor b = empty({1000}, DType::float32, Device::cuda); }
  const CudaMemoryStats after = cuda_memory_stats();
  CHECK(after.allocations == before.allocations + 2);
  CHECK(after.cache_hits >= before.cache_hits + 1);
  CHECK(after.allocated_bytes == before.allocated_bytes);
  CHECK(after.reserved_bytes >= after.allocated_bytes);
  CHECK(after.peak_allocated_bytes >= 4000);
}

TEST_CASE("ops refuse operands on different devices with one line") {
  if (!cuda_available()) return;
  CHECK_THROWS_WITH_AS(add(ones({2}), ones({2}).to(Device::cuda)),
                       doctest::Contains("[add] operands are on cpu and cuda"), Error);
  CHECK_THROWS_WITH_AS(matmul(ones({2, 2}).to(Device::cuda), ones({2, 2})),
                       doctest::Contains("[matmul] operands are on cuda and cpu"), Error);
}

TEST_CASE("a gradient flows back across a device copy to the CPU leaf") {
  if (!cuda_available()) return;
  const Tensor x = set_requires_grad(from_vector<float>({1, 2, 3}));
  const Tensor y = x.to(Device::cuda);
  backward(sum(mul(y, y)));
  const Tensor g = grad(x);
  REQUIRE(g.defined());
  CHECK(g.device() == Device::cpu);
  CHECK(g.to_vector<float>() == std::vector<float>{2, 4, 6});
}

TEST_CASE("a module moved to the GPU trains there like on the CPU") {
  if (!cuda_available()) return;
  // Two identical MLPs, one moved; five Adam steps on the same batch.
  const auto make = [] {
    manual_seed(5);
    return std::make_shared<nn::Sequential>(std::vector<std::shared_ptr<nn::Module>>{
        std::make_shared<nn::Linear>(13, 17),
        std::make_shared<nn::Activation>(nn::Activation::Kind::relu),
        std::make_shared<nn::Linear>(17, 5)});
  };
  const auto cpu_model = make(), gpu_model = make();
  const Tensor handle = gpu_model->parameters().front();
  gpu_model->to(Device::cuda);
  CHECK(handle.device() == Device::cuda);  // handles held before the move see it
  const Tensor input = uniform({9, 13}, -1.0, 1.0, RandomStream{.seed = 2});
  const Tensor labels = from_vector<int64_t>({0, 1, 2, 3, 4, 0, 1, 2, 3});
  optim::Adam cpu_adam(optim::one_group(cpu_model->named_parameters(), 1e-2));
  optim::Adam gpu_adam(optim::one_group(gpu_model->named_parameters(), 1e-2));
  for (int step = 0; step < 5; ++step) {
    CAPTURE(step);
    cpu_adam.zero_grad();
    gpu_adam.zero_grad();
    const Tensor cpu_loss = cross_entropy((*cpu_model)(input), labels);
    const Tensor gpu_loss =
        cross_entropy((*gpu_model)(input.to(Device::cuda)), labels.to(Device::cuda));
    CHECK(gpu_loss.device() == Device::cuda);
    CHECK(gpu_loss.item<double>() == doctest::Approx(cpu_loss.item<double>()).epsilon(1e-5));
    backward(cpu_loss);
    backward(gpu_loss);
    cpu_adam.step();
    gpu_adam.step();
  }
  const std::vector<Tensor> cpu_params = cpu_model->parameters(),
                            gpu_params = gpu_model->parameters();
  for (size_t i = 0; i < cpu_params.size(); ++i) {
    const std::vector<float> a = cpu_params[i].to_vector<float>(),
                             b = gpu_params[i].to_vector<float>();
    for (size_t k = 0; k < a.size(); ++k) CHECK(b[k] == doctest::Approx(a[k]).epsilon(1e-4));
  }
}

TEST_CASE("quantized GEMMs on the GPU agree with the CPU's, forward and backward") {
  if (!cuda_available()) return;
  // MX and NVFP4 operands quantized on the device into bf16 bits (a Linear layer's transposed
  // weight, a weight broadcast over a batch, a batched product) and, through a sliced operand,
  // into float32 first; stochastic in the backward GEMMs. The quantizers give the CPU's bits, so
  // only the GEMMs' summation order differs.
  const std::vector<Tensor> leaves{
      randn({40, 96}, RandomStream{.seed = 51}),   randn({64, 24}, RandomStream{.seed = 52}),
      randn({33, 96}, RandomStream{.seed = 53}),   randn({2, 5, 64}, RandomStream{.seed = 54}),
      randn({3, 8, 64}, RandomStream{.seed = 55}), randn({3, 64, 16}, RandomStream{.seed = 56}),
      randn({33, 128}, RandomStream{.seed = 57})};
  const auto run = [&](const std::string& stack, Device device) {
    std::vector<Tensor> l;
    for (const Tensor& leaf : leaves) l.push_back(set_requires_grad(leaf.to(device)));
    manual_seed(8);
    std::vector<std::vector<float>> results;
    {
      PrecisionScope scope(parse_precision_stack(stack));
      for (const Tensor& y : {matmul(l[2], l[0].t()), matmul(l[3], l[1]), matmul(l[4], l[5]),
                              matmul(l[6].slice(1, 0, 96), l[0].t())}) {
        CHECK(y.device() == device);
        // Output gradients that are the same on both devices, so are their quantized values.
        backward(sum(mul(y, uniform(y.shape(), 0.5, 1.5, RandomStream{.seed = 7}).to(device))));
        results.push_back(y.to(Device::cpu).to_vector<float>());
      }
    }
    for (const Tensor& leaf : l) results.push_back(grad(leaf).to(Device::cpu).to_vector<float>());
    return results;
  };
  for (const std::string stack :
       {"gemm=mxfp4,gemm.bwd=mxfp4:sr", "gemm=nvfp4,gemm.bwd=nvfp4:sr", "gemm=mxfp8"}) {
    CAPTURE(stack);
    const auto cpu = run(stack, Device::cpu), gpu = run(stack, Device::cuda);
    REQUIRE(cpu.size() == gpu.size());
    for (size_t i = 0; i < cpu.size(); ++i) {
      CAPTURE(i);
      REQUIRE(cpu[i].size() == gpu[i].size());
      float largest = 0.0f, difference = 0.0f;  // of the tensor: sums cancel element by element
      for (size_t j = 0; j < cpu[i].size(); ++j) {
        largest = std::max(largest, std::fabs(cpu[i][j]));
        difference = std::max(difference, std::fabs(gpu[i][j] - cpu[i][j]));
      }
      CHECK(difference <= 1e-5f * largest);
    }
  }
}

TEST_CASE("uploads do not wait for the GPU: the source is reusable at once, the order is kept") {
  if (!cuda_available()) return;
  // Each upload's host buffer is overwritten right after the call, while the kernels queued
  // before it may still run; every device tensor must hold what the buffer held at its call.
  std::vector<float> buffer(1000);
  std::vector<Tensor> uploaded;
  Tensor running = zeros({1000}, DType::float32, Device::cuda);
  for (int k = 0; k < 40; ++k) {
    for (size_t i = 0; i < buffer.size(); ++i) buffer[i] = float(k * 1000 + int(i));
    uploaded.push_back(from_vector<float>(buffer, {1000}).to(Device::cuda));
    running = add(running, uploaded.back());  // a kernel queued between uploads
    std::fill(buffer.begin(), buffer.end(), -1.0f);
  }
  std::vector<float> expected_sum(1000, 0.0f);
  for (int k = 0; k < 40; ++k) {
    const std::vector<float> values = uploaded[size_t(k)].to_vector<float>();
    for (size_t i = 0; i < values.size(); ++i) {
      REQUIRE(values[i] == float(k * 1000 + int(i)));
      expected_sum[i] += values[i];
    }
  }
  CHECK(same_floats(running.to_vector<float>(), expected_sum));
}

TEST_CASE("an index out of range on the GPU is thrown at the next read back, then forgotten") {
  if (!cuda_available()) return;
  const Tensor x = arange(0, 6).reshape({2, 3}).to(Device::cuda);
  const Tensor bad = from_vector<int64_t>({0, 7, 1, 2}, {2, 2}).to(Device::cuda);
  // Queued, the gather does not wait for the check; in debug-sync mode (LATTICE_CUDA_SYNC=1,
  // every launch waits) the failure comes at its launch instead.
  if (!cuda_debug_sync()) {
    const Tensor picked = gather(x, 1, bad);
    CHECK_THROWS_WITH_AS(picked.to_vector<float>(),
                         doctest::Contains("[gather] index 7 at position 1 is out of range [0, 3)"),
                         Error);
  } else {
    CHECK_THROWS_WITH_AS(gather(x, 1, bad),
                         doctest::Contains("[gather] index 7 at position 1 is out of range [0, 3)"),
                         Error);
  }
  const Tensor good = from_vector<int64_t>({0, 2, 1, 1}, {2, 2}).to(Device::cuda);
  CHECK(gather(x, 1, good).to_vector<float>() == std::vector<float>{0, 2, 4, 4});
  // Host indices are checked at once, wherever the data lives.
  CHECK_THROWS_WITH_AS(gather(x, 1, from_vector<int64_t>({0, 3, 1, 1}, {2, 2})),
                       doctest::Contains("[gather] index 3 at position 1 is out of range"), Error);
}

TEST_CASE("cross entropy with targets on the GPU: ignored rows, weights, smoothing as on the CPU") {
  if (!cuda_available()) return;
  const Tensor logits = randn({6, 4}, RandomStream{.seed = 5});
  const Tensor targets = from_vector<int64_t>({1, -100, 3, 0, -100, 2}, {6});
  const Tensor weights = from_vector<float>({0.5f, 2.0f, 1.0f, 0.25f}, {4});
  for (Reduction reduction : {Reduction::mean, Reduction::sum, Reduction::none})
    for (bool weighted : {false, true})
      for (double smoothing : {0.0, 0.1}) {
        CAPTURE(int(reduction));
        CAPTURE(weighted);
        CAPTURE(smoothing);
        const Tensor cpu_logits = set_requires_grad(detach(logits));
        const Tensor gpu_logits = set_requires_grad(detach(logits).to(Device::cuda));
        const Tensor cpu = cross_entropy(cpu_logits, targets, -100, reduction,
                                         weighted ? weights : Tensor{}, smoothing);
        const Tensor gpu = cross_entropy(gpu_logits, targets.to(Device::cuda), -100, reduction,
                                         weighted ? weights.to(Device::cuda) : Tensor{}, smoothing);
        const std::vector<float> a = cpu.to_vector<float>(), b = gpu.to_vector<float>();
        REQUIRE(a.size() == b.size());
        for (size_t i = 0; i < a.size(); ++i) CHECK(b[i] == doctest::Approx(a[i]).epsilon(1e-6));
        backward(sum(cpu));
        backward(sum(gpu));
        const std::vector<float> ga = grad(cpu_logits).to_vector<float>(),
                                 gb = grad(gpu_logits).to_vector<float>();
        for (size_t i = 0; i < ga.size(); ++i) CHECK(gb[i] == doctest::Approx(ga[i]).epsilon(1e-6));
      }
  // A target outside [0, C) that is not ignore_index: thrown at the loss's read back (or at
  // the check's launch in debug-sync mode).
  const auto bad_loss = [&] {
    return cross_entropy(logits.to(Device::cuda),
                         from_vector<int64_t>({1, 4, 0, 0, 0, 0}, {6}).to(Device::cuda))
        .item<float>();
  };
  CHECK_THROWS_WITH_AS(
      bad_loss(), doctest::Contains("[cross_entropy] index 4 at position 1 is out of range [0, 4)"),
      Error);
}
