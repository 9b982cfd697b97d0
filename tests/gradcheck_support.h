// The doctest side of autograd/gradcheck.h: every gradient test CHECKs the largest relative
// error against 1e-6 and shows where it occurred.
#pragma once

#include <doctest/doctest.h>

#include <functional>
#include <vector>

#include "autograd/gradcheck.h"

namespace lattice::test {

inline void check_gradcheck_result(const GradcheckResult& result) {
  INFO(result.where);
  CHECK(result.max_error < 1e-6);
}

/// gradcheck(f, inputs), CHECKed.
inline void check_gradients(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                            const std::vector<Tensor>& inputs) {
  check_gradcheck_result(gradcheck(f, inputs));
}

}  // namespace lattice::test
