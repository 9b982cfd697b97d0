// The lattice diagnostics: each instrument against an independent computation on small
// tensors (β_t from two snapshots, churn from two rounding passes, saturation from hand-counted
// cases, SNR from two forwards, attention statistics from known rows), and runs whose trained
// weights are the same bits with every instrument on as with none.
#include <doctest/doctest.h>

#include <bit>
#include <cmath>

#include "autograd/autograd.h"
#include "diagnostics/diagnostics.h"
#include "diagnostics/lattice_metrics.h"
#include "nn/layers.h"
#include "ops/ops.h"
#include "tensor/precision_stack.h"
#include "tools/plot.h"
#include "trainer_support.h"

using namespace lattice;
using namespace lattice::diagnostics;
namespace fs = std::filesystem;
using lattice::test::checkpoint_tensors;
using lattice::test::metrics;
using lattice::test::run_program;
using lattice::test::scratch_dir;
using lattice::test::tiny_mnist;
using lattice::test::trainer;

namespace {

/// The bf16 spacing at x from its bits: 2^(exponent - 127 - 7) for normals, 2^-133 below.
double bf16_spacing(float x) {
  const int exponent = int((std::bit_cast<uint32_t>(x) >> 23) & 0xff);
  return std::ldexp(1.0, std::max(exponent, 1) - 127 - 7);
}

}  // namespace

TEST_CASE("β_t counts the steps of at least half a ULP of the weight lattice, at the old value") {
  // Old values on bf16 (normal, another binade, subnormal, zero) and steps around ½ ULP.
  const std::vector<float> before = {1.0f, 1.0f, -3.0f, -3.0f, 0x1p-130f, 0.0f, 0.25f};
  std::vector<float> after(before.size());
  const std::vector<double> steps_in_ulps = {0.5, 0.49, 0.75, 0.25, 1.0, 3.0, 0.0};
  for (size_t i = 0; i < before.size(); ++i)
    after[i] = float(before[i] + steps_in_ulps[i] * bf16_spacing(before[i]));
  int64_t expected = 0;
  for (size_t i = 0; i < before.size(); ++i)
    expected += std::fabs(double(after[i]) - before[i]) >= 0.5 * bf16_spacing(before[i]);
  const UpdateStatistics kept = ulp_normalized_updates(before, after, bf16, false);
  CHECK(kept.count == 7);
  CHECK(kept.crossed == expected);
  CHECK(kept.crossing_rate() == doctest::Approx(double(expected) / 7));
  // The histogram holds every ratio once: a zero step below the lowest octave, 0.5 in [2^-1, 1).
  int64_t binned = kept.histogram.below + kept.histogram.above;
  for (int64_t c : kept.histogram.counts) binned += c;
  CHECK(binned == 7);
  CHECK(kept.histogram.below == 1);
  CHECK(kept.histogram.counts[size_t(-1 - OctaveHistogram::kLowestOctave)] == 2);  // 0.5, 0.75
  // Flushed subnormals: the subnormal and the zero weight have an infinite ULP and never cross.
  const UpdateStatistics flushed = ulp_normalized_updates(before, after, bf16, true);
  CHECK(flushed.crossed == expected - 2);
  CHECK(std::isinf(lattice_ulp(bf16, true, 0x1p-130)));
  CHECK(lattice_ulp(bf16, false, 0x1p-130) == 0x1p-133);
}

TEST_CASE("cell churn compares two rounding passes bit for bit") {
  std::vector<float> x(64), nudged(64);
  for (size_t i = 0; i < x.size(); ++i) {
    x[i] = std::sin(float(i) * 0.37f);
    nudged[i] = x[i] + (i % 3 == 0 ? 1e-3f : 1e-7f);
  }
  x[5] = 0.0f, nudged[5] = -0.0f;  // equal values, different cells' bits
  const std::vector<float> first = cast(from_vector(x), bf16).to_vector<float>();
  const std::vector<float> second = cast(from_vector(nudged), bf16).to_vector<float>();
  int64_t changed = 0, bits = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const uint32_t a = std::bit_cast<uint32_t>(first[i]), b = std::bit_cast<uint32_t>(second[i]);
    changed += a != b;
    for (uint32_t d = a ^ b; d; d &= d - 1) ++bits;
  }
  const CellChurn churn = cell_churn(first, second);
  CHECK(churn.count == 64);
  CHECK(churn.changed == changed);
  CHECK(churn.flipped_bits == bits);
  CHECK(churn.changed > 0);
  CHECK(cell_churn(first, first).changed == 0);
  CHECK_THROWS_WITH(cell_churn(first, std::vector<float>(3)),
                    "[cell_churn] rounding decisions of 64 and 3 elements");
}

