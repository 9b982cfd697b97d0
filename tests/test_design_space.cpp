// FP4 design-space bookkeeping: the recipe tokens of the stack spec (round trip, one-line
// errors), named stacks with overrides, complexity points and Score against hand values.
#include <doctest/doctest.h>

#include <cmath>
#include <string>

#include "core/error.h"
#include "precision_support.h"
#include "tensor/design_space.h"
#include "tensor/precision_stack.h"

using namespace lattice;

TEST_CASE("every recipe knob is a spec token that round-trips canonically") {
  const std::string spec =
      "gemm=e2m1:b16:scale=ue5m3:rule=encode:ts,gemm.sr=intelfp4,gemm.hadamard=backward,"
      "gemm.max=softsoftmax,gemm.alpha=40.5,gemm.step_grad=spline,gemm.scale_grad=baseline,"
      "gemm.ts_grad=absmax";
  const PrecisionStack s = parse_precision_stack(spec);
  const GemmRecipe& r = s.gemm.recipe;
  CHECK(r.stochastic_rounding == StochasticRounding::intel_fp4);
  CHECK(r.hadamard == HadamardPlacement::backward);
  CHECK(r.max_approx == MaxApprox::softsoftmax);
  CHECK(r.alpha == 40.5);
  CHECK(r.step_gradient == StepGradient::spline);
  CHECK(r.scale_gradient == ScaleGradient::baseline);
  CHECK(r.tensor_scale_gradient == TensorScaleGradient::absmax);
  CHECK(to_string(s) == spec);
  CHECK(parse_precision_stack(to_string(s)) == s);
  // gemm= sets the five quantizers and keeps the recipe, whatever the item order.
  CHECK(parse_precision_stack("gemm.sr=all,gemm=mxfp4").gemm.recipe.stochastic_rounding ==
        StochasticRounding::all);
  for (const char* knob :
       {"gemm.sr=backward", "gemm.sr=all", "gemm.hadamard=all", "gemm.max=absmax",
        "gemm.max=hardsoftmax", "gemm.step_grad=baseline", "gemm.step_grad=sigmoid",
        "gemm.scale_grad=spline", "gemm.ts_grad=ste"}) {
    CAPTURE(knob);
    const PrecisionStack k = parse_precision_stack(std::string("gemm=mxfp4,") + knob);
    CHECK(to_string(k) == std::string("gemm=mxfp4,") + knob);
  }
}

TEST_CASE("design-space spellings of NaN mode and scale rounding map onto the quantizer options") {
  const Quantizer q = parse_quantizer_spec(
      "e2m1:b16:scale=e4m3:rule=encode:zero=to_one:scale_round=towardpositive");
  CHECK(q.scaling->zero_scale == ZeroScale::to_one);
  CHECK(q.scaling->scale_rounding == RoundingMode::toward_positive);
  CHECK(parse_quantizer_spec("e2m1:b16:scale=e4m3:rule=encode:zero=nearest_subnormal:"
                             "scale_round=stochastic") ==
        parse_quantizer_spec("e2m1:b16:scale=e4m3:rule=encode:zero=subnormal:scale_round=sr"));
  CHECK(parse_quantizer_spec("e2m1:b16:scale=e4m3:rule=encode:scale_round=tiestoeven") ==
        parse_quantizer_spec("e2m1:b16:scale=e4m3:rule=encode"));
}

TEST_CASE("bad recipe items give one-line errors quoting the spec and the item") {
  const std::string bad_sr = test::stack_error("mxfp4,gemm.sr=maybe");
  CHECK(bad_sr.find("[stack] \"mxfp4,gemm.sr=maybe\" at \"gemm.sr=maybe\"") == 0);
  CHECK(bad_sr.find("unknown stochastic rounding mode \"maybe\"") != std::string::npos);
  CHECK(bad_sr.find("intelfp4") != std::string::npos);
  CHECK(test::stack_error("gemm.max=smooth").find("softsoftmax") != std::string::npos);
  CHECK(test::stack_error("gemm.alpha=-1").find("positive number") != std::string::npos);
  CHECK(test::stack_error("gemm.alpha=8x").find("positive number") != std::string::npos);
  CHECK(test::stack_error("gemm=e2m1:b24:scale=fp32:rule=encode,gemm.hadamard=all")
            .find("power of two long, got 24") != std::string::npos);
  const std::string unknown = test::stack_error("nvfp5,gemm.sr=all");
  CHECK(unknown.find("[stack] \"nvfp5,gemm.sr=all\" at \"nvfp5\"") == 0);
  CHECK(unknown.find("pure-fp4-ue5m3") != std::string::npos);
  CHECK(unknown.find('\n') == std::string::npos);
}

