// The trainers as a user runs them, on tiny generated data: a few steps of mnist (MLP and CNN)
// and regression write their metrics and summary, a resumed run continues bit-identically to
// an uninterrupted one, and bad flags or data give one-line errors.
#include <doctest/doctest.h>

#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <tuple>
#include <vector>

#include "data/dataset.h"
#include "data/idx.h"
#include "examples/trainer.h"
#include "nn/layers.h"
#include "ops/ops.h"
#include "tensor/precision_stack.h"
#include "tensor/random.h"
#include "tensor/safetensors.h"
#include "tensor/tape.h"
#include "trainer_support.h"

using namespace lattice::test;

TEST_CASE("mnist trains an MLP and a CNN for a few steps and reports them") {
  for (const std::string model : {"mlp", "cnn"}) {
    const fs::path out = scratch_dir() / ("mnist-" + model);
    const auto result = run_program(trainer("mnist"),
                                    "--model " + model +
                                        " --hidden 16 --steps 4 --batch 16 --log-every 2 --data '" +
                                        tiny_mnist().string() + "' --out '" + out.string() + "'");
    INFO(result.err);
    REQUIRE(result.status == 0);
    const nlohmann::json s = summary(out);
    CHECK(s["status"] == "finished");
    CHECK(s["steps"] == 4);
    CHECK(s["config"]["model"] == model);
    CHECK(s["val_accuracy"].get<double>() >= 0.0);
    CHECK(s["val_accuracy"].get<double>() <= 1.0);
    const std::vector<nlohmann::json> lines = metrics(out);
    REQUIRE(lines.size() == 5);  // four steps, then the final evaluation
    CHECK(lines[3]["step"] == 4);
    CHECK(lines[3].contains("lr"));
    CHECK(lines[4].contains("val_loss"));
    const nlohmann::json checkpoint = nlohmann::json::parse(read_file(out / "checkpoint.json"));
    CHECK(fs::exists(out / checkpoint["tensors"].get<std::string>()));
    CHECK(result.err.find("mnist  epoch") != std::string::npos);  // the progress line
  }
}

TEST_CASE("regression with StableSPAM runs and records its validation loss and stack") {
  const fs::path out = scratch_dir() / "regression";
  const auto result =
      run_program(trainer("regression"),
                  "--rows 256 --features 8 --batch 32 --steps 5 --optimizer stablespam "
                  "--stack gemm=mxfp8 --out '" +
                      out.string() + "'");
  INFO(result.err);
  REQUIRE(result.status == 0);
  const nlohmann::json s = summary(out);
  CHECK(s["optimizer"] == "stablespam");
  CHECK(s["stack"] == "gemm=mxfp8");
  CHECK(s["val_loss"].is_number());
  CHECK(s["complexity_points"] == 0.5);  // StableSPAM's half point

  // A per-module override: the regression model is a single Linear, the root module "".
  const fs::path kept = scratch_dir() / "regression-kept";
  const auto overridden =
      run_program(trainer("regression"),
                  "--rows 256 --features 8 --batch 32 --steps 2 --stack gemm=mxfp8 "
                  "--override ':gemm=bf16' --out '" +
                      kept.string() + "'");
  INFO(overridden.err);
  REQUIRE(overridden.status == 0);
  CHECK(summary(kept)["overrides"] == nlohmann::json::array({":gemm=bf16"}));
}

