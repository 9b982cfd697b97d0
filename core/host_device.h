// LATTICE_HD marks scalar math compiled for both the host and CUDA devices, so the CPU tests
// exercise exactly the code the GPU kernels run. It always inlines: the CPU kernels vectorise
// only loops whose per-element math is inlined, and they instantiate it many times.
#pragma once

#if defined(__CUDACC__)
#define LATTICE_HD __host__ __device__ __forceinline__
#else
#define LATTICE_HD inline __attribute__((always_inline))
#endif
