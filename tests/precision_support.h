// Test support for the precision stack: a spec's parse error as text, an operand quantized
// by the raw kernels (the independent side of "the quantized GEMM equals a GEMM on dequantized
// operands"), and a plain fp32 GEMM of row-major arrays.
#pragma once

#include <string>
#include <vector>

#include "kernels/gemm.h"
#include "tensor/precision_stack.h"
#include "tensor/quantizer.h"
#include "tensor/tensor.h"

namespace lattice::test {

/// The message parse_precision_stack throws for `spec`, or "" when it parses.
inline std::string stack_error(const std::string& spec) {
  try {
    parse_precision_stack(spec);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

/// A (rows, cols) tensor quantize-dequantized by `q` with blocks along `axis` (0 or 1), through
/// the raw kernel.
inline std::vector<float> dequantized(const Tensor& t,
                                      Quantizer q,
                                      int axis,
                                      const RandomStream& random = {}) {
  if (q.scaling) q.scaling->axis = axis;
  const std::vector<float> in = t.to_vector<float>();
  std::vector<float> out(in.size());
  quantize(q, in, out, t.shape(), random);
  return out;
}

/// a (M, K) @ b (K, N) of row-major arrays (either given transposed) through the fp32 GEMM.
inline std::vector<float> product(const std::vector<float>& a,
                                  const std::vector<float>& b,
                                  int64_t M,
                                  int64_t N,
                                  int64_t K,
                                  bool transpose_a,
                                  bool transpose_b) {
  std::vector<float> c(static_cast<size_t>(M * N));
  gemm_cpu(dense_gemm(M, N, K, transpose_a, transpose_b), 1.0f, a.data(), b.data(), 0.0f, c.data());
  return c;
}

}  // namespace lattice::test
