// CPU accumulator-emulation kernels of the quantized GEMM.
#include "kernels/quantized_gemm.h"

namespace lattice {

void add_running_sum_cpu(float* partial, const float* total, int64_t n) {
  for (int64_t i = 0; i < n; ++i) partial[i] += total[i];
}

}  // namespace lattice
