// Independent dense references for the diagnostics tests: matrices with chosen singular values
// (built from Householder reflections) and a cyclic Jacobi eigensolver, both plain double
// loops that share no code with LAPACK or diagnostics/linear_algebra.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <vector>

namespace lattice::test {

/// A row-major (rows, cols) matrix in double.
struct Matrix {
  int64_t rows = 0, cols = 0;
  std::vector<double> values;

  Matrix(int64_t r, int64_t c) : rows(r), cols(c), values(size_t(r * c), 0.0) {}
  double& operator()(int64_t i, int64_t j) {
    return values[size_t(i * cols + j)];
  }
  double operator()(int64_t i, int64_t j) const {
    return values[size_t(i * cols + j)];
  }
};

inline Matrix multiply(const Matrix& a, const Matrix& b) {
  Matrix c(a.rows, b.cols);
  for (int64_t i = 0; i < a.rows; ++i)
    for (int64_t k = 0; k < a.cols; ++k)
      for (int64_t j = 0; j < b.cols; ++j) c(i, j) += a(i, k) * b(k, j);
  return c;
}

inline Matrix transpose(const Matrix& a) {
  Matrix t(a.cols, a.rows);
  for (int64_t i = 0; i < a.rows; ++i)
    for (int64_t j = 0; j < a.cols; ++j) t(j, i) = a(i, j);
  return t;
}

/// An orthogonal (n, n) matrix: the product of the Householder reflections I - 2 u u^T / u^T u
/// for u_j = cos(seed * (j + 1) + k) over k = 0, 1, 2.
inline Matrix orthogonal(int64_t n, double seed) {
  Matrix q(n, n);
  for (int64_t i = 0; i < n; ++i) q(i, i) = 1;
  for (int k = 0; k < 3; ++k) {
    std::vector<double> u(static_cast<size_t>(n));
    double norm2 = 0;
    for (int64_t j = 0; j < n; ++j)
      norm2 += (u[size_t(j)] = std::cos(seed * double(j + 1) + k)) * u[size_t(j)];
    Matrix reflection(n, n);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j)
        reflection(i, j) = (i == j ? 1.0 : 0.0) - 2 * u[size_t(i)] * u[size_t(j)] / norm2;
    q = multiply(q, reflection);
  }
  return q;
}

/// U diag(singular) V^T of shape (rows, cols), U and V orthogonal: its singular values are
/// exactly `singular` (min(rows, cols) of them) up to rounding.
inline Matrix with_singular_values(int64_t rows,
                                   int64_t cols,
                                   const std::vector<double>& singular) {
  Matrix diagonal(rows, cols);
  for (size_t i = 0; i < singular.size(); ++i) diagonal(int64_t(i), int64_t(i)) = singular[i];
  return multiply(multiply(orthogonal(rows, 0.7), diagonal), transpose(orthogonal(cols, 1.3)));
}

/// Eigenvalues of a symmetric (n, n) matrix by cyclic Jacobi rotations, largest first.
inline std::vector<double> jacobi_eigenvalues(Matrix a) {
  const int64_t n = a.rows;
  for (int sweep = 0; sweep < 100; ++sweep) {
    double off = 0;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = i + 1; j < n; ++j) off += a(i, j) * a(i, j);
    if (off < 1e-30) break;
    for (int64_t p = 0; p < n; ++p)
      for (int64_t q = p + 1; q < n; ++q) {
        if (a(p, q) == 0) continue;
        const double theta = (a(q, q) - a(p, p)) / (2 * a(p, q));
        const double t =
            (theta >= 0 ? 1.0 : -1.0) / (std::abs(theta) + std::sqrt(theta * theta + 1));
        const double c = 1 / std::sqrt(t * t + 1), s = t * c;
        for (int64_t k = 0; k < n; ++k) {  // columns p, q
          const double akp = a(k, p), akq = a(k, q);
          a(k, p) = c * akp - s * akq;
          a(k, q) = s * akp + c * akq;
        }
        for (int64_t k = 0; k < n; ++k) {  // rows p, q
          const double apk = a(p, k), aqk = a(q, k);
          a(p, k) = c * apk - s * aqk;
          a(q, k) = s * apk + c * aqk;
        }
      }
  }
  std::vector<double> eigenvalues(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) eigenvalues[size_t(i)] = a(i, i);
  std::sort(eigenvalues.begin(), eigenvalues.end(), std::greater<>());
  return eigenvalues;
}

/// Singular values of a (rows, cols) matrix as square roots of the eigenvalues of A^T A (or
/// A A^T, whichever is smaller), largest first. Accurate for the well-conditioned test inputs.
inline std::vector<double> jacobi_singular_values(const Matrix& a) {
  const Matrix gram = a.rows >= a.cols ? multiply(transpose(a), a) : multiply(a, transpose(a));
  std::vector<double> singular = jacobi_eigenvalues(gram);
  for (double& value : singular) value = std::sqrt(std::max(value, 0.0));
  return singular;
}

}  // namespace lattice::test
