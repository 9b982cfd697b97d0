// Precision-stack specs: parsing, canonical printing that round-trips, errors that point at
// the bad item, and the thread-local scope.
#include <doctest/doctest.h>

#include <string>
#include <thread>

#include "core/error.h"
#include "precision_support.h"
#include "tensor/precision_stack.h"

using namespace lattice;

TEST_CASE("an empty spec and \"fp32\" are the all-fp32 stack, printed back as fp32") {
  CHECK(parse_precision_stack("") == PrecisionStack{});
  CHECK(parse_precision_stack("FP32") == PrecisionStack{});
  CHECK(to_string(PrecisionStack{}) == "fp32");
}

TEST_CASE("w=bf16,a=bf16,g=bf16 sets the three working lattices and nothing else") {
  const PrecisionStack s = parse_precision_stack("w=bf16,a=bf16,g=bf16");
  CHECK(s.weights.element == bf16);
  CHECK(s.activations.element == bf16);
  CHECK(s.gradients.element == bf16);
  CHECK(!s.weights.scaling);
  CHECK(s.gemm == GemmQuantizers{});
  CHECK(to_string(s) == "w=bf16,a=bf16,g=bf16");
}

TEST_CASE("gemm=mxfp4,gemm.bwd=mxfp4:sr: later items override earlier ones per operand") {
  const PrecisionStack s = parse_precision_stack("gemm=mxfp4,gemm.bwd=mxfp4:sr");
  const Quantizer mxfp4 = parse_quantizer("mxfp4");
  CHECK(s.gemm.input == mxfp4);
  CHECK(s.gemm.weight == mxfp4);
  CHECK(s.gemm.output_grad.rounding.mode == RoundingMode::stochastic);
  CHECK(s.gemm.saved_input.rounding.mode == RoundingMode::stochastic);
  CHECK(s.gemm.saved_weight.scaling == mxfp4.scaling);
  CHECK(to_string(s) == "gemm.fwd=mxfp4,gemm.bwd=mxfp4:sr");
}

TEST_CASE("quantizer options build any block quantizer and print back canonically") {
  const Quantizer q =
      parse_quantizer_spec("e2m1:b16:scale=ue5m3:rule=encode:ts:scale_round=sr:zero=one:sr16");
  REQUIRE(q.scaling);
  CHECK(q.element == e2m1);
  CHECK(q.scaling->block_size == 16);
  CHECK(q.scaling->scale_format == ue5m3);
  CHECK(q.scaling->rule == ScaleRule::encode);
  CHECK(q.scaling->tensor_scale);
  CHECK(q.scaling->scale_rounding == RoundingMode::stochastic);
  CHECK(q.scaling->zero_scale == ZeroScale::to_one);
  CHECK(q.rounding.random_bits == 16);
  CHECK(parse_quantizer_spec(to_string(q)) == q);
  CHECK(to_string(parse_quantizer_spec("nvfp4")) == "nvfp4");
  CHECK(to_string(parse_quantizer_spec("nvfp4:b32")) == "e2m1:scale=ue4m3:rule=nvfp4");
  CHECK(to_string(parse_quantizer_spec("e4m3:b32")) == "mxfp8");
  CHECK(to_string(parse_quantizer_spec("bf16:rtz:overflow=saturate:flush")) ==
        "bf16:rtz:overflow=saturate:flush");
}

TEST_CASE("every slot of the stack round-trips through its canonical spec") {
  const char* specs[] = {
      "w=bf16:sr,a=e4m3:overflow=saturate,g=e5m2",
      ("gemm.x=mxfp8,gemm.w=nvfp4,gemm.dy=mxfp4:sr,gemm.bwd.x=e2m1:b16:scale=e4m3:rule=encode,"
       "gemm.bwd.w=bf16"),  // one spec on two lines
      "acc=bf16:k32,opt=bf16:sr,master=bf16",
      "gemm=e2m1:b32:scale=fp32:rule=encode:ts:axis=0",
  };
  for (const char* spec : specs) {
    CAPTURE(spec);
    const PrecisionStack s = parse_precision_stack(spec);
    CHECK(parse_precision_stack(to_string(s)) == s);
  }
  CHECK(to_string(parse_precision_stack("acc=bf16:k32,opt=bf16:sr,master=bf16")) ==
        "acc=bf16:k32,opt=bf16:sr,master=bf16");
  CHECK(parse_precision_stack("acc=bf16:k32").accumulator.round_every == 32);
}

TEST_CASE("block scaling that matches no named quantizer survives printing (gemm=fp16:b32)") {
  CHECK(to_string(parse_precision_stack("gemm=fp16:b32")) == "gemm=fp16:b32");
  CHECK(to_string(parse_precision_stack("gemm.x=e2m18:axis=-1")) == "gemm.x=e2m18:b32");
  CHECK(parse_precision_stack("gemm.x=e2m18:b32") == parse_precision_stack("gemm.x=e2m18:axis=-1"));
  // The signed float e8m0 is not the OCP scale format that "e8m0" names.
  const PrecisionStack signed_e8m0 = parse_precision_stack("w=e8m00");
  CHECK(signed_e8m0.weights.element != ue8m0);
  CHECK(parse_precision_stack(to_string(signed_e8m0)) == signed_e8m0);
}

