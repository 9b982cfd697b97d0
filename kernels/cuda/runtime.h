// The CUDA runtime helpers every kernels/cuda/*.cu file uses: error checks that carry the op,
// file and line, the one stream kernels run on, launch sizes for grid-stride loops, and the
// strided index spaces of the elementwise kernels packed for a kernel argument.
// Debug-sync mode (environment LATTICE_CUDA_SYNC=1) waits after every launch, so an error a
// kernel raises is reported at its own launch rather than at a later call.
#pragma once

#include <cuda_runtime.h>

#include <array>
#include <cstdint>
#include <span>

namespace lattice::cuda {

/// Throws lattice::Error "[op] CUDA error: <reason> (file:line)" when status is not cudaSuccess.
void check(cudaError_t status, const char* op, const char* file, int line);

/// After a kernel launch: its launch error, and in debug-sync mode its execution error.
void check_launch(const char* op, const char* file, int line);

#define LATTICE_CUDA_CHECK(call, op) ::lattice::cuda::check((call), (op), __FILE__, __LINE__)
#define LATTICE_CUDA_LAUNCHED(op) ::lattice::cuda::check_launch((op), __FILE__, __LINE__)

/// The stream every kernel and copy runs on (the legacy default stream: copies made with
/// cudaMemcpy are ordered with the kernels without extra synchronisation).
inline cudaStream_t stream() {
  return nullptr;
}

inline constexpr int kThreads = 256;

/// A check made on the GPU that failed (an index out of range): kernels record the first
/// failure here rather than have the host read the data back, which would wait for the GPU.
/// The record lives in mapped host memory; the next read back to the host or synchronisation
/// throws it (check_device_faults). `site` names the op (fault_site).
struct DeviceFault {
  int raised;
  int site;
  long long value, position, limit;
};

/// The record, as a pointer kernels may write (and the host read).
DeviceFault* device_fault();
/// A number for `op` (a string literal) to put in DeviceFault::site.
int fault_site(const char* op);
/// After a synchronisation: throws "[op] index V at position P is out of range [0, L) (found on
/// the GPU, ...)" for a recorded failure, and clears the record.
void check_device_faults();

/// Blocks for a grid-stride loop over `work` items: enough to fill the device, at least one.
inline int grid_for(int64_t work, int threads = kThreads) {
  const int64_t blocks = (work + threads - 1) / threads;
  return int(blocks < 1 ? 1 : (blocks > 65535 * 8 ? 65535 * 8 : blocks));
}

/// Up to kMaxAxes axes (after merging, see strided_loop.h) of an index space walked by up to
/// three operands, by value so a kernel can take it as an argument. Axis 0 is the innermost.
inline constexpr int kMaxAxes = 8;
struct StridedSpace {
  int rank = 0;
  int64_t size[kMaxAxes] = {};
  int64_t stride[3][kMaxAxes] = {};
  int64_t count = 0;  // the product of the sizes
};

/// The index space of `shape` with each operand's strides, axes merged as the CPU's strided loop
/// merges them. Throws when more than kMaxAxes axes remain. Empty shapes give count 0.
StridedSpace strided_space(std::span<const int64_t> shape,
                           std::span<const std::span<const int64_t>> strides,
                           const char* op);

/// The offsets, in elements, of linear index i (row-major over the space) in operands 0..N-1.
template <int N>
__device__ __forceinline__ void strided_offsets(const StridedSpace& space,
                                                int64_t i,
                                                int64_t (&offsets)[N]) {
  for (int k = 0; k < N; ++k) offsets[k] = 0;
  for (int axis = 0; axis < space.rank; ++axis) {
    const int64_t size = space.size[axis];
    const int64_t index = i % size;
    i /= size;
#pragma unroll
    for (int k = 0; k < N; ++k) offsets[k] += index * space.stride[k][axis];
  }
}

}  // namespace lattice::cuda
