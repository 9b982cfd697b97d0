// Dense linear algebra for the stability diagnostics: LAPACK's reference SVD and symmetric
// eigensolver through their Fortran entry points, and power iterations in double.
#include "diagnostics/linear_algebra.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>

#include "core/error.h"
#include "tensor/tape.h"

// LAPACK's Fortran routines (Debian's liblapack, built by gfortran). Each CHARACTER argument
// has a hidden length passed by value after the others (size_t since gfortran 8).
extern "C" {
void dgesvd_(const char* jobu,
             const char* jobvt,
             const int* rows,
             const int* cols,
             double* a,
             const int* lda,
             double* singular,
             double* u,
             const int* ldu,
             double* vt,
             const int* ldvt,
             double* work,
             const int* lwork,
             int* info,
             size_t jobu_length,
             size_t jobvt_length);
void dsyev_(const char* jobz,
            const char* uplo,
            const int* n,
            double* a,
            const int* lda,
            double* eigenvalues,
            double* work,
            const int* lwork,
            int* info,
            size_t jobz_length,
            size_t uplo_length);
}

namespace lattice::diagnostics {
namespace {

int lapack_size(int64_t n, const char* op) {
  LATTICE_CHECK(n <= std::numeric_limits<int>::max(), "[", op, "] dimension ", n,
                " exceeds LAPACK's 32-bit sizes");
  return int(n);
}

// y = A x for A (rows, cols), x (cols).
void multiply(const DenseMatrix& a, std::span<const double> x, std::vector<double>& y) {
  y.assign(size_t(a.rows), 0.0);
  for (int64_t i = 0; i < a.rows; ++i) {
    const double* row = a.values.data() + i * a.cols;
    double acc = 0;
    for (int64_t j = 0; j < a.cols; ++j) acc += row[j] * x[size_t(j)];
    y[size_t(i)] = acc;
  }
}

// y = A^T x for A (rows, cols), x (rows).
void multiply_transposed(const DenseMatrix& a, std::span<const double> x, std::vector<double>& y) {
  y.assign(size_t(a.cols), 0.0);
  for (int64_t i = 0; i < a.rows; ++i) {
    const double* row = a.values.data() + i * a.cols;
    const double xi = x[size_t(i)];
    for (int64_t j = 0; j < a.cols; ++j) y[size_t(j)] += row[j] * xi;
  }
}

void check_square(const DenseMatrix& matrix, const char* op) {
  LATTICE_CHECK(matrix.rows == matrix.cols, "[", op, "] expects a square matrix, got (",
                matrix.rows, ", ", matrix.cols, ")");
}

// Power iteration x <- step(x) / ||step(x)||; `estimate` maps the new (unnormalised) image
// and the current unit iterate to the quantity whose convergence is tracked.
double power_iterate(
    int64_t n,
    PowerIteration settings,
    const std::function<double(const std::vector<double>&, std::vector<double>&)>& step) {
  std::vector<double> x = power_iteration_start(n), image;
  const double start_norm = euclidean_norm(x);
  for (double& value : x) value /= start_norm;
  double estimate = 0;
  for (int iteration = 0; iteration < std::max(settings.iterations, 1); ++iteration) {
    const double next = step(x, image);
    const double image_norm = euclidean_norm(image);
    const bool converged = std::abs(next - estimate) <= settings.tolerance * std::abs(next);
    estimate = next;
    if (image_norm == 0 || converged) break;
    for (size_t i = 0; i < x.size(); ++i) x[i] = image[i] / image_norm;
  }
  return estimate;
}

}  // namespace

std::vector<double> power_iteration_start(int64_t n) {
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    uint64_t z = uint64_t(i + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    v[size_t(i)] = double(z >> 11) * 0x1.0p-52 - 1.0;
  }
  return v;
}

DenseMatrix to_dense(const Tensor& matrix) {
  LATTICE_CHECK(matrix.defined(), "[linear_algebra] expects a defined tensor");
  LATTICE_CHECK(matrix.rank() == 2, "[linear_algebra] expects a 2-D matrix, got shape ",
                matrix.shape());
  LATTICE_CHECK(matrix.dtype() == DType::float32 || matrix.dtype() == DType::float64,
                "[linear_algebra] expects float32 or float64, got ", matrix.dtype());
  NoGradGuard no_grad;
  return {matrix.shape(0), matrix.shape(1), matrix.to_vector<double>()};
}

std::vector<double> singular_values(const Tensor& matrix) {
  return singular_values(to_dense(matrix));
}

std::vector<double> singular_values(const DenseMatrix& matrix) {
  if (matrix.rows == 0 || matrix.cols == 0) return {};
  // LAPACK reads column-major: the row-major (rows, cols) buffer is A^T (cols, rows), which
  // has the same singular values.
  std::vector<double> a = matrix.values;
  const int rows = lapack_size(matrix.cols, "singular_values");
  const int cols = lapack_size(matrix.rows, "singular_values");
  const int one = 1;
  std::vector<double> singular(static_cast<size_t>(std::min(rows, cols)));
  double work_size = 0;
  int query = -1, info = 0;
  dgesvd_("N", "N", &rows, &cols, a.data(), &rows, singular.data(), nullptr, &one, nullptr, &one,
          &work_size, &query, &info, 1, 1);
  LATTICE_CHECK(info == 0, "[singular_values] dgesvd workspace query failed (info ", info, ")");
  const int work_length = int(work_size);
  std::vector<double> work(static_cast<size_t>(work_length));
  dgesvd_("N", "N", &rows, &cols, a.data(), &rows, singular.data(), nullptr, &one, nullptr, &one,
          work.data(), &work_length, &info, 1, 1);
  LATTICE_CHECK(info == 0, "[singular_values] dgesvd did not converge (info ", info, ") on a (",
                matrix.rows, ", ", matrix.cols, ") matrix");
  return singular;  // dgesvd returns them in descending order
}

std::vector<double> symmetric_eigenvalues(const Tensor& matrix) {
  return symmetric_eigenvalues(to_dense(matrix));
}

std::vector<double> symmetric_eigenvalues(const DenseMatrix& matrix) {
  check_square(matrix, "symmetric_eigenvalues");
  if (matrix.rows == 0) return {};
  std::vector<double> a = matrix.values;
  const int n = lapack_size(matrix.rows, "symmetric_eigenvalues");
  std::vector<double> eigenvalues(static_cast<size_t>(n));
  double work_size = 0;
  int query = -1, info = 0;
  // Row-major upper triangle = column-major lower triangle: "L".
  dsyev_("N", "L", &n, a.data(), &n, eigenvalues.data(), &work_size, &query, &info, 1, 1);
  LATTICE_CHECK(info == 0, "[symmetric_eigenvalues] dsyev workspace query failed (info ", info,
                ")");
  const int work_length = int(work_size);
  std::vector<double> work(static_cast<size_t>(work_length));
  dsyev_("N", "L", &n, a.data(), &n, eigenvalues.data(), work.data(), &work_length, &info, 1, 1);
  LATTICE_CHECK(info == 0, "[symmetric_eigenvalues] dsyev did not converge (info ", info,
                ") on a (", n, ", ", n, ") matrix");
  std::reverse(eigenvalues.begin(), eigenvalues.end());  // dsyev: ascending
  return eigenvalues;
}

double spectral_norm(const Tensor& matrix, PowerIteration settings) {
  return spectral_norm(to_dense(matrix), settings);
}

double spectral_norm(const DenseMatrix& matrix, PowerIteration settings) {
  if (matrix.rows == 0 || matrix.cols == 0) return 0;
  std::vector<double> image_of_x;
  // One step: x <- A^T A x; the estimate ||A x|| for the unit x approaches σmax from below.
  return power_iterate(matrix.cols, settings,
                       [&](const std::vector<double>& x, std::vector<double>& image) {
                         multiply(matrix, x, image_of_x);
                         multiply_transposed(matrix, image_of_x, image);
                         return euclidean_norm(image_of_x);
                       });
}

double top_eigenvalue_psd(const Tensor& matrix, PowerIteration settings) {
  return top_eigenvalue_psd(to_dense(matrix), settings);
}

double top_eigenvalue_psd(const DenseMatrix& matrix, PowerIteration settings) {
  check_square(matrix, "top_eigenvalue_psd");
  if (matrix.rows == 0) return 0;
  return power_iterate(matrix.rows, settings,
                       [&](const std::vector<double>& x, std::vector<double>& image) {
                         multiply(matrix, x, image);
                         double rayleigh = 0;  // x^T A x with ||x|| = 1
                         for (size_t i = 0; i < x.size(); ++i) rayleigh += x[i] * image[i];
                         return rayleigh;
                       });
}

double condition_number(const Tensor& matrix, double ridge) {
  return condition_number(to_dense(matrix), ridge);
}

double condition_number(const DenseMatrix& matrix, double ridge) {
  const std::vector<double> singular = singular_values(matrix);
  LATTICE_CHECK(!singular.empty(), "[condition_number] expects a non-empty matrix, got (",
                matrix.rows, ", ", matrix.cols, ")");
  return singular.front() / (singular.back() + ridge);
}

double euclidean_norm(std::span<const double> x) {
  double sum = 0;
  for (double value : x) sum += value * value;
  return std::sqrt(sum);
}

}  // namespace lattice::diagnostics
