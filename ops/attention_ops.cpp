// The fused attention op: one forward kernel that also saves each row's log-sum-exp, and one
// node whose backward runs the fused backward kernels on the saved operands.
#include "ops/attention_ops.h"

#include <string>
#include <type_traits>
#include <vector>

#include "kernels/attention.h"
#include "ops/op_support.h"

namespace lattice {

Tensor fused_attention(
    const Tensor& q, const Tensor& k, const Tensor& v, bool causal, double scale) {
  LATTICE_CHECK(q.rank() == 4 && k.rank() == 4 && v.rank() == 4 && q.shape(-1) == k.shape(-1) &&
                    k.shape(-2) == v.shape(-2) && q.shape(0) == k.shape(0) &&
                    q.shape(1) == k.shape(1) && k.shape(0) == v.shape(0) &&
                    k.shape(1) == v.shape(1),
                "[fused_attention] q ", q.shape(), ", k ", k.shape(), ", v ", v.shape(),
                " do not fit (B, H, T, d), (B, H, S, d), (B, H, S, dv)");
  LATTICE_CHECK(is_floating(q.dtype()) && k.dtype() == q.dtype() && v.dtype() == q.dtype(),
                "[fused_attention] q, k and v must share one float dtype, got ",
                dtype_name(q.dtype()), ", ", dtype_name(k.dtype()), " and ", dtype_name(v.dtype()));
  const Device device = same_device("fused_attention", {&q, &k, &v});
  LATTICE_CHECK(device == Device::cpu || q.dtype() == DType::float32,
                "[fused_attention] runs float32 on ", device, ", got ", dtype_name(q.dtype()));
  const int64_t batch = q.shape(0), heads = q.shape(1), queries = q.shape(2), keys = k.shape(2);
  LATTICE_CHECK(!causal || queries == keys,
                "[fused_attention] causal attention needs as many queries as keys, got ", queries,
                " and ", keys);
  const AttentionShape s{batch * heads, queries, keys, q.shape(3), v.shape(3), causal, scale};
  const Tensor qc = detach(q).contiguous(), kc = detach(k).contiguous(),
               vc = detach(v).contiguous();
  const Tensor out = empty({batch, heads, queries, s.value_dim}, q.dtype(), device);
  const Tensor logsumexp = empty({batch, heads, queries}, q.dtype(), device);
  visit_floating(q, "fused_attention", [&]<typename T>(std::type_identity<T>) {
    if (device == Device::cpu)
      attention_forward_cpu(s, qc.data<T>(), kc.data<T>(), vc.data<T>(), out.data<T>(),
                            logsumexp.data<T>());
    else if constexpr (std::is_same_v<T, float>)
      attention_forward_cuda(s, qc.data<T>(), kc.data<T>(), vc.data<T>(), out.data<T>(),
                             logsumexp.data<T>());
  });
  trace_op(
      "fused_attention",
      [&] {
        return std::vector<std::string>{describe_for_trace(q), describe_for_trace(k),
                                        describe_for_trace(v)};
      },
      out);
  record_op("fused_attention", out, {q, k, v},
            [s, qc, kc, vc, out = detach(out), logsumexp](const Tensor& grad_out) {
              const Tensor g = grad_out.contiguous();
              const Device device = qc.device();
              std::vector<Tensor> grads{empty(qc.shape(), qc.dtype(), device),
                                        empty(kc.shape(), kc.dtype(), device),
                                        empty(vc.shape(), vc.dtype(), device)};
              visit_floating(qc, "fused_attention", [&]<typename T>(std::type_identity<T>) {
                if (device == Device::cpu)
                  attention_backward_cpu(s, qc.data<T>(), kc.data<T>(), vc.data<T>(), out.data<T>(),
                                         logsumexp.data<T>(), g.data<T>(), grads[0].data<T>(),
                                         grads[1].data<T>(), grads[2].data<T>());
                else if constexpr (std::is_same_v<T, float>)
                  attention_backward_cuda(s, qc.data<T>(), kc.data<T>(), vc.data<T>(),
                                          out.data<T>(), logsumexp.data<T>(), g.data<T>(),
                                          grads[0].data<T>(), grads[1].data<T>(),
                                          grads[2].data<T>());
              });
              return grads;
            });
  return out;
}

}  // namespace lattice
