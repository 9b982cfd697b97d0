// GemmRecipe spellings: the precision-stack spec's names for each knob, in enum order.
#include "tensor/gemm_recipe.h"

#include "core/error.h"
#include "core/text.h"

namespace lattice {
namespace {

template <typename Enum, size_t N>
Enum parse_name(const char* what, const std::string& text, const char* const (&names)[N]) {
  const std::string name = lowercase(text);
  for (size_t i = 0; i < N; ++i)
    if (name == names[i]) return Enum(i);
  std::string known;
  for (size_t i = 0; i < N; ++i) known += (i ? ", " : "") + std::string(names[i]);
  throw Error(concat("[recipe] unknown ", what, " \"", text, "\" (known: ", known, ")"));
}

// Spellings in enum order.
constexpr const char* kMaxApprox[] = {"ste", "absmax", "softsoftmax", "hardsoftmax"};
constexpr const char* kStepGradient[] = {"ste", "baseline", "spline", "sigmoid"};
constexpr const char* kScaleGradient[] = {"ste", "baseline", "spline"};
constexpr const char* kTensorScaleGradient[] = {"ignore", "absmax", "ste"};
constexpr const char* kStochasticRounding[] = {"none", "all", "backward", "intelfp4"};
constexpr const char* kHadamard[] = {"none", "all", "backward"};

}  // namespace

MaxApprox parse_max_approx(const std::string& text) {
  return parse_name<MaxApprox>("max approximation", text, kMaxApprox);
}
StepGradient parse_step_gradient(const std::string& text) {
  return parse_name<StepGradient>("step gradient", text, kStepGradient);
}
ScaleGradient parse_scale_gradient(const std::string& text) {
  return parse_name<ScaleGradient>("scale gradient", text, kScaleGradient);
}
TensorScaleGradient parse_tensor_scale_gradient(const std::string& text) {
  return parse_name<TensorScaleGradient>("tensor-scale gradient", text, kTensorScaleGradient);
}
StochasticRounding parse_stochastic_rounding(const std::string& text) {
  return parse_name<StochasticRounding>("stochastic rounding mode", text, kStochasticRounding);
}
HadamardPlacement parse_hadamard(const std::string& text) {
  return parse_name<HadamardPlacement>("hadamard placement", text, kHadamard);
}
std::string to_string(MaxApprox v) {
  return kMaxApprox[int(v)];
}
std::string to_string(StepGradient v) {
  return kStepGradient[int(v)];
}
std::string to_string(ScaleGradient v) {
  return kScaleGradient[int(v)];
}
std::string to_string(TensorScaleGradient v) {
  return kTensorScaleGradient[int(v)];
}
std::string to_string(StochasticRounding v) {
  return kStochasticRounding[int(v)];
}
std::string to_string(HadamardPlacement v) {
  return kHadamard[int(v)];
}
}  // namespace lattice
