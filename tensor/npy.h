// NumPy .npy files (the NPY format, versions 1.0, 2.0 and 3.0): one tensor per file, C order,
// little-endian, for exchanging arrays with numpy (np.save / np.load).
#pragma once

#include <string>

#include "tensor/tensor.h"

namespace lattice {

/// Writes `tensor` (any layout and device) as numpy's np.save writes it: float32 '<f4', float64
/// '<f8', int64 '<i8', int32 '<i4', uint8 '|u1', bool '|b1'; C order; format version 1.0 (2.0
/// when the header needs more than 65535 bytes); the header padded so the data start at a
/// multiple of 64 bytes. Atomic (temporary file and rename). Throws lattice::Error on I/O failure.
void save_npy(const std::string& path, const Tensor& tensor);

/// Reads a .npy file of the dtypes above (also '<u1' and '<b1') into a new CPU tensor. Throws a
/// one-line lattice::Error "[npy] <path>: ..." naming the first problem: not an NPY file, an
/// unknown version, a malformed header dictionary, fortran_order True, a big-endian or
/// unsupported dtype, a shape whose data the file does not hold exactly, bool bytes above 1.
Tensor load_npy(const std::string& path);

}  // namespace lattice
