// Data-parallel building blocks in one process: the loader's skip() and shard, the fixed-order
// gradient sum (against the autograd engine's own accumulation and a hand-worked compression
// case) and the micro-batch random streams. tests/data_parallel_check.sh runs mpirun -np 2.
#include <doctest/doctest.h>

#include <set>
#include <vector>

#include "autograd/autograd.h"
#include "data/dataset.h"
#include "distributed/communicator.h"
#include "distributed/gradient_sum.h"
#include "tensor/precision_stack.h"

using namespace lattice;

namespace {

// 23 examples whose target is their index: a batch's targets name the samples it holds.
std::shared_ptr<data::TensorDataset> counting_dataset() {
  std::vector<float> inputs(23);
  std::vector<int64_t> targets(23);
  for (int64_t i = 0; i < 23; ++i) inputs[size_t(i)] = float(i), targets[size_t(i)] = i;
  return std::make_shared<data::TensorDataset>(from_vector(inputs, {23, 1}),
                                               from_vector(targets, {23}));
}

// A leaf holding `values`, with no gradient yet.
Tensor parameter(const std::vector<float>& values) {
  Tensor p = from_vector(values);
  set_requires_grad(p);
  return p;
}

}  // namespace

TEST_CASE("skip() passes batches unbuilt and ends epochs where next() does, with any shard") {
  for (const int prefetch : {0, 2}) {
    CAPTURE(prefetch);
    // 23 samples in batches of 4: 6 batches an epoch, the last one of 3.
    data::DataLoader reference(counting_dataset(), {.batch_size = 4, .seed = 5, .prefetch = 0});
    data::DataLoader sharded(counting_dataset(),
                             {.batch_size = 4, .seed = 5, .prefetch = prefetch});
    // Of every 4 batches this process trains on the second and third.
    sharded.set_shard({.period = 4, .first = 1, .count = 2});
    int64_t trained = 0;
    for (int64_t call = 0; call < 20; ++call) {
      const std::optional<data::Batch> expected = reference.next();
      if (call % 4 == 1 || call % 4 == 2) {
        const std::optional<data::Batch> batch = sharded.next();
        REQUIRE(batch.has_value() == expected.has_value());
        if (batch) {
          CHECK(batch->target.to_vector<int64_t>() == expected->target.to_vector<int64_t>());
          ++trained;
        }
      } else {
        CHECK(sharded.skip() == expected.has_value());
      }
      CHECK(sharded.position() == reference.position());
    }
    CHECK(trained > 0);
  }
  data::DataLoader loader(counting_dataset(), {.batch_size = 4});
  CHECK_THROWS_WITH_AS(loader.set_shard({.period = 2, .first = 1, .count = 2}),
                       doctest::Contains("[loader] shard (period 2, first 1, count 2)"), Error);
}

TEST_CASE("the ordered gradient sum is the engine's micro-batch accumulation, bit for bit") {
  const distributed::Communicator& world = distributed::Communicator::world();
  REQUIRE(world.size() == 1);
  // Magnitudes far apart, so that another summation order gives other bits.
  const std::vector<std::vector<float>> micro_batches = {
      {1.0f, 3e-8f, -2.5f}, {1e-8f, 1.0f, 7.25f}, {3e-8f, -1.0f, 1e-7f}};
  Tensor summed = parameter({0, 0, 0}), accumulated = parameter({0, 0, 0});
  Tensor late = parameter({0}), unreached = parameter({0});
  distributed::OrderedGradientSum sum(world, {summed, late, unreached}, Quantizer{});
  for (size_t k = 0; k < micro_batches.size(); ++k) {
    backward(summed, from_vector(micro_batches[k]));
    backward(accumulated, from_vector(micro_batches[k]));  // the engine adds into grad()
    if (k == 2) backward(late, from_vector<float>({5.0f}));
    sum.take_micro_batch();
    CHECK_FALSE(grad(summed).defined());  // taken out of the parameter
  }
  sum.reduce();
  const std::vector<float> got = grad(summed).to_vector<float>();
  CHECK(got == grad(accumulated).to_vector<float>());
  for (size_t i = 0; i < 3; ++i)  // left to right in fp32
    CHECK(got[i] == (micro_batches[0][i] + micro_batches[1][i]) + micro_batches[2][i]);
  CHECK(grad(late).to_vector<float>() == std::vector<float>{5.0f});
  CHECK_FALSE(grad(unreached).defined());
}

TEST_CASE("gradient compression rounds each micro-batch's gradient before the fp32 sum") {
  const distributed::Communicator& world = distributed::Communicator::world();
  // 1 + 2^-10 is below half a bf16 ulp (2^-7) above 1: each micro-batch rounds to 1, so three
  // sum to 3, where the uncompressed sum is 3 + 3 x 2^-10.
  Tensor p = parameter({0});
  distributed::OrderedGradientSum sum(world, {p}, parse_quantizer_spec("bf16"));
  for (int k = 0; k < 3; ++k) {
    backward(p, from_vector<float>({1.0f + 0x1p-10f}));
    sum.take_micro_batch();
  }
  sum.reduce();
  CHECK(grad(p).to_vector<float>() == std::vector<float>{3.0f});
}

TEST_CASE("micro-batch random streams depend on the step's generator and the micro-batch") {
  std::set<uint64_t> seeds;
  for (uint64_t subsequence = 0; subsequence < 30; ++subsequence)
    for (int64_t micro = 0; micro < 30; ++micro) {
      const RandomState state = distributed::micro_batch_random_state({7, subsequence}, micro);
      CHECK(state == distributed::micro_batch_random_state({7, subsequence}, micro));
      CHECK(state.next_subsequence == 0);
      seeds.insert(state.seed);
    }
  CHECK(seeds.size() == 900);  // no two (step, micro-batch) pairs share a stream
  CHECK(seeds.count(7) == 0);  // nor the step's generator
}