TEST_CASE(
    "quantizer health counts saturation, overflow and underflow, and MX zero and clipped "
    "blocks") {
  const Quantizer e4m3_saturating = parse_quantizer_spec("e4m3:overflow=saturate");
  const std::vector<float> x = {500.0f, -1000.0f, 1e-5f, 1.0f, 448.0f, 0.0f};
  const std::vector<float> y =
      cast(from_vector(x), e4m3, e4m3_saturating.rounding).to_vector<float>();
  const std::vector<int64_t> shape = {6};
  const QuantizerHealth h = quantizer_health(e4m3_saturating, x, y, shape);
  CHECK(h.count == 6);
  CHECK(h.saturated == 3);    // 500, -1000 and 448 itself sit at ±448
  CHECK(h.underflowed == 1);  // 1e-5 is below half of e4m3's smallest subnormal 2^-9
  CHECK(h.overflowed == 0);
  CHECK(h.blocks == 0);

  // MXFP4 blocks of 32 along the last axis. Block 0: amax 7 takes the scale 2^(2-2) = 1 and 7
  // is clipped to 6 (OCP MX). Block 1: amax 4 is exact. Block 2: values below the smallest
  // scale's smallest element (2^-127 * 0.5) all become zero.
  const Quantizer mxfp4 = parse_quantizer("mxfp4");
  std::vector<float> blocks(96, 0.5f);
  blocks[3] = 7.0f;
  blocks[40] = 4.0f;
  for (size_t i = 64; i < 96; ++i) blocks[i] = 1e-42f;
  Quantizer along_last = mxfp4;
  along_last.scaling->axis = -1;
  const std::vector<int64_t> block_shape = {96};
  std::vector<float> quantized(96);
  quantize(along_last, blocks, quantized, block_shape);
  const QuantizerHealth mx = quantizer_health(along_last, blocks, quantized, block_shape);
  CHECK(mx.blocks == 3);
  CHECK(mx.clipped_blocks == 1);
  CHECK(mx.zero_blocks == 1);
  CHECK(mx.saturated == 1);  // only the clipped 7 sits at the element's max (6)
  CHECK(mx.underflowed == 32);
}

TEST_CASE("cast change rate, softmax entropy, logit spread and SNR against direct formulas") {
  CHECK(cast_change_rate(std::vector<float>{1.0f, 1.5f, 1.0f + 0x1p-10f, 3.0f}, bf16) ==
        doctest::Approx(0.25));
  CHECK(cast_change_rate(std::vector<float>{1.0f, 1.0f + 0x1p-10f}, fp16) == 0.0);

  // Head 0 uniform over 4 columns (entropy log 4), head 1 one-hot (entropy 0).
  std::vector<float> p(2 * 2 * 4, 0.0f);
  for (int r = 0; r < 2; ++r)
    for (int c = 0; c < 4; ++c) p[size_t(r * 4 + c)] = 0.25f;
  p[8] = p[12 + 3] = 1.0f;
  const std::vector<double> entropy = softmax_entropy_per_head(p, 1, 2, 2, 4);
  CHECK(entropy[0] == doctest::Approx(std::log(4.0)));
  CHECK(entropy[1] == doctest::Approx(0.0));

  // Scores of one head {1, 3, -inf (masked), 5}: std of {1, 3, 5} = sqrt(8/3), times τ = 2.
  const std::vector<float> scores = {1.0f, 3.0f, -INFINITY, 5.0f};
  const std::vector<double> tau = {2.0};
  CHECK(logit_std_per_head(scores, 1, 1, 2, 2, tau)[0] == doctest::Approx(2 * std::sqrt(8.0 / 3)));

  const std::vector<float> reference = {1.0f, -2.0f, 3.0f}, test = {1.1f, -2.0f, 2.9f};
  const double signal = 1 + 4 + 9,
               noise = std::pow(double(1.1f) - 1, 2) + std::pow(double(2.9f) - 3, 2);
  CHECK(snr_db(reference, test) == doctest::Approx(10 * std::log10(signal / noise)));
  // An error proportional to the signal is perfectly coherent.
  CHECK(error_correlation(reference, std::vector<float>{1.5f, -3.0f, 4.5f}) ==
        doctest::Approx(1.0));
}

