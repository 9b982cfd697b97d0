// CUDA twins of the optimizer kernels (kernels/optimizer.h), not written yet.
#include "kernels/cuda/pending.h"
#include "kernels/optimizer.h"

namespace lattice {

void sgd_update_cuda(float*, const float*, float*, int64_t, const SgdStep&) {
  throw_pending_cuda("sgd_update");
}

void adam_update_cuda(float*, float*, float*, const float*, int64_t, const AdamStep&) {
  throw_pending_cuda("adam_update");
}

float max_abs_cuda(const float*, int64_t) {
  throw_pending_cuda("max_abs");
}

double clipped_sum_of_squares_cuda(const float*, int64_t, float, float) {
  throw_pending_cuda("clipped_sum_of_squares");
}

void stable_spam_update_cuda(float*, float*, float*, const float*, int64_t, const StableSpamStep&) {
  throw_pending_cuda("stable_spam_update");
}

void scale_in_place_cuda(float*, int64_t, float) {
  throw_pending_cuda("scale_in_place");
}

bool all_finite_cuda(const float* const*, const int64_t*, int64_t) {
  throw_pending_cuda("all_finite");
}

double sum_of_squares_cuda(const float*, int64_t) {
  throw_pending_cuda("sum_of_squares");
}

}  // namespace lattice