TEST_CASE("a resumed run continues bit for bit, wherever the stack draws random bits") {
  // Each stack draws from the default random stream somewhere else: weights written back with
  // SR, SR inside the backward GEMMs, Hadamard signs, optimizer state, scale rounding, and
  // Λa/Λg. The first part ends with an evaluation (whose forward quantizers draw streams too)
  // before its checkpoint; the uninterrupted run evaluates only at the epoch end (step 4).
  const char* stacks[] = {
      "w=bf16:sr",
      "gemm=mxfp4,gemm.bwd=mxfp4:sr",
      "gemm=mxfp4,gemm.hadamard=all",
      "opt=bf16:sr",
      "gemm=e2m1:b16:scale=e4m3:rule=encode:scale_round=sr",
      "a=bf16:sr,g=bf16:sr",
  };
  for (const std::string stack : stacks) {
    CAPTURE(stack);
    const std::string common = std::string("--hidden 16 --batch 16 --schedule constant --seed 7 ") +
                               "--stack '" + stack + "' --data '" + tiny_mnist().string() + "' ";
    const fs::path whole = scratch_dir() / "whole", parts = scratch_dir() / "parts";
    fs::remove_all(whole);
    fs::remove_all(parts);
    REQUIRE(
        run_program(trainer("mnist"), common + "--steps 6 --out '" + whole.string() + "'").status ==
        0);
    REQUIRE(
        run_program(trainer("mnist"), common + "--steps 3 --out '" + parts.string() + "'").status ==
        0);
    const auto resumed =
        run_program(trainer("mnist"), common + "--steps 6 --out '" + parts.string() +
                                          "' --resume '" + (parts / "checkpoint").string() + "'");
    INFO(resumed.err);
    REQUIRE(resumed.status == 0);
    std::vector<double> uninterrupted, continued;
    for (const auto& line : metrics(whole))
      if (line.contains("loss")) uninterrupted.push_back(line["loss"]);
    for (const auto& line : metrics(parts))
      if (line.contains("loss")) continued.push_back(line["loss"]);
    CHECK(continued == uninterrupted);
    CHECK(summary(parts)["val_loss"] == summary(whole)["val_loss"]);
    CHECK(checkpoint_tensors(parts) == checkpoint_tensors(whole));
  }
}

TEST_CASE("--accumulate N: N micro-batches make one optimizer step of their mean gradient") {
  // One SGD step on 2 micro-batches of 8 against one step on their batch of 16 (the same 16
  // images: an epoch's order does not depend on the batch size): the same update up to fp32
  // summation order, so the same validation loss to ~1e-6; a missing 1/N would double it.
  const std::string common =
      "--hidden 16 --optimizer sgd --lr 0.5 --schedule constant --steps 1 "
      "--data '" +
      tiny_mnist().string() + "' ";
  const fs::path accumulated = scratch_dir() / "accumulated", whole = scratch_dir() / "batch16";
  const auto a = run_program(
      trainer("mnist"), common + "--batch 8 --accumulate 2 --out '" + accumulated.string() + "'");
  INFO(a.err);
  REQUIRE(a.status == 0);
  REQUIRE(
      run_program(trainer("mnist"), common + "--batch 16 --out '" + whole.string() + "'").status ==
      0);
  const double loss_a = summary(accumulated)["val_loss"], loss_w = summary(whole)["val_loss"];
  CHECK(loss_a == doctest::Approx(loss_w).epsilon(1e-5));
  CHECK(metrics(accumulated)[0]["loss"].get<double>() ==
        doctest::Approx(metrics(whole)[0]["loss"].get<double>()).epsilon(1e-6));
  const nlohmann::json s = summary(accumulated);
  CHECK(s["accumulate"] == 2);
  CHECK(s["epochs"] == 0.25);  // 8 micro-batches of 8 per epoch: 4 steps
  CHECK(s["throughput_unit"] == "images");
  CHECK(s["images_per_second"].get<double>() > 0);
  CHECK(a.err.find("images/s") != std::string::npos);

  // Resuming inside an accumulated run is bit-identical too.
  const std::string sr =
      "--hidden 16 --batch 8 --accumulate 2 --schedule constant --stack "
      "'gemm=mxfp4,gemm.bwd=mxfp4:sr' --data '" +
      tiny_mnist().string() + "' ";
  const fs::path straight = scratch_dir() / "acc-straight", split = scratch_dir() / "acc-split";
  REQUIRE(
      run_program(trainer("mnist"), sr + "--steps 6 --out '" + straight.string() + "'").status ==
      0);
  REQUIRE(run_program(trainer("mnist"), sr + "--steps 3 --out '" + split.string() + "'").status ==
          0);
  REQUIRE(run_program(trainer("mnist"), sr + "--steps 6 --out '" + split.string() + "' --resume '" +
                                            (split / "checkpoint").string() + "'")
              .status == 0);
  CHECK(checkpoint_tensors(split) == checkpoint_tensors(straight));
}