TEST_CASE("parse(print(s)) == s and print is a fixed point, for every key, base and option") {
  const char* keys[] = {"w",        "a",      "g",      "opt",     "gemm",       "gemm.fwd",
                        "gemm.bwd", "gemm.x", "gemm.w", "gemm.dy", "gemm.bwd.x", "gemm.bwd.w"};
  const char* bases[] = {"fp32",       "bf16",   "fp16",   "e4m3",  "e5m2",       "e2m1",
                         "e2m3",       "e3m2",   "int8",   "int4",  "e2m18",      "e8m00",
                         "e5m2ieee",   "e3m4b5", "e4m3fn", "mxfp8", "mxfp8_e5m2", "mxfp6",
                         "mxfp6_e3m2", "mxfp4",  "mxint8", "nvfp4"};
  const char* options[] = {"",
                           "rne",
                           "rna",
                           "rtz",
                           "rup",
                           "rdn",
                           "sr",
                           "sr8",
                           "b16",
                           "b32",
                           "b64",
                           "scale=e4m3",
                           "scale=ue8m0",
                           "rule=encode",
                           "rule=nvfp4",
                           "rule=mx",
                           "scale_round=rup",
                           "scale_round=sr",
                           "ts",
                           "zero=one",
                           "zero=subnormal",
                           "overflow=saturate",
                           "overflow=inf",
                           "flush",
                           "axis=0",
                           "axis=-1",
                           "axis=1"};
  int round_trips = 0;
  const auto check_round_trip = [&](const std::string& spec) {
    PrecisionStack s;
    try {
      s = parse_precision_stack(spec);
    } catch (const Error&) {
      return;  // an invalid combination (e.g. the mx rule with e4m3 scales)
    }
    CAPTURE(spec);
    const std::string printed = to_string(s);
    CAPTURE(printed);
    const PrecisionStack reparsed = parse_precision_stack(printed);
    CHECK(reparsed == s);
    CHECK(to_string(reparsed) == printed);
    ++round_trips;
  };
  // Every key with every base and one option; every pair of options on one key.
  for (const char* key : keys)
    for (const char* base : bases)
      for (const char* option : options)
        check_round_trip(std::string(key) + "=" + base + (*option ? ":" : "") + option);
  for (const char* base : bases)
    for (const char* first : options)
      for (const char* second : options)
        if (*first && *second)
          check_round_trip(std::string("gemm.x=") + base + ":" + first + ":" + second);
  for (const char* recipe :
       {"gemm.sr=all", "gemm.sr=backward", "gemm.sr=intelfp4", "gemm.hadamard=all",
        "gemm.hadamard=backward", "gemm.max=absmax", "gemm.max=softsoftmax", "gemm.alpha=12.5",
        "gemm.step_grad=spline", "gemm.scale_grad=baseline", "gemm.ts_grad=absmax", "acc=bf16",
        "acc=e5m2:k4", "master=bf16", "master=e8m00", "master=bf16:sr", "master=fp16:rtz"})
    check_round_trip(std::string("gemm=mxfp4,") + recipe);
  for (const NamedStack& named : named_stacks()) check_round_trip(named.name);
  CHECK(round_trips > 5000);  // most of the grid above is valid
}

TEST_CASE("a malformed spec names the spec, the bad item and what was expected") {
  const std::string unknown_format = test::stack_error("w=bf16,gemm=mxfp5");
  CHECK(unknown_format.find("[stack] \"w=bf16,gemm=mxfp5\" at \"gemm=mxfp5\"") == 0);
  CHECK(unknown_format.find("mxfp4") != std::string::npos);  // lists the known names
  CHECK(test::stack_error("w=bf16,x=bf16").find("unknown key \"x\"") != std::string::npos);
  CHECK(test::stack_error("w").find("expected key=value") != std::string::npos);
  CHECK(test::stack_error("w=").find("empty value") != std::string::npos);
  CHECK(test::stack_error("gemm=mxfp4:q9").find("unknown option \"q9\"") != std::string::npos);
  CHECK(test::stack_error("gemm=mxfp4:").find("empty option") != std::string::npos);
  CHECK(test::stack_error("gemm=e2m1:b0").find("block size must be 1 to 65536, got 0") !=
        std::string::npos);
  // A huge block is refused by the grammar, not by an allocation failure at step 1.
  CHECK(test::stack_error("gemm=e2m1:b999999999").find("block size must be 1 to 65536") !=
        std::string::npos);
  CHECK(test::stack_error("gemm=e2m1:scale=ue4m3").find("mx rule takes ue8m0") !=
        std::string::npos);
  CHECK(test::stack_error("acc=bf16:32").find("acc takes FORMAT[:k<N>]") != std::string::npos);
  CHECK(test::stack_error("master=mxfp4")
            .find("master takes an element FORMAT with its "
                  "rounding") != std::string::npos);
  CHECK(test::stack_error("w=bf16:sr99").find("1 to 32 random bits") != std::string::npos);
  // Λa and Λg round scalars too (the loss): block scaling there is refused when parsed, not at
  // the first step with a message about rank-0 arrays.
  CHECK(test::stack_error("a=mxfp4").find("a= takes an elementwise quantizer") !=
        std::string::npos);
  CHECK(test::stack_error("g=e4m3:b16").find("g= takes an elementwise quantizer") !=
        std::string::npos);
}

TEST_CASE("a PrecisionScope makes its stack current on its thread until it ends; scopes nest") {
  CHECK(current_precision() == PrecisionStack{});
  {
    PrecisionScope outer(parse_precision_stack("w=bf16"));
    CHECK(current_precision().weights.element == bf16);
    {
      PrecisionScope inner(parse_precision_stack("gemm=mxfp4"));
      CHECK(current_precision().weights.element == fp32);
      CHECK(current_precision().gemm.input == parse_quantizer("mxfp4"));
    }
    CHECK(current_precision().weights.element == bf16);
    bool other_thread_sees_fp32 = false;
    std::thread([&] { other_thread_sees_fp32 = current_precision() == PrecisionStack{}; }).join();
    CHECK(other_thread_sees_fp32);
  }
  CHECK(current_precision() == PrecisionStack{});
}
