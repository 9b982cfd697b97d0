// diagnostics/linear_algebra: LAPACK singular values and symmetric eigenvalues, power-iteration
// spectral norm and top eigenvalue, and the ridged condition number, each against matrices
// built with known singular values or eigenvalues (tests/dense_reference.h).
#include <doctest/doctest.h>

#include <cmath>

#include "dense_reference.h"
#include "diagnostics/linear_algebra.h"

using namespace lattice;
using namespace lattice::diagnostics;
using lattice::test::Matrix;

namespace {

Tensor to_tensor(const Matrix& m, DType dtype = DType::float64) {
  const Tensor t = from_vector(m.values, {m.rows, m.cols});
  return dtype == DType::float64 ? t : t.to(dtype);
}

// Q diag(eigenvalues) Q^T: symmetric with exactly these eigenvalues.
Matrix with_eigenvalues(const std::vector<double>& eigenvalues) {
  const int64_t n = int64_t(eigenvalues.size());
  const Matrix q = test::orthogonal(n, 0.9);
  Matrix diagonal(n, n);
  for (int64_t i = 0; i < n; ++i) diagonal(i, i) = eigenvalues[size_t(i)];
  return test::multiply(test::multiply(q, diagonal), test::transpose(q));
}

}  // namespace

TEST_CASE(
    "the test's Householder matrices are orthogonal and its Jacobi solver finds known "
    "eigenvalues") {
  const Matrix q = test::orthogonal(5, 0.7);
  const Matrix identity = test::multiply(q, test::transpose(q));
  for (int64_t i = 0; i < 5; ++i)
    for (int64_t j = 0; j < 5; ++j) CHECK(identity(i, j) == doctest::Approx(i == j).epsilon(1e-12));
  const std::vector<double> eigenvalues =
      test::jacobi_eigenvalues(with_eigenvalues({4, -1, 2.5, 0}));
  CHECK(eigenvalues[0] == doctest::Approx(4).epsilon(1e-12));
  CHECK(eigenvalues[1] == doctest::Approx(2.5).epsilon(1e-12));
  CHECK(eigenvalues[2] == doctest::Approx(0).scale(1).epsilon(1e-12));
  CHECK(eigenvalues[3] == doctest::Approx(-1).epsilon(1e-12));
}

TEST_CASE(
    "singular_values returns the chosen singular values of U diag(s) V^T, largest first, "
    "for tall, wide and square float64 matrices") {
  const std::vector<double> s = {7.5, 3.0, 0.25};
  for (const auto& shape : {std::pair{6, 3}, std::pair{3, 5}, std::pair{3, 3}}) {
    const int rows = shape.first, cols = shape.second;
    CAPTURE(rows);
    CAPTURE(cols);
    const std::vector<double> found =
        singular_values(to_tensor(test::with_singular_values(rows, cols, s)));
    REQUIRE(found.size() == 3);
    for (size_t i = 0; i < 3; ++i) CHECK(found[i] == doctest::Approx(s[i]).epsilon(1e-12));
  }
}

TEST_CASE("singular_values of a float32 matrix match the float64 ones within float32 rounding") {
  const Matrix a = test::with_singular_values(5, 4, {2.0, 1.5, 1.0, 0.5});
  const std::vector<double> found = singular_values(to_tensor(a, DType::float32));
  const std::vector<double> expected = {2.0, 1.5, 1.0, 0.5};
  for (size_t i = 0; i < 4; ++i) CHECK(found[i] == doctest::Approx(expected[i]).epsilon(1e-6));
}

TEST_CASE("singular_values reads a transposed (strided) view as the matrix it shows") {
  const Matrix a = test::with_singular_values(4, 2, {3.0, 1.0});
  const Tensor transposed = to_tensor(a).t();  // (2, 4), non-contiguous
  const std::vector<double> found = singular_values(transposed);
  CHECK(found[0] == doctest::Approx(3.0).epsilon(1e-12));
  CHECK(found[1] == doctest::Approx(1.0).epsilon(1e-12));
  CHECK(to_dense(transposed)(1, 3) == doctest::Approx(a(3, 1)).epsilon(1e-15));
}