TEST_CASE("--eval-every N evaluates every N steps instead of at epoch ends") {
  const fs::path out = scratch_dir() / "eval-every";
  const auto result = run_program(trainer("mnist"),
                                  "--hidden 16 --batch 16 --steps 6 "
                                  "--eval-every 4 --data '" +
                                      tiny_mnist().string() + "' --out '" + out.string() + "'");
  INFO(result.err);
  REQUIRE(result.status == 0);
  std::vector<int64_t> evaluated;
  for (const auto& line : metrics(out))
    if (line.contains("val_loss")) evaluated.push_back(line["step"]);
  CHECK(evaluated == std::vector<int64_t>{4, 6});  // not at the epoch end (step 4) twice
}

TEST_CASE("evaluate_classifier reads the first N batches of an epoch, the same ones each time") {
  using namespace lattice;
  std::vector<float> inputs(12 * 3);
  for (size_t i = 0; i < inputs.size(); ++i) inputs[i] = float(i % 7) - 3.0f;
  std::vector<int64_t> labels(12);
  for (size_t i = 0; i < labels.size(); ++i) labels[i] = int64_t(i % 2);
  const auto dataset = std::make_shared<data::TensorDataset>(from_vector(inputs, {12, 3}),
                                                             from_vector<int64_t>(labels, {12}));
  data::DataLoader loader(dataset, {.batch_size = 4, .shuffle = false});
  manual_seed(3);
  nn::Linear model(3, 2);
  const Tensor logits =
      model(from_vector(std::vector<float>(inputs.begin(), inputs.begin() + 12), {4, 3}));
  const double first_batch =
      cross_entropy(logits, from_vector<int64_t>({0, 1, 0, 1}, {4})).item<double>();
  const examples::Evaluation one = examples::evaluate_classifier(model, loader, 1);
  CHECK(one.loss == doctest::Approx(first_batch).epsilon(1e-6));
  CHECK(examples::evaluate_classifier(model, loader, 1).loss == one.loss);  // again batch 0
  const examples::Evaluation all = examples::evaluate_classifier(model, loader);
  CHECK(all.loss != one.loss);
  CHECK(examples::evaluate_classifier(model, loader, 5).loss == all.loss);  // at most an epoch
}

TEST_CASE("evaluate_classifier sums the examples' losses in double, not on the stack's Λa") {
  // 700 examples of loss log 2 (zero logits): their sum, 485, passes e4m3's largest value, 448
  // (a NaN then), while each loss alone rounds to 0.6875.
  using namespace lattice;
  const int64_t n = 700;
  const auto dataset = std::make_shared<data::TensorDataset>(
      zeros({n, 3}), from_vector<int64_t>(std::vector<int64_t>(size_t(n), 1), {n}));
  data::DataLoader loader(dataset, {.batch_size = n, .shuffle = false});
  nn::Linear model(3, 2);
  {
    NoGradGuard no_grad;
    for (const Tensor& p : model.parameters()) p.fill_(0.0);
  }
  PrecisionScope scope(parse_precision_stack("a=e4m3"));
  const examples::Evaluation evaluation = examples::evaluate_classifier(model, loader);
  CHECK(evaluation.loss == 0.6875);  // log 2 on e4m3, averaged in double
}

