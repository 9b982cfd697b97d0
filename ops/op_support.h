// Helpers shared by the files that define differentiable ops (ops/*.cpp): the floating-dtype
// dispatch, the recording of an op's backward and the op trace. Not a public header.
#pragma once

#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "ops/ops.h"
#include "tensor/tape.h"
#include "tensor/tensor.h"

namespace lattice {

/// Calls f(std::type_identity<T>{}) for a float32 or float64 tensor; throws for others.
template <typename F>
decltype(auto) visit_floating(const Tensor& t, const char* op, F&& f) {
  LATTICE_CHECK(is_floating(t.dtype()), "[", op, "] expects float32 or float64, got ",
                dtype_name(t.dtype()));
  if (t.dtype() == DType::float64) return f(std::type_identity<double>{});
  return f(std::type_identity<float>{});
}

/// The device all of `tensors` are on; throws "[op] operands are on cpu and cuda" otherwise.
inline Device same_device(const char* op, std::initializer_list<const Tensor*> tensors) {
  const Device device = (*tensors.begin())->device();
  for (const Tensor* t : tensors)
    LATTICE_CHECK(t->device() == device, "[", op, "] operands are on ", device, " and ",
                  t->device(), "; move one with to(Device)");
  return device;
}

/// Records `backward` (output gradient -> one gradient per input) as out's producer when
/// grad mode is on and an input requires gradients.
template <typename Backward>
void record_op(const char* op,
               const Tensor& out,
               const std::vector<Tensor>& inputs,
               Backward&& backward) {
  if (!grad_enabled()) return;
  record(out, std::make_shared<FunctionNode>(op, std::forward<Backward>(backward)), inputs);
}

/// `out` labelled with x's lattice, for an op whose every output value is one of x's values (or a
/// zero where x's lattice has one): pooling, upsampling, relu. Other dtypes carry no label.
inline Tensor on_lattice_of(const Tensor& out, const Tensor& x) {
  return x.dtype() == DType::float32 ? out.with_format(x.format()) : out;
}

// The op trace (set_op_trace); ops.cpp keeps the log.
/// True while tracing, outside backward rules (which are not ops of the forward program).
bool op_trace_enabled();
void log_op_trace(OpTrace entry);
/// "mxfp4 (8, 64)": a float tensor's format, another tensor's dtype, then its shape.
std::string describe_for_trace(const Tensor& t);

/// Logs one op when tracing; `describe_inputs()` builds the operand descriptions only then.
template <typename DescribeInputs>
void trace_op(const char* op,
              DescribeInputs&& describe_inputs,
              const Tensor& out,
              const std::string& accumulator = "fp32") {
  if (!op_trace_enabled()) return;
  log_op_trace(OpTrace{op, describe_inputs(), describe_for_trace(out), accumulator});
}

}  // namespace lattice
