// Dense linear algebra for the stability diagnostics: singular values and symmetric
// eigenvalues (LAPACK), spectral norm and top eigenvalue by power iteration, condition numbers
// with a ridge. Inputs are 2-D float32/float64 tensors on any device; all work is in double.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "tensor/tensor.h"

namespace lattice::diagnostics {

/// A row-major (rows, cols) matrix in double: the working copy every routine here uses.
struct DenseMatrix {
  int64_t rows = 0, cols = 0;
  std::vector<double> values;  // (rows, cols) row-major

  double operator()(int64_t row, int64_t col) const {
    return values[size_t(row * cols + col)];
  }
};

/// The values of a 2-D float32/float64 tensor (rows, cols) as doubles, copied to the host.
/// Throws "[linear_algebra] ..." for another rank or dtype.
DenseMatrix to_dense(const Tensor& matrix);

/// All min(rows, cols) singular values of matrix (rows, cols), largest first (LAPACK dgesvd).
std::vector<double> singular_values(const Tensor& matrix);
std::vector<double> singular_values(const DenseMatrix& matrix);

/// All eigenvalues of a symmetric matrix (n, n), largest first (LAPACK dsyev; only the upper
/// triangle is read). Throws unless the matrix is square.
std::vector<double> symmetric_eigenvalues(const Tensor& matrix);
std::vector<double> symmetric_eigenvalues(const DenseMatrix& matrix);

/// Power-iteration settings: at most `iterations` (>= 1) matrix-vector products, each followed
/// by an estimate, stopping early once the estimate changes by less than `tolerance` (relative).
/// The start vector is a fixed pseudo-random vector (splitmix64 of the index), so results are
/// deterministic and a start orthogonal to the top singular vector is practically impossible.
struct PowerIteration {
  int iterations = 100;
  double tolerance = 1e-12;
};

/// The power iterations' fixed start vector of n values in [-1, 1): splitmix64 of the index
/// (Steele et al.), portable and without the symmetry of a constant vector, which is orthogonal
/// to (1, -1)-like singular vectors.
std::vector<double> power_iteration_start(int64_t n);

/// ||A||_2 = σmax(A) of matrix (rows, cols) by power iteration on A^T A; the estimate
/// ||A v|| / ||v|| never exceeds σmax. A zero matrix gives 0.
double spectral_norm(const Tensor& matrix, PowerIteration settings = {});
double spectral_norm(const DenseMatrix& matrix, PowerIteration settings = {});

/// λmax of a symmetric positive semi-definite matrix (n, n) by power iteration; returns the
/// Rayleigh quotient of the last iterate, a lower bound on λmax.
double top_eigenvalue_psd(const Tensor& matrix, PowerIteration settings = {});
double top_eigenvalue_psd(const DenseMatrix& matrix, PowerIteration settings = {});

/// κ(A) = σmax / (σmin + ridge) of matrix (rows, cols) from its full SVD, σmin being the
/// min(rows, cols)-th singular value. The ridge (the paper's λ = 1e-6, §3.4 "Estimation
/// protocols") keeps a rank-deficient A finite.
double condition_number(const Tensor& matrix, double ridge = 1e-6);
double condition_number(const DenseMatrix& matrix, double ridge = 1e-6);

/// ||x||_2 of a vector, accumulated in double.
double euclidean_norm(std::span<const double> x);

}  // namespace lattice::diagnostics