TEST_CASE(
    "symmetric_eigenvalues (LAPACK dsyev) returns known eigenvalues, largest first, and "
    "agrees with the test's Jacobi solver on a random symmetric matrix") {
  const std::vector<double> found =
      symmetric_eigenvalues(to_tensor(with_eigenvalues({-2, 5, 0.5, 3})));
  const std::vector<double> expected = {5, 3, 0.5, -2};
  for (size_t i = 0; i < 4; ++i) CHECK(found[i] == doctest::Approx(expected[i]).epsilon(1e-12));

  Matrix random(6, 6);
  for (int64_t i = 0; i < 6; ++i)
    for (int64_t j = 0; j <= i; ++j)
      random(i, j) = random(j, i) = std::sin(3.1 * double(i * 6 + j));
  const std::vector<double> lapack = symmetric_eigenvalues(to_tensor(random));
  const std::vector<double> jacobi = test::jacobi_eigenvalues(random);
  for (size_t i = 0; i < 6; ++i) CHECK(lapack[i] == doctest::Approx(jacobi[i]).epsilon(1e-10));
}

TEST_CASE("spectral_norm by power iteration converges to σmax and never exceeds it") {
  const Matrix a = test::with_singular_values(7, 5, {4.0, 3.0, 1.0, 0.5, 0.1});
  CHECK(spectral_norm(to_tensor(a)) == doctest::Approx(4.0).epsilon(1e-10));
  CHECK(spectral_norm(to_tensor(a, DType::float32)) == doctest::Approx(4.0).epsilon(1e-6));
  // With a single product the estimate is ||A x0|| for the unit start x0: a lower bound.
  const double one_step = spectral_norm(to_tensor(a), {.iterations = 1});
  CHECK(one_step > 0);
  CHECK(one_step < 4.0);
  // Close singular values converge slowly; each step still stays below σmax.
  const Matrix close = test::with_singular_values(6, 6, {1.0, 0.99, 0.5, 0.4, 0.3, 0.2});
  for (int steps : {1, 2, 5, 20})
    CHECK(spectral_norm(to_tensor(close), {.iterations = steps}) <= 1.0 + 1e-15);
  CHECK(spectral_norm(to_tensor(close), {.iterations = 2000}) ==
        doctest::Approx(1.0).epsilon(1e-6));
  CHECK(spectral_norm(to_tensor(Matrix(3, 4))) == 0.0);
}

TEST_CASE("top_eigenvalue_psd by power iteration converges to λmax from below") {
  const Matrix a = with_eigenvalues({0.3, 6.0, 2.0, 1.0, 0.0});
  CHECK(top_eigenvalue_psd(to_tensor(a)) == doctest::Approx(6.0).epsilon(1e-10));
  for (int steps : {1, 2, 3})
    CHECK(top_eigenvalue_psd(to_tensor(a), {.iterations = steps}) <= 6.0 + 1e-12);
  CHECK_THROWS_WITH_AS(top_eigenvalue_psd(to_tensor(Matrix(2, 3))),
                       "[top_eigenvalue_psd] expects a square matrix, got (2, 3)", Error);
}

TEST_CASE(
    "condition_number is σmax / (σmin + ridge): 1e4 with no ridge, and a rank-deficient "
    "matrix stays finite at σmax / ridge") {
  const Matrix a = test::with_singular_values(5, 3, {2.0, 1.0, 2e-4});
  CHECK(condition_number(to_tensor(a), 0.0) == doctest::Approx(1e4).epsilon(1e-9));
  CHECK(condition_number(to_tensor(a)) == doctest::Approx(2.0 / (2e-4 + 1e-6)).epsilon(1e-9));
  const Matrix singular = test::with_singular_values(4, 4, {3.0, 1.0, 0.0, 0.0});
  CHECK(condition_number(to_tensor(singular), 1e-6) == doctest::Approx(3e6).epsilon(1e-6));
}

TEST_CASE("the linear-algebra routines reject tensors that are not 2-D float matrices") {
  CHECK_THROWS_WITH_AS(singular_values(zeros({2, 3, 4})),
                       "[linear_algebra] expects a 2-D matrix, got shape (2, 3, 4)", Error);
  CHECK_THROWS_WITH_AS(spectral_norm(zeros({3, 3}, DType::int64)),
                       "[linear_algebra] expects float32 or float64, got int64", Error);
  CHECK_THROWS_WITH_AS(condition_number(zeros({0, 3})),
                       "[condition_number] expects a non-empty matrix, got (0, 3)", Error);
}