TEST_CASE("trainers reject bad flags, specs and data with one line") {
  const auto unknown = run_program(trainer("mnist"), "--epochz 3");
  CHECK(unknown.status != 0);
  CHECK(unknown.err.find("--epochz") != std::string::npos);

  const auto missing = run_program(trainer("mnist"), "--data /nonexistent/dir --steps 1");
  CHECK(missing.status == 1);
  CHECK(missing.err.rfind("mnist: [idx] /nonexistent/dir", 0) == 0);
  CHECK(std::count(missing.err.begin(), missing.err.end(), '\n') == 1);

  const auto bad_override =
      run_program(trainer("regression"), "--rows 64 --features 4 --override head");
  CHECK(bad_override.status == 1);
  CHECK(bad_override.err ==
        "regression: [trainer] --override \"head\": expected PATTERN:SPEC, e.g. 0:gemm=bf16\n");

  const auto bad_stack =
      run_program(trainer("regression"), "--rows 64 --features 4 --stack gemm=mxfp5");
  CHECK(bad_stack.status == 1);
  CHECK(bad_stack.err.rfind("regression: [stack]", 0) == 0);

  const auto bad_ema = run_program(trainer("regression"), "--rows 64 --features 4 --ema 1");
  CHECK(bad_ema.status == 1);
  CHECK(bad_ema.err == "regression: [trainer] --ema 1: expected a decay in [0, 1)\n");

  const auto bad_gemm = run_program(trainer("regression"), "--rows 64 --features 4 --gemm fast");
  CHECK(bad_gemm.status != 0);
  CHECK(bad_gemm.err.starts_with("--gemm: fast not in {auto,exact-fp32,fp8-blocks}\n"));
}

TEST_CASE("--gemm exact-fp32 is recorded in the summary, and bf16 GEMMs leave the loss close") {
  // Under a bf16 stack the regression's hidden GEMMs qualify for the bf16 GEMM: on a CPU with
  // native bf16 the two paths sum in different orders, elsewhere they are the same path.
  std::vector<double> losses;
  for (const std::string path : {"exact-fp32", "auto"}) {
    const fs::path out = scratch_dir() / ("regression-gemm-" + path);
    const auto result = run_program(trainer("regression"),
                                    "--rows 256 --features 8 --batch 32 --steps 5 --stack bf16 "
                                    "--gemm " +
                                        path + " --out '" + out.string() + "'");
    INFO(result.err);
    REQUIRE(result.status == 0);
    const nlohmann::json s = summary(out);
    if (path == "exact-fp32") CHECK(s["gemm"] == "fp32");
    losses.push_back(s["train_loss"].get<double>());
  }
  CHECK(losses[1] == doctest::Approx(losses[0]).epsilon(1e-2));
}

TEST_CASE("a resumed run cuts metrics.jsonl back to its checkpoint, so no step is logged twice") {
  const std::string common = tiny_data_flags() + "--schedule constant ";
  const fs::path whole = scratch_dir() / "metrics-whole", run = scratch_dir() / "metrics-resumed",
                 saved = scratch_dir() / "metrics-step2";
  REQUIRE(
      run_program(trainer("mnist"), common + "--steps 4 --out '" + whole.string() + "'").status ==
      0);
  REQUIRE(run_program(trainer("mnist"), common + "--steps 2 --out '" + run.string() + "'").status ==
          0);
  // Keep the step-2 checkpoint, run on to step 4, then put it back: as if the run had died
  // after logging steps 3 and 4 but before its next checkpoint.
  fs::create_directories(saved);
  const std::string tensors =
      nlohmann::json::parse(read_file(run / "checkpoint.json"))["tensors"].get<std::string>();
  for (const std::string& file : {std::string("checkpoint.json"), tensors})
    fs::copy_file(run / file, saved / file);
  const std::string resume =
      "--steps 4 --out '" + run.string() + "' --resume '" + (run / "checkpoint").string() + "'";
  REQUIRE(run_program(trainer("mnist"), common + resume).status == 0);
  for (const std::string& file : {std::string("checkpoint.json"), tensors})
    fs::copy_file(saved / file, run / file, fs::copy_options::overwrite_existing);
  const auto again = run_program(trainer("mnist"), common + resume);
  INFO(again.err);
  REQUIRE(again.status == 0);

  std::vector<int64_t> steps;
  std::vector<double> losses, uninterrupted;
  for (const auto& line : metrics(run))
    if (line.contains("loss")) {
      steps.push_back(line["step"]);
      losses.push_back(line["loss"]);
    }
  for (const auto& line : metrics(whole))
    if (line.contains("loss")) uninterrupted.push_back(line["loss"]);
  CHECK(steps == std::vector<int64_t>{1, 2, 3, 4});
  CHECK(losses == uninterrupted);
}

