// CUDA direct convolution on cuDNN 9's legacy convolution API, the twin of
// kernels/cpu/conv_direct_cpu.cpp. Full fp32: the convolution descriptor asks for FMA math, so
// TF32 tensor cores stay off, and only algorithms that sum the products x * w run (implicit or
// explicit GEMM; FFT and Winograd transform the operands and round otherwise). The backward
// passes take deterministic algorithms only, and every algorithm comes from cuDNN's heuristics
// (no timing runs), chosen once per shape, so a seeded run repeats its bits. The bias gradient is
// a fixed-order reduction of ours.
#include <cudnn.h>

#include <algorithm>
#include <array>
#include <climits>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "core/error.h"
#include "kernels/conv.h"
#include "kernels/cuda/runtime.h"
#include "kernels/device_memory.h"

namespace lattice {
namespace {

using cuda::kThreads;
using FwdAlgo = cudnnConvolutionFwdAlgo_t;
using DataAlgo = cudnnConvolutionBwdDataAlgo_t;
using FilterAlgo = cudnnConvolutionBwdFilterAlgo_t;

/// Throws "[op] cuDNN <function>: <status> (<cuDNN's message>) (file:line)"; `call` is the call's
/// text, of which the function's name is kept.
void check_cudnn(
    cudnnStatus_t status, const char* op, const char* call, const char* file, int line) {
  if (status == CUDNN_STATUS_SUCCESS) return;
  const std::string text(call);
  char detail[512] = {};
  cudnnGetLastErrorString(detail, sizeof(detail));
  throw Error(concat(
      "[", op, "] cuDNN ", text.substr(0, text.find('(')), ": ", cudnnGetErrorString(status),
      detail[0] != '\0' ? concat(" (", detail, ")") : std::string(), " (", file, ":", line, ")"));
}
#define LATTICE_CUDNN_CHECK(call, op) check_cudnn((call), (op), #call, __FILE__, __LINE__)

/// Drops the message a tolerated failure left, so a later error does not report it.
void clear_cudnn_message() {
  char discarded[512];
  cudnnGetLastErrorString(discarded, sizeof(discarded));
}

std::string cudnn_version_text(size_t version) {
  return concat(version / 10000, ".", version / 100 % 100, ".", version % 100);
}

/// The one cuDNN handle, created on first use (which loads cuDNN's sub-libraries and checks
/// their versions) and bound to the kernels' stream at every call.
cudnnHandle_t cudnn_handle(const char* op) {
  static std::once_flag created;
  static cudnnHandle_t handle = nullptr;
  if (!cuda_available())
    throw Error(concat("[", op, "] no usable CUDA device: Device::cuda needs an NVIDIA GPU and ",
                       "its driver"));
  std::call_once(created, [op] {
    const size_t version = cudnnGetVersion();
    LATTICE_CHECK(version / 10000 == CUDNN_MAJOR, "[", op, "] cuDNN ", cudnn_version_text(version),
                  " was loaded; this build needs cuDNN ", CUDNN_MAJOR, " (built against ",
                  cudnn_version_text(CUDNN_VERSION), ")");
    cudnnHandle_t fresh = nullptr;
    cudnnStatus_t status = cudnnCreate(&fresh);
    const char* step = "cudnnCreate";
    if (status == CUDNN_STATUS_SUCCESS) {
      status = cudnnOpsVersionCheck();
      step = "cudnnOpsVersionCheck";
    }
    if (status == CUDNN_STATUS_SUCCESS) {
      status = cudnnCnnVersionCheck();
      step = "cudnnCnnVersionCheck";
    }
    if (status != CUDNN_STATUS_SUCCESS) {
      if (fresh != nullptr) cudnnDestroy(fresh);
      throw Error(concat("[", op, "] cannot initialise cuDNN ", cudnn_version_text(version), " (",
                         step, ": ", cudnnGetErrorString(status),
                         "): it needs the GPU's driver and cuDNN 9's libraries (libcudnn_ops.so.9, "
                         "libcudnn_cnn.so.9, libcudnn_engines_*.so.9) beside libcudnn.so.9"));
    }
    handle = fresh;
  });
  LATTICE_CUDNN_CHECK(cudnnSetStream(handle, cuda::stream()), op);
  return handle;
}

/// "x (N, C, H, W), w (O, C/groups, KH, KW), groups G, stride SHxSW, padding PHxPW, dilation
/// DHxDW -> (OH, OW)", for messages.
std::string describe_shape(const ConvShape& s) {
  const Window& g = s.window;
  return concat("x (", s.images, ", ", s.channels, ", ", g.height, ", ", g.width, "), w (",
                s.out_channels, ", ", s.groups > 0 ? s.channels / s.groups : 0, ", ", g.kernel_h,
                ", ", g.kernel_w, "), groups ", s.groups, ", stride ", g.stride_h, "x", g.stride_w,
                ", padding ", g.padding_h, "x", g.padding_w, ", dilation ", g.dilation_h, "x",
                g.dilation_w, " -> (", g.out_h, ", ", g.out_w, ")");
}

/// Sizes cuDNN's legacy descriptors can hold: every size at least 1 and, as they index with
/// int, every tensor under 2^31 elements.
void check_shape(const ConvShape& s, const char* op) {
  const Window& g = s.window;
  const int64_t sizes[] = {s.images,   s.channels, s.out_channels, s.groups,     g.kernel_h,
                           g.kernel_w, g.stride_h, g.stride_w,     g.dilation_h, g.dilation_w,
                           g.height,   g.width,    g.out_h,        g.out_w};
  bool positive = g.padding_h >= 0 && g.padding_w >= 0;
  for (int64_t size : sizes) positive = positive && size >= 1;
  LATTICE_CHECK(positive && s.channels % s.groups == 0 && s.out_channels % s.groups == 0, "[", op,
                "] expected sizes >= 1, padding >= 0 and groups dividing both channel counts, got ",
                describe_shape(s));
  const int64_t elements[] = {s.images * s.channels * g.height * g.width,
                              s.images * s.out_channels * g.out_h * g.out_w,
                              s.out_channels * (s.channels / s.groups) * g.kernel_h * g.kernel_w};
  for (int64_t count : elements)
    LATTICE_CHECK(count <= INT_MAX, "[", op, "] cuDNN's convolution takes tensors of fewer than ",
                  "2^31 elements, got ", describe_shape(s));
}

template <typename Descriptor, cudnnStatus_t (*destroy)(Descriptor)>
struct Destroy {
  void operator()(Descriptor d) const {
    destroy(d);
  }
};
template <typename Descriptor, cudnnStatus_t (*destroy)(Descriptor)>
using Owned = std::unique_ptr<std::remove_pointer_t<Descriptor>, Destroy<Descriptor, destroy>>;
using TensorDescriptor = Owned<cudnnTensorDescriptor_t, cudnnDestroyTensorDescriptor>;
using FilterDescriptor = Owned<cudnnFilterDescriptor_t, cudnnDestroyFilterDescriptor>;
using ConvolutionDescriptor =
    Owned<cudnnConvolutionDescriptor_t, cudnnDestroyConvolutionDescriptor>;

template <typename Algo>
struct Choice {
  Algo algo;
  size_t workspace;  // bytes
};

/// One shape's descriptors (dense NCHW / OIHW float32) and the algorithm of each pass, chosen
/// when the pass first runs.
struct ConvPlan {
  TensorDescriptor x, y, bias;
  FilterDescriptor w;
  ConvolutionDescriptor conv;
  std::optional<Choice<FwdAlgo>> forward;
  std::optional<Choice<DataAlgo>> backward_data;
  std::optional<Choice<FilterAlgo>> backward_filter;
};

TensorDescriptor tensor_descriptor(int64_t n, int64_t c, int64_t h, int64_t w, const char* op) {
  cudnnTensorDescriptor_t raw = nullptr;
  LATTICE_CUDNN_CHECK(cudnnCreateTensorDescriptor(&raw), op);
  TensorDescriptor owned(raw);
  LATTICE_CUDNN_CHECK(cudnnSetTensor4dDescriptor(raw, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, int(n),
                                                 int(c), int(h), int(w)),
                      op);
  return owned;
}

std::unique_ptr<ConvPlan> describe_plan(const ConvShape& s, const char* op) {
  const Window& g = s.window;
  auto plan = std::make_unique<ConvPlan>();
  plan->x = tensor_descriptor(s.images, s.channels, g.height, g.width, op);
  plan->y = tensor_descriptor(s.images, s.out_channels, g.out_h, g.out_w, op);
  plan->bias = tensor_descriptor(1, s.out_channels, 1, 1, op);
  cudnnFilterDescriptor_t filter = nullptr;
  LATTICE_CUDNN_CHECK(cudnnCreateFilterDescriptor(&filter), op);
  plan->w.reset(filter);
  LATTICE_CUDNN_CHECK(
      cudnnSetFilter4dDescriptor(filter, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, int(s.out_channels),
                                 int(s.channels / s.groups), int(g.kernel_h), int(g.kernel_w)),
      op);
  cudnnConvolutionDescriptor_t conv = nullptr;
  LATTICE_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&conv), op);
  plan->conv.reset(conv);
  // Cross-correlation (no kernel flip), as PyTorch's and oneDNN's convolutions.
  LATTICE_CUDNN_CHECK(
      cudnnSetConvolution2dDescriptor(conv, int(g.padding_h), int(g.padding_w), int(g.stride_h),
                                      int(g.stride_w), int(g.dilation_h), int(g.dilation_w),
                                      CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
      op);
  LATTICE_CUDNN_CHECK(cudnnSetConvolutionGroupCount(conv, int(s.groups)), op);
  // FMA math: fp32 multiply-adds only. The default would let Ampere and later GPUs round the
  // operands to TF32 on the tensor cores.
  LATTICE_CUDNN_CHECK(cudnnSetConvolutionMathType(conv, CUDNN_FMA_MATH), op);
  int n = 0, c = 0, h = 0, w = 0;
  LATTICE_CUDNN_CHECK(
      cudnnGetConvolution2dForwardOutputDim(conv, plan->x.get(), filter, &n, &c, &h, &w), op);
  LATTICE_CHECK(n == s.images && c == s.out_channels && h == g.out_h && w == g.out_w, "[", op,
                "] cuDNN's output (", n, ", ", c, ", ", h, ", ", w, ") differs from the window's ",
                describe_shape(s));
  return plan;
}

// Algorithms whose outputs are fp32 sums of the products x * w (and, below, those cuDNN names).
bool sums_products(FwdAlgo a) {
  return a == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM ||
         a == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM ||
         a == CUDNN_CONVOLUTION_FWD_ALGO_GEMM || a == CUDNN_CONVOLUTION_FWD_ALGO_DIRECT;
}
bool sums_products(DataAlgo a) {
  return a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_0 || a == CUDNN_CONVOLUTION_BWD_DATA_ALGO_1;
}
bool sums_products(FilterAlgo a) {
  return a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0 || a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1 ||
         a == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3;
}

const char* algorithm_name(FwdAlgo a) {
  switch (a) {
    case CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM:
      return "IMPLICIT_GEMM";
    case CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM:
      return "IMPLICIT_PRECOMP_GEMM";
    case CUDNN_CONVOLUTION_FWD_ALGO_GEMM:
      return "GEMM";
    case CUDNN_CONVOLUTION_FWD_ALGO_DIRECT:
      return "DIRECT";
    default:
      return "FFT or WINOGRAD";
  }
}
const char* algorithm_name(DataAlgo a) {
  switch (a) {
    case CUDNN_CONVOLUTION_BWD_DATA_ALGO_0:
      return "ALGO_0";
    case CUDNN_CONVOLUTION_BWD_DATA_ALGO_1:
      return "ALGO_1";
    default:
      return "FFT or WINOGRAD";
  }
}
const char* algorithm_name(FilterAlgo a) {
  switch (a) {
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0:
      return "ALGO_0";
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1:
      return "ALGO_1";
    case CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3:
      return "ALGO_3";
    default:
      return "FFT or WINOGRAD";
  }
}

/// Workspaces above this are passed over (a fixed bound, so the choice stays reproducible).
constexpr size_t kWorkspaceLimit = size_t(1) << 30;

/// The first usable algorithm of cuDNN's heuristic ranking (best first) that runs in fp32 FMA
/// math, deterministically, summing products; failing those, the first usable of `fallbacks`.
/// Usable: cuDNN reports a workspace size for it on this shape, at most kWorkspaceLimit.
/// workspace_of(algo, &bytes) returns cuDNN's status.
template <typename Algo, typename Perf, typename WorkspaceOf>
Choice<Algo> choose_algorithm(const char* pass,
                              const char* op,
                              const ConvShape& s,
                              const std::vector<Perf>& ranked,
                              std::initializer_list<Algo> fallbacks,
                              WorkspaceOf workspace_of) {
  std::vector<Algo> candidates;
  for (const Perf& perf : ranked)
    if (perf.status == CUDNN_STATUS_SUCCESS && perf.determinism == CUDNN_DETERMINISTIC &&
        (perf.mathType == CUDNN_FMA_MATH || perf.mathType == CUDNN_DEFAULT_MATH) &&
        sums_products(perf.algo))
      candidates.push_back(perf.algo);
  candidates.insert(candidates.end(), fallbacks);
  std::string refused;
  for (Algo algo : candidates) {
    size_t bytes = 0;
    const cudnnStatus_t status = workspace_of(algo, &bytes);
    if (status == CUDNN_STATUS_SUCCESS && bytes <= kWorkspaceLimit) return {algo, bytes};
    refused += concat(refused.empty() ? "" : ", ", algorithm_name(algo), ": ",
                      status == CUDNN_STATUS_SUCCESS ? concat(bytes, " bytes of workspace")
                                                     : std::string(cudnnGetErrorString(status)));
    clear_cudnn_message();
  }
  throw Error(concat("[", op, "] cuDNN offers no deterministic fp32 ", pass,
                     " algorithm that sums products for ", describe_shape(s), " (", refused, ")"));
}

enum class Pass { forward, backward_data, backward_filter };

void choose(ConvPlan& p, Pass pass, cudnnHandle_t handle, const ConvShape& s, const char* op) {
  int count = 0, returned = 0;
  if (pass == Pass::forward && !p.forward) {
    LATTICE_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithmMaxCount(handle, &count), op);
    std::vector<cudnnConvolutionFwdAlgoPerf_t> ranked(size_t(std::max(count, 1)));
    LATTICE_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(
                            handle, p.x.get(), p.w.get(), p.conv.get(), p.y.get(),
                            int(ranked.size()), &returned, ranked.data()),
                        op);
    ranked.resize(size_t(std::max(returned, 0)));
    p.forward = choose_algorithm<FwdAlgo>("forward", op, s, ranked,
                                          {CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM,
                                           CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM},
                                          [&](FwdAlgo algo, size_t* bytes) {
                                            return cudnnGetConvolutionForwardWorkspaceSize(
                                                handle, p.x.get(), p.w.get(), p.conv.get(),
                                                p.y.get(), algo, bytes);
                                          });
  }
  if (pass == Pass::backward_data && !p.backward_data) {
    LATTICE_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(handle, &count), op);
    std::vector<cudnnConvolutionBwdDataAlgoPerf_t> ranked(size_t(std::max(count, 1)));
    LATTICE_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(
                            handle, p.w.get(), p.y.get(), p.conv.get(), p.x.get(),
                            int(ranked.size()), &returned, ranked.data()),
                        op);
    ranked.resize(size_t(std::max(returned, 0)));
    p.backward_data = choose_algorithm<DataAlgo>(
        "backward-data", op, s, ranked, {CUDNN_CONVOLUTION_BWD_DATA_ALGO_1},
        [&](DataAlgo algo, size_t* bytes) {
          return cudnnGetConvolutionBackwardDataWorkspaceSize(handle, p.w.get(), p.y.get(),
                                                              p.conv.get(), p.x.get(), algo, bytes);
        });
  }
  if (pass == Pass::backward_filter && !p.backward_filter) {
    LATTICE_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(handle, &count), op);
    std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> ranked(size_t(std::max(count, 1)));
    LATTICE_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(
                            handle, p.x.get(), p.y.get(), p.conv.get(), p.w.get(),
                            int(ranked.size()), &returned, ranked.data()),
                        op);
    ranked.resize(size_t(std::max(returned, 0)));
    p.backward_filter = choose_algorithm<FilterAlgo>(
        "backward-filter", op, s, ranked, {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1},
        [&](FilterAlgo algo, size_t* bytes) {
          return cudnnGetConvolutionBackwardFilterWorkspaceSize(
              handle, p.x.get(), p.y.get(), p.conv.get(), p.w.get(), algo, bytes);
        });
  }
}