TEST_CASE("named stacks parse, round-trip and take overrides") {
  for (const char* name :
       {"fp32", "bf16", "fp16", "fp8-e4m3", "mxfp8", "mxfp4", "nvfp4", "ue5m3-fp4", "pure-fp4-e8m0",
        "pure-fp4-e4m3", "pure-fp4-ue5m3", "pure-fp4-e8m3", "pure-fp4-fp32"}) {
    CAPTURE(name);
    const PrecisionStack s = parse_precision_stack(name);
    CHECK(parse_precision_stack(to_string(s)) == s);
    CHECK(s.gemm.recipe == GemmRecipe{});
  }
  CHECK(parse_precision_stack("fp32") == PrecisionStack{});
  CHECK(to_string(parse_precision_stack("mxfp4")) == "gemm=mxfp4");
  CHECK(to_string(parse_precision_stack("pure-fp4-e4m3")) ==
        "gemm=e2m1:b16:scale=e4m3:rule=encode");
  CHECK(parse_precision_stack("pure-fp4-e8m0").gemm.input.scaling->block_size == 32);
  CHECK(parse_precision_stack("pure-fp4-ue5m3").gemm.saved_weight.scaling->block_size == 16);
  // Overrides apply after the named stack, left to right.
  const PrecisionStack s = parse_precision_stack("nvfp4,gemm.sr=backward,gemm.x=mxfp4");
  CHECK(s.gemm.recipe.stochastic_rounding == StochasticRounding::backward);
  CHECK(s.gemm.input == parse_quantizer("mxfp4"));
  CHECK(s.gemm.weight == parse_quantizer("nvfp4"));
  CHECK(to_string(s) == "gemm.x=mxfp4,gemm.w=nvfp4,gemm.bwd=nvfp4,gemm.sr=backward");
}

TEST_CASE("complexity points add the design-space weights of each non-default knob") {
  const auto cp = [](const char* spec, TrainingKnobs training = {}) {
    return complexity_points(parse_precision_stack(spec), training);
  };
  CHECK(cp("fp32") == 0.0);
  CHECK(cp("mxfp4") == 0.0);
  CHECK(cp("pure-fp4-e4m3") == 0.0);
  CHECK(cp("nvfp4") == 0.5);      // a tensor scale
  CHECK(cp("ue5m3-fp4") == 0.5);  // encode:ts
  CHECK(cp("mxfp4,gemm.sr=backward,gemm.hadamard=backward") == 1.5);
  CHECK(cp("gemm=mxfp4:sr") == 0.5);  // SR spelled on the operand quantizer counts too
  CHECK(cp("pure-fp4-e4m3,gemm.max=absmax,gemm.step_grad=spline") == 5.0);
  // Every knob: 3 + 2 + 1 + 1.5 + 0.5 + 0.5 + 3 + 0.5 + 0.5 + 0.25.
  CHECK(cp("gemm=e2m1:b16:scale=e4m3:rule=encode:ts:scale_round=sr,gemm.max=softsoftmax,"
           "gemm.step_grad=baseline,gemm.hadamard=all,gemm.scale_grad=spline,gemm.sr=all,"
           "gemm.ts_grad=absmax",
           TrainingKnobs{.loss_scaling = true, .stable_spam = true}) == 12.75);
}

TEST_CASE("Score divides gains by max(cp, 1) and multiplies losses by it") {
  // ref 2.0, val 1.5: diff 0.25; ref 2.0, val 3.0: diff -0.5.
  CHECK(design_space_score(2.0, 1.5, 0.0) == 0.25);
  CHECK(design_space_score(2.0, 1.5, 0.5) == 0.25);
  CHECK(design_space_score(2.0, 1.5, 5.0) == 0.05);
  CHECK(design_space_score(2.0, 3.0, 0.5) == -0.5);
  CHECK(design_space_score(2.0, 3.0, 4.0) == -2.0);
  CHECK(design_space_score(2.0, 2.0, 7.0) == 0.0);
  CHECK(std::isnan(design_space_score(2.0, std::nan(""), 1.0)));
}