TEST_CASE("the snr instrument compares two forwards of the same weights and batch") {
  auto model = std::make_shared<nn::Sequential>(std::vector<std::shared_ptr<nn::Module>>{
      std::make_shared<nn::Linear>(16, 8),
      std::make_shared<nn::Activation>(nn::Activation::Kind::tanh)});
  const PrecisionStack stack = parse_precision_stack("gemm=e4m3,a=bf16");
  optim::Sgd optimizer(optim::one_group(model->named_parameters(), 0.1));
  const data::Batch batch{randn({4, 16}, RandomStream{.seed = 3}), zeros({4, 8}), {0, 1, 2, 3}};
  const auto loss = [&](const data::Batch& b) { return mse((*model)(b.input), b.target); };
  const StepView view{.step = 1,
                      .model = model.get(),
                      .optimizer = &optimizer,
                      .stack = &stack,
                      .batch = &batch,
                      .loss = loss};
  nlohmann::json observed = nlohmann::json::object();
  const auto instruments = make_instruments("snr");
  instruments.at(0)->end_step(view, observed);

  std::vector<float> fp32_out, low_out;
  {
    NoGradGuard no_grad;
    fp32_out = (*model)(batch.input).to_vector<float>();
    PrecisionScope scope(stack);
    low_out = (*model)(batch.input).to_vector<float>();
  }
  double signal = 0, noise = 0;
  for (size_t i = 0; i < fp32_out.size(); ++i) {
    signal += double(fp32_out[i]) * fp32_out[i];
    noise += std::pow(double(low_out[i]) - fp32_out[i], 2);
  }
  REQUIRE(noise > 0);
  CHECK(observed["snr_db/1"].get<double>() == doctest::Approx(10 * std::log10(signal / noise)));
  CHECK(observed.contains("snr_db/0"));
}

TEST_CASE("an unknown instrument is one line naming it") {
  CHECK_THROWS_WITH(make_instruments("beta,betta"),
                    "[diagnostics] unknown instrument \"betta\": expected beta, churn, saturation, "
                    "cast:FORMAT, attention, snr, stability, default or all");
  CHECK(make_instruments("default").size() == 2);
  CHECK(make_instruments("all,beta,cast:e4m3").size() == 7);
}

TEST_CASE("every instrument on leaves the trained weights bit-identical") {
  const char* stacks[] = {"fp32", "w=bf16:sr,gemm=mxfp4,gemm.bwd=mxfp4:sr", "a=bf16:sr,g=bf16:sr"};
  for (const std::string stack : stacks) {
    CAPTURE(stack);
    const std::string common = std::string("--hidden 16 --batch 16 --steps 6 --seed 5 ") +
                               "--stack '" + stack + "' --data '" + tiny_mnist().string() + "' ";
    const fs::path plain = scratch_dir() / "plain", observed = scratch_dir() / "observed";
    fs::remove_all(plain);
    fs::remove_all(observed);
    REQUIRE(run_program(trainer("mnist"), common + "--out '" + plain.string() + "'").status == 0);
    const auto run =
        run_program(trainer("mnist"), common +
                                          "--diagnostics all,cast:e4m3 --diagnostics-every 2 "
                                          "--trace-step 3 --out '" +
                                          observed.string() + "'");
    INFO(run.err);
    REQUIRE(run.status == 0);
    CHECK(checkpoint_tensors(observed) == checkpoint_tensors(plain));
    std::vector<nlohmann::json> lines;
    for (const auto& line : metrics(observed))
      if (line.contains("loss")) lines.push_back(line);
    REQUIRE(lines.size() == 6);
    CHECK(lines[1].contains("beta"));
    CHECK(!lines[2].contains("beta"));
    CHECK(!lines[1].contains("beta_eff"));  // the first probe has nothing to compare with
    CHECK(lines[3].contains("beta_eff") == (stack != "fp32"));  // fp32 rounds nothing
    CHECK(lines[5].contains("snr_db/1"));
    // The histogram file agrees with the metrics: its mass at or above ½ ULP is β_t.
    for (int64_t step : {2, 4, 6})
      CHECK(lattice::tools::read_ulp_histogram(observed.string(), step).mass_above_half() ==
            doctest::Approx(lines[size_t(step - 1)]["beta"].get<double>()));
    const std::string trace = lattice::test::read_file(observed / "op_trace.jsonl");
    CHECK(trace.find("\"backward\":true") != std::string::npos);
    CHECK(trace.find("\"op\":\"matmul.wgrad\"") != std::string::npos);
  }
}

TEST_CASE("β_t takes each parameter's own Λw when an override gives its module one") {
  // Layer 3 lives on bf16 (with an fp32 master), the others on fp32 (updated in place).
  const fs::path run = scratch_dir() / "beta-override";
  fs::remove_all(run);
  const auto result = run_program(trainer("mnist"),
                                  "--hidden 16 --batch 16 --steps 2 --override '3:w=bf16' "
                                  "--diagnostics beta --diagnostics-every 1 --data '" +
                                      tiny_mnist().string() + "' --out '" + run.string() + "'");
  INFO(result.err);
  REQUIRE(result.status == 0);
  const nlohmann::json line = metrics(run).at(1);
  // An fp32 weight that moves at all moves by a whole ULP or more: nearly all of them cross.
  // On bf16 (2^16 times coarser) Adam's first steps of lr 1e-3 cross for only some weights.
  CHECK(line["beta/1.weight"].get<double>() > 0.9);
  CHECK(line["beta/3.weight"].get<double>() < line["beta/1.weight"].get<double>());
  CHECK(line["beta/3.weight"].get<double>() > 0.0);
}