using PlanKey = std::array<int64_t, 16>;

struct PlanCache {
  std::mutex mutex;
  std::map<PlanKey, std::unique_ptr<ConvPlan>> plans;  // never erased: references stay valid
};

PlanCache& plan_cache() {
  static PlanCache* cache = new PlanCache;  // never destroyed: cuDNN may be unloaded first
  return *cache;
}

/// The plan of `s` with the algorithm of each of `passes` chosen. A chosen algorithm never
/// changes, so the caller reads it without the lock.
const ConvPlan& plan_for(const ConvShape& s,
                         std::initializer_list<Pass> passes,
                         cudnnHandle_t handle,
                         const char* op) {
  const Window& g = s.window;
  const PlanKey key = {s.images,    s.channels,  s.out_channels, s.groups,
                       g.kernel_h,  g.kernel_w,  g.stride_h,     g.stride_w,
                       g.padding_h, g.padding_w, g.dilation_h,   g.dilation_w,
                       g.height,    g.width,     g.out_h,        g.out_w};
  PlanCache& cache = plan_cache();
  std::lock_guard<std::mutex> lock(cache.mutex);
  std::unique_ptr<ConvPlan>& plan = cache.plans[key];
  if (!plan) {
    std::unique_ptr<ConvPlan> described = describe_plan(s, op);  // throws before caching
    plan = std::move(described);
  }
  for (Pass pass : passes) choose(*plan, pass, handle, s, op);
  return *plan;
}