TEST_CASE("a loss that explodes without becoming NaN ends the run as diverged") {
  const fs::path out = scratch_dir() / "exploding";
  const auto result = run_program(
      trainer("mnist"), tiny_data_flags() + "--lr 1e6 --steps 40 --out '" + out.string() + "'");
  INFO(result.err);
  REQUIRE(result.status == 0);  // a result, not a crash
  const nlohmann::json s = summary(out);
  CHECK(s["status"] == "diverged");
  CHECK(s["steps"].get<int64_t>() < 40);
  CHECK(result.err.find("stopping (diverged)") != std::string::npos);
  // The rule that fired is the growth one: every logged loss is a finite number.
  const std::vector<nlohmann::json> lines = metrics(out);
  double largest = 0;
  for (const auto& line : lines)
    if (line.contains("loss")) {
      REQUIRE(line["loss"].is_number());
      largest = std::max(largest, line["loss"].get<double>());
    }
  CHECK(largest > 1e4 * lines[0]["loss"].get<double>());

  // An ordinary run at a sane learning rate is not flagged.
  const fs::path calm = scratch_dir() / "calm";
  REQUIRE(
      run_program(trainer("mnist"), tiny_data_flags() + "--steps 12 --out '" + calm.string() + "'")
          .status == 0);
  CHECK(summary(calm)["status"] == "finished");
}

TEST_CASE("a full disk fails the run with one line naming the file, instead of 'finished'") {
  // /dev/full fails every write with ENOSPC, for root too.
  const fs::path out = scratch_dir() / "full-disk";
  fs::create_directories(out);
  fs::create_symlink("/dev/full", out / "metrics.jsonl");
  const auto result =
      run_program(trainer("mnist"), tiny_data_flags() + "--steps 2 --out '" + out.string() + "'");
  CHECK(result.status == 1);
  CHECK(result.err == "mnist: [trainer] " + (out / "metrics.jsonl").string() +
                          ": write failed: No space left on device\n");
  CHECK(!fs::exists(out / "summary.json"));

  // A summary that cannot be put in place: the run fails, and says so on one line.
  const fs::path blocked = scratch_dir() / "summary-blocked";
  fs::create_directories(blocked / "summary.json" / "occupied");
  const auto refused = run_program(
      trainer("mnist"), tiny_data_flags() + "--steps 2 --out '" + blocked.string() + "'");
  CHECK(refused.status == 1);
  CHECK(refused.err.find("finished") == std::string::npos);
  const std::string last_line =
      refused.err.substr(refused.err.rfind('\n', refused.err.size() - 2) + 1);
  CHECK(last_line.starts_with("mnist: [trainer] " + (blocked / "summary.json").string() +
                              ": rename failed: Is a directory"));
}

TEST_CASE("absurd --threads and --epochs give one line instead of a crash or an overflow") {
  const auto threads =
      run_program(trainer("mnist"), tiny_data_flags() + "--steps 1 --threads 1000000 --out '" +
                                        (scratch_dir() / "threads").string() + "'");
  CHECK(threads.status == 1);
  CHECK(threads.err.starts_with("mnist: [trainer] --threads 1000000: expected at most "));
  CHECK(line_count(threads.err) == 1);

  const auto epochs =
      run_program(trainer("mnist"), tiny_data_flags() + "--epochs 9223372036854775807 --out '" +
                                        (scratch_dir() / "epochs").string() + "'");
  CHECK(epochs.status == 1);
  CHECK(epochs.err ==
        "mnist: [trainer] --epochs 9223372036854775807 x 4 batches per epoch overflows the step "
        "count; expected at most 2305843009213693951 epochs\n");
}

