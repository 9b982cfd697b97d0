// The device side of data-parallel training: choosing a rank's GPU, the fp32 add of the
// fixed-order gradient sum against the host's float addition, and NCCL loaded at run time.
// Without a CUDA device only the error cases run; the NCCL case needs libnccl.so.2 as well.
// The two-GPU chain itself runs in scripts/gpu_check.sh (mpirun -np 2 against --accumulate 2).
#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/collective.h"
#include "kernels/device_memory.h"
#include "tests/cuda_support.h"

using namespace lattice;

TEST_CASE("a GPU index outside 0..device count - 1 fails with one line, with or without a GPU") {
  CHECK_THROWS_WITH_AS(cuda_set_device(-1), doctest::Contains("[cuda_set_device]"), Error);
  CHECK_THROWS_WITH_AS(cuda_set_device(cuda_device_count()), doctest::Contains("[cuda_set_device]"),
                       Error);
  CHECK_THROWS_AS(NcclCommunicator(NcclUniqueId{}, 2, 2), Error);
}

TEST_CASE("without a CUDA device there is no GPU to choose, and without CUDA no NCCL") {
  if (cuda_available()) return;
  CHECK(cuda_device_count() == 0);
#if !LATTICE_CUDA
  CHECK(nccl_unavailable_reason().find("no NCCL support") != std::string::npos);
  CHECK_THROWS_AS(add_in_place_cuda(nullptr, nullptr, 1), Error);
#endif
}

TEST_CASE("the device add gives the bits of the host's float +=: ties, signed zeros, subnormals") {
  if (!cuda_available()) return;
  const float subnormal = std::numeric_limits<float>::denorm_min();
  const float infinity = std::numeric_limits<float>::infinity();
  // Pairs whose sums round: 1 + 2^-24 is a tie (to even, 1), 1 + 3*2^-24 a tie up; -0 + -0
  // stays -0 while -0 + 0 is +0; subnormals add exactly; inf + -inf is NaN.
  std::vector<float> sum = {1.0f, 1.0f, -0.0f, -0.0f, subnormal, infinity, 3.0f};
  std::vector<float> values = {0x1p-24f, 0x3p-24f, -0.0f, 0.0f, subnormal, -infinity, -3.0f};
  // Then enough pseudo-random pairs of mixed magnitude for several blocks of the grid.
  uint32_t state = 12345;
  auto next = [&state] {
    state = state * 1664525u + 1013904223u;  // Numerical Recipes' LCG
    return std::ldexp(float(state >> 8) / float(1 << 24) - 0.5f, int(state % 40) - 20);
  };
  while (sum.size() < 300001) {
    sum.push_back(next());
    values.push_back(next());
  }
  std::vector<float> expected(sum.size());
  for (size_t i = 0; i < sum.size(); ++i) expected[i] = sum[i] + values[i];
  test::DeviceArray<float> device_sum(sum), device_values(values);
  add_in_place_cuda(device_sum.data, device_values.data, int64_t(sum.size()));
  const std::vector<float> got = device_sum.download();
  int64_t differing = 0;
  for (size_t i = 0; i < got.size(); ++i)
    differing += std::bit_cast<uint32_t>(got[i]) != std::bit_cast<uint32_t>(expected[i]) &&
                 !(std::isnan(got[i]) && std::isnan(expected[i]));
  CHECK(differing == 0);
  CHECK(got[0] == 1.0f);
  CHECK(got[1] == 1.0f + 0x4p-24f);
  CHECK(std::signbit(got[2]));
  CHECK(!std::signbit(got[3]));
  CHECK(std::isnan(got[5]));
}

TEST_CASE("the current GPU may be chosen again after allocations, another one may not") {
  if (!cuda_available()) return;
  test::DeviceArray<float> allocated(16);
  cuda_set_device(0);  // the default device, already current: no change
  if (cuda_device_count() > 1)
    CHECK_THROWS_WITH_AS(cuda_set_device(1), doctest::Contains("after"), Error);
}

TEST_CASE("NCCL loads at run time, and a one-rank communicator's broadcast keeps the values") {
  if (!cuda_available()) return;
  const std::string unavailable = nccl_unavailable_reason();
  if (!unavailable.empty()) {
    MESSAGE("NCCL unavailable here (" << unavailable << "): this case skips");
    return;
  }
  const NcclCommunicator communicator(nccl_unique_id(), 1, 0);
  const std::vector<float> values = {1.5f, -0.0f, 3e-39f, 7.0f};
  test::DeviceArray<float> device_values(values);
  communicator.broadcast(device_values.data, int64_t(values.size()), 0);
  cuda_synchronize();
  const std::vector<float> got = device_values.download();
  for (size_t i = 0; i < values.size(); ++i)
    CHECK(std::bit_cast<uint32_t>(got[i]) == std::bit_cast<uint32_t>(values[i]));
}