/// A pass's workspace from the caching allocator, none for 0 bytes. Freed when the call is
/// queued: the stream runs later work after it, so a reuse of the block waits for it.
struct Workspace {
  void* data = nullptr;
  explicit Workspace(size_t bytes) {
    if (bytes > 0) data = cuda_allocate(int64_t(bytes));
  }
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  ~Workspace() {
    cuda_free(data);
  }
};

// grad_y: (images, channels, positions), grad_bias: (channels). A block per channel (striding
// over channels past the grid): each thread sums its strided share of the channel's entries in
// order, then the block adds the partial sums pairwise in a fixed tree, so the result does not
// depend on timing. kThreads (a power of two) threads per block.
__global__ void bias_gradient_kernel(
    const float* grad_y, float* grad_bias, int64_t images, int64_t channels, int64_t positions) {
  __shared__ float partial[kThreads];
  const int64_t count = images * positions;
  for (int64_t c = blockIdx.x; c < channels; c += gridDim.x) {
    float total = 0.0f;
    for (int64_t e = threadIdx.x; e < count; e += blockDim.x)
      total += grad_y[((e / positions) * channels + c) * positions + e % positions];
    partial[threadIdx.x] = total;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
      if (int(threadIdx.x) < half) partial[threadIdx.x] += partial[threadIdx.x + half];
      __syncthreads();
    }
    if (threadIdx.x == 0) grad_bias[c] = partial[0];
    __syncthreads();  // partial is rewritten for the next channel
  }
}

}  // namespace