TEST_CASE("resuming from a malformed checkpoint gives one line naming the file and field") {
  const fs::path out = scratch_dir() / "malformed-resume";
  REQUIRE(
      run_program(trainer("mnist"), tiny_data_flags() + "--steps 2 --out '" + out.string() + "'")
          .status == 0);
  const fs::path json = out / "checkpoint.json";
  const std::string good = read_file(json);
  const std::string resume = tiny_data_flags() + "--steps 3 --out '" + out.string() +
                             "' --resume '" + (out / "checkpoint").string() + "'";
  for (const auto& [field, value, expected] :
       std::vector<std::tuple<std::string, nlohmann::json, std::string>>{
           {"step", "2", "\"step\" is \"2\"; expected an integer in [0, 2^63)"},
           {"data_loader", "x", "data_loader: "}}) {
    nlohmann::json edited = nlohmann::json::parse(good);
    edited[field] = value;
    std::ofstream(json) << edited.dump();
    const auto result = run_program(trainer("mnist"), resume);
    INFO(result.err);
    CHECK(result.status == 1);
    CHECK(result.err.starts_with("mnist: [checkpoint] " + json.string() + ": "));
    CHECK(result.err.find(expected) != std::string::npos);
    CHECK(line_count(result.err) == 1);
  }
}

TEST_CASE("--stack-schedule switches the whole stack at its steps and resumes inside it") {
  const std::string common =
      std::string("--hidden 16 --batch 16 --schedule constant --seed 3 --data '") +
      tiny_mnist().string() + "' --stack-schedule '0:bf16;2:w=fp16:sr,g=fp16;4:bf16' ";
  const fs::path whole = scratch_dir() / "schedule-whole", parts = scratch_dir() / "schedule-parts";
  fs::remove_all(whole);
  fs::remove_all(parts);
  const auto straight =
      run_program(trainer("mnist"), common + "--steps 6 --out '" + whole.string() + "'");
  INFO(straight.err);
  REQUIRE(straight.status == 0);
  const std::string bf16 = "w=bf16,a=bf16,g=bf16";
  CHECK(straight.err.find("step 2: precision stack " + bf16 + " -> w=fp16:sr,g=fp16") !=
        std::string::npos);
  CHECK(straight.err.find("step 4: precision stack w=fp16:sr,g=fp16 -> " + bf16) !=
        std::string::npos);
  CHECK(summary(whole)["stack"] == bf16);
  // Checkpoints at step 3 (inside the fp16 item) and resumed there.
  REQUIRE(
      run_program(trainer("mnist"), common + "--steps 3 --out '" + parts.string() + "'").status ==
      0);
  const auto resumed =
      run_program(trainer("mnist"), common + "--steps 6 --out '" + parts.string() + "' --resume '" +
                                        (parts / "checkpoint").string() + "'");
  INFO(resumed.err);
  REQUIRE(resumed.status == 0);
  CHECK(checkpoint_tensors(parts) == checkpoint_tensors(whole));

  // A switch changes the run: the same steps without the fp16 item end elsewhere.
  const fs::path plain = scratch_dir() / "schedule-plain";
  fs::remove_all(plain);
  REQUIRE(run_program(trainer("mnist"),
                      "--hidden 16 --batch 16 --schedule constant --seed 3 --stack bf16 --data '" +
                          tiny_mnist().string() + "' --steps 6 --out '" + plain.string() + "'")
              .status == 0);
  CHECK(checkpoint_tensors(plain) != checkpoint_tensors(whole));

  const auto backwards = run_program(trainer("mnist"), "--stack-schedule '5:bf16,3:fp16'");
  CHECK(backwards.err ==
        "mnist: [trainer] --stack-schedule \"5:bf16,3:fp16\": step 3 does not come after step 5\n");
  const auto malformed = run_program(trainer("mnist"), "--stack-schedule 'x:bf16'");
  CHECK(malformed.err ==
        "mnist: [trainer] --stack-schedule \"x:bf16\": item \"x:bf16\": expected STEP:SPEC with "
        "STEP a step count, e.g. 0:bf16,2000:fp16\n");
}

