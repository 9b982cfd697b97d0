// The fused rotary-embedding op: one pass forward, one backward (the inverse rotation).
#include "ops/rope_ops.h"

#include <type_traits>

#include "kernels/dispatch.h"
#include "kernels/rope.h"
#include "ops/op_support.h"

namespace lattice {
namespace {

/// x rotated by the tables' angles (or their opposites when `inverse`), outside autograd.
Tensor rotated(const Tensor& x, const Tensor& cos, const Tensor& sin, bool inverse) {
  const Tensor in = x.contiguous();
  const Tensor out = empty(x.shape(), x.dtype(), same_device("rope", {&x, &cos, &sin}));
  const Tensor c = cos.contiguous(), s = sin.contiguous();
  visit_floating(x, "rope", [&]<typename T>(std::type_identity<T>) {
    LATTICE_DISPATCH(x.device(), rotate_pairs, in.data<T>(), out.data<T>(), c.data<float>(),
                     s.data<float>(), x.shape(0), x.shape(1), x.shape(2), cos.shape(1), inverse);
  });
  return out;
}

}  // namespace

Tensor fused_rope(const Tensor& x, const Tensor& cos, const Tensor& sin) {
  LATTICE_CHECK(x.rank() == 4 && is_floating(x.dtype()) && cos.dtype() == DType::float32 &&
                    cos.shape() == sin.shape() && x.shape(3) == 2 * cos.shape(1) &&
                    x.shape(1) <= cos.shape(0),
                "[rope] input ", x.shape(), " does not fit tables ", cos.shape(),
                " (expected a float (B, T <= ", cos.shape(0), ", H, ", 2 * cos.shape(-1), "))");
  Tensor out;
  {
    NoGradGuard no_grad;  // the packed copies are internal temporaries
    out = rotated(x, cos, sin, false);
  }
  record_op("rope", out, {x}, [cos, sin](const Tensor& g) {
    return std::vector<Tensor>{rotated(g, cos, sin, true)};
  });
  return out;
}

}  // namespace lattice