bool cudnn_convolution_built() {
  return true;
}

// ConvBf16 is a permission: cuDNN's fp32 products of bf16 values are as exact.
void conv2d_forward_cuda(
    const ConvShape& s, const float* x, const float* w, const float* bias, float* y, ConvBf16) {
  const char* op = "conv2d_forward_cuda";
  check_shape(s, op);
  cudnnHandle_t handle = cudnn_handle(op);
  const ConvPlan& plan = plan_for(s, {Pass::forward}, handle, op);
  const Choice<FwdAlgo> choice = *plan.forward;
  const float one = 1.0f, zero = 0.0f;
  {
    const Workspace workspace(choice.workspace);
    LATTICE_CUDNN_CHECK(cudnnConvolutionForward(handle, &one, plan.x.get(), x, plan.w.get(), w,
                                                plan.conv.get(), choice.algo, workspace.data,
                                                choice.workspace, &zero, plan.y.get(), y),
                        op);
  }
  // y += bias, broadcast over images and positions: one fp32 addition per element.
  if (bias != nullptr)
    LATTICE_CUDNN_CHECK(cudnnAddTensor(handle, &one, plan.bias.get(), bias, &one, plan.y.get(), y),
                        op);
}

void conv2d_backward_cuda(const ConvShape& s,
                          const float* x,
                          const float* w,
                          const float* grad_y,
                          float* grad_x,
                          float* grad_w,
                          float* grad_bias,
                          ConvBf16) {
  const char* op = "conv2d_backward_cuda";
  check_shape(s, op);
  LATTICE_CHECK((grad_x == nullptr || w != nullptr) && (grad_w == nullptr || x != nullptr), "[", op,
                "] grad_x needs w and grad_w needs x");
  if (grad_x == nullptr && grad_w == nullptr && grad_bias == nullptr) return;
  cudnnHandle_t handle = cudnn_handle(op);
  const float one = 1.0f, zero = 0.0f;
  if (grad_x != nullptr) {
    const ConvPlan& plan = plan_for(s, {Pass::backward_data}, handle, op);
    const Choice<DataAlgo> choice = *plan.backward_data;
    const Workspace workspace(choice.workspace);
    LATTICE_CUDNN_CHECK(
        cudnnConvolutionBackwardData(handle, &one, plan.w.get(), w, plan.y.get(), grad_y,
                                     plan.conv.get(), choice.algo, workspace.data, choice.workspace,
                                     &zero, plan.x.get(), grad_x),
        op);
  }
  if (grad_w != nullptr) {
    const ConvPlan& plan = plan_for(s, {Pass::backward_filter}, handle, op);
    const Choice<FilterAlgo> choice = *plan.backward_filter;
    const Workspace workspace(choice.workspace);
    LATTICE_CUDNN_CHECK(
        cudnnConvolutionBackwardFilter(handle, &one, plan.x.get(), x, plan.y.get(), grad_y,
                                       plan.conv.get(), choice.algo, workspace.data,
                                       choice.workspace, &zero, plan.w.get(), grad_w),
        op);
  }
  if (grad_bias != nullptr) {
    const int blocks = int(std::min<int64_t>(s.out_channels, 65535));
    bias_gradient_kernel<<<blocks, kThreads, 0, cuda::stream()>>>(
        grad_y, grad_bias, s.images, s.out_channels, s.window.out_h * s.window.out_w);
    LATTICE_CUDA_LAUNCHED(op);
  }
}

std::string describe_cudnn_convolution(const ConvShape& s) {
  const char* op = "describe_cudnn_convolution";
  check_shape(s, op);
  cudnnHandle_t handle = cudnn_handle(op);
  const ConvPlan& plan =
      plan_for(s, {Pass::forward, Pass::backward_data, Pass::backward_filter}, handle, op);
  return concat("cuDNN ", cudnn_version_text(cudnnGetVersion()), ": forward ",
                algorithm_name(plan.forward->algo), " (", plan.forward->workspace,
                " B workspace), backward-data ", algorithm_name(plan.backward_data->algo), " (",
                plan.backward_data->workspace, " B), backward-filter ",
                algorithm_name(plan.backward_filter->algo), " (", plan.backward_filter->workspace,
                " B)");
}

}  // namespace lattice