TEST_CASE("--override reaches the optimizer's Λw of the matched module's parameters") {
  // The MLP is Flatten (0), Linear (1), ReLU (2), Linear (3), ReLU (4), Linear (5).
  const fs::path run = scratch_dir() / "override-weights";
  fs::remove_all(run);
  const auto result = run_program(
      trainer("mnist"), "--hidden 16 --batch 16 --steps 3 --data '" + tiny_mnist().string() +
                            "' --override '3:w=bf16' --out '" + run.string() + "'");
  INFO(result.err);
  REQUIRE(result.status == 0);
  std::map<std::string, std::vector<float>> weights = checkpoint_values(run);
  const auto on_bf16 = [](const std::vector<float>& values) {
    return values == lattice::cast(lattice::from_vector(values), lattice::bf16).to_vector<float>();
  };
  REQUIRE(weights.count("3.weight") == 1);
  CHECK(on_bf16(weights["3.weight"]));
  CHECK(on_bf16(weights["3.bias"]));
  CHECK(!on_bf16(weights["1.weight"]));
  CHECK(!on_bf16(weights["5.weight"]));
  CHECK(weights.count("optimizer.3.weight.master") == 1);  // a master copy for Λw only there
  CHECK(weights.count("optimizer.1.weight.master") == 0);
}

TEST_CASE(
    "--ema averages the weights without changing training, evaluates with the average, "
    "and resumes it bit for bit") {
  const std::string common =
      tiny_data_flags() + "--optimizer sgd --lr 0.1 --schedule constant --seed 3 ";
  const fs::path plain = scratch_dir() / "ema-plain", two = scratch_dir() / "ema-two",
                 three = scratch_dir() / "ema-three", resumed = scratch_dir() / "ema-resumed";
  for (const fs::path& run : {plain, two, three, resumed}) fs::remove_all(run);
  const auto train = [&](const std::string& flags, const fs::path& out) {
    const auto result =
        run_program(trainer("mnist"), common + flags + " --out '" + out.string() + "'");
    INFO(result.err);
    REQUIRE(result.status == 0);
    return result;
  };
  train("--steps 3", plain);
  train("--steps 2 --ema 0.9", two);
  train("--steps 3 --ema 0.9", three);
  const auto losses = [](const fs::path& run) {
    std::vector<double> out;
    for (const auto& line : metrics(run))
      if (line.contains("loss")) out.push_back(line["loss"]);
    return out;
  };
  CHECK(losses(three) == losses(plain));  // the average never feeds back into training
  CHECK(summary(three)["ema"] == 0.9);
  CHECK(summary(three)["val_loss"] != summary(plain)["val_loss"]);  // evaluated on the average

  // Step 3 averages with d = min(0.9, (1 + 3) / (10 + 3)).
  const auto after_two = checkpoint_values(two), after_three = checkpoint_values(three),
             weights = checkpoint_values(plain);
  const double decay = 4.0 / 13.0;
  for (const std::string name : {"1.weight", "1.bias", "5.weight"}) {
    CAPTURE(name);
    REQUIRE(after_three.count("ema." + name) == 1);
    CHECK(after_three.at(name) == weights.at(name));
    const std::vector<float>&average = after_three.at("ema." + name),
          &before = after_two.at("ema." + name), &w = after_three.at(name);
    for (size_t i = 0; i < average.size(); ++i)
      CHECK(average[i] == doctest::Approx(decay * before[i] + (1 - decay) * w[i]).epsilon(1e-6));
  }

  train("--steps 3 --ema 0.9 --resume '" + (two / "checkpoint").string() + "'", resumed);
  CHECK(checkpoint_tensors(resumed) == checkpoint_tensors(three));
  CHECK(summary(resumed)["val_loss"] == summary(three)["val_loss"]);

  // Without --ema a checkpoint holding an average is refused in one line; with it a checkpoint
  // without one starts the average from its weights.
  const auto refused =
      run_program(trainer("mnist"), common + "--steps 3 --out '" + resumed.string() +
                                        "' --resume '" + (two / "checkpoint").string() + "'");
  CHECK(refused.status == 1);
  CHECK(refused.err.find("expected --ema") != std::string::npos);
  CHECK(line_count(refused.err) == 1);
  const auto started =
      train("--steps 4 --ema 0.9 --resume '" + (plain / "checkpoint").string() + "'", resumed);
  CHECK(started.err.find("the average starts from the checkpoint's weights") != std::string::npos);
}
