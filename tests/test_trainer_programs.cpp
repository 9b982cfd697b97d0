// The llama, vit, cifar and diffusion trainers as a user runs them, on tiny generated data: a
// few steps write their metrics and summary, a resumed run continues bit-identically, and bad
// data gives one-line errors.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "data/file_io.h"
#include "trainer_support.h"

using namespace lattice::test;

TEST_CASE("llama trains on a WikiText folder: loss falls, resume is exact, BPE is cached") {
  const std::string common =
      "--dim 32 --layers 1 --heads 2 --hidden 64 --vocab 300 --seq 16 --batch 8 --lr 3e-3 "
      "--schedule constant --log-every 1 --data '" +
      tiny_wikitext().string() + "' ";
  const fs::path whole = scratch_dir() / "llama-whole", parts = scratch_dir() / "llama-parts";
  const auto result =
      run_program(trainer("llama"), common + "--steps 8 --sample 8 --out '" + whole.string() + "'");
  INFO(result.err);
  REQUIRE(result.status == 0);
  CHECK(fs::exists(tiny_wikitext() / "wiki.train.raw.bpe300.model"));  // trained once, cached
  const nlohmann::json s = summary(whole);
  CHECK(s["status"] == "finished");
  CHECK(s["throughput_unit"] == "tokens");
  CHECK(s["tokens_per_second"].get<double>() > 0);
  CHECK(s["val_perplexity"].get<double>() ==
        doctest::Approx(std::exp(s["val_loss"].get<double>())));
  CHECK(s["config"]["tokens_per_step"] == 8 * 16);
  CHECK(s["config"]["unigram_entropy"].get<double>() > 0);
  std::vector<double> losses;
  for (const auto& line : metrics(whole))
    if (line.contains("loss")) losses.push_back(line["loss"]);
  REQUIRE(losses.size() == 8);
  CHECK(losses.back() < losses.front() - 0.5);
  CHECK(read_file(whole / "sample.txt").size() > 0);
  CHECK(s["parameters"] == 2 * 300 * 32 + (2 * 32 + 4 * 32 * 32 + 3 * 32 * 64) + 32);

  REQUIRE(
      run_program(trainer("llama"), common + "--steps 4 --out '" + parts.string() + "'").status ==
      0);
  REQUIRE(run_program(trainer("llama"), common + "--steps 8 --out '" + parts.string() +
                                            "' --resume '" + (parts / "checkpoint").string() + "'")
              .status == 0);
  CHECK(checkpoint_tensors(parts) == checkpoint_tensors(whole));

  // A token budget sets the step count: 1000 tokens at 8 x 16 per step is 8 steps.
  const auto dry = run_program(trainer("llama"), common + "--tokens 1000 --dry-run");
  CHECK(dry.status == 0);
  CHECK(dry.out.find("128 tokens per step (8 x 16 x 1), 8 steps") != std::string::npos);
  const auto named = run_program(trainer("llama"), "--config 60m --tokens auto --dry-run");
  CHECK(named.out.find("58073600 parameters") != std::string::npos);
  CHECK(named.out.find("91553 steps") != std::string::npos);  // 6B tokens / (128 x 512)
}

TEST_CASE("llama rejects a missing WikiText folder, a corpus too small and bad budgets") {
  const auto missing = run_program(trainer("llama"), "--data /nonexistent/wikitext --steps 1");
  CHECK(missing.status == 1);
  CHECK(missing.err.rfind("llama: [llama] --data /nonexistent/wikitext: no wiki.train.raw", 0) ==
        0);
  CHECK(std::count(missing.err.begin(), missing.err.end(), '\n') == 1);

  const fs::path empty = scratch_dir() / "empty-wikitext";
  fs::create_directories(empty);
  std::ofstream(empty / "wiki.train.raw") << "";
  std::ofstream(empty / "wiki.valid.raw") << "";
  const auto small = run_program(
      trainer("llama"), "--tokenizer byte --seq 16 --steps 1 --data '" + empty.string() + "'");
  CHECK(small.status == 1);
  CHECK(small.err.find("expected at least one each") != std::string::npos);

  const auto budget = run_program(trainer("llama"), "--tokens lots --dry-run");
  CHECK(budget.status == 1);
  CHECK(budget.err ==
        "llama: [llama] --tokens \"lots\": expected auto or a count such as "
        "2000000, 500k, 5M or 1B\n");
  const auto both = run_program(trainer("llama"), "--tokens 5M --steps 3 --dry-run");
  CHECK(both.err == "llama: [llama] give --tokens or --steps, not both\n");
  const auto config = run_program(trainer("llama"), "--config 7b --dry-run");
  CHECK(config.err == "llama: [llama] --config \"7b\": expected 9m, 60m, 350m or 1b\n");
}

TEST_CASE("vit trains on MNIST-format and CIFAR-10 files and resumes bit for bit") {
  const std::string small = "--dim 16 --depth 1 --heads 2 --batch 16 --schedule constant ";
  const fs::path mnist_run = scratch_dir() / "vit-mnist";
  const auto mnist =
      run_program(trainer("vit"), small + "--steps 3 --data '" + tiny_mnist().string() +
                                      "' --out '" + mnist_run.string() + "'");
  INFO(mnist.err);
  REQUIRE(mnist.status == 0);
  CHECK(summary(mnist_run)["config"]["image_size"] == 28);
  CHECK(summary(mnist_run)["images_per_second"].get<double>() > 0);

  const std::string cifar = small + "--dataset cifar10 --data '" + tiny_cifar().string() + "' ";
  const fs::path whole = scratch_dir() / "vit-whole", parts = scratch_dir() / "vit-parts";
  const auto run = run_program(trainer("vit"), cifar + "--steps 6 --out '" + whole.string() + "'");
  INFO(run.err);
  REQUIRE(run.status == 0);
  CHECK(summary(whole)["config"]["image_size"] == 32);
  CHECK(summary(whole)["val_accuracy"].get<double>() >= 0.0);
  REQUIRE(run_program(trainer("vit"), cifar + "--steps 3 --out '" + parts.string() + "'").status ==
          0);
  REQUIRE(run_program(trainer("vit"), cifar + "--steps 6 --out '" + parts.string() +
                                          "' --resume '" + (parts / "checkpoint").string() + "'")
              .status == 0);
  CHECK(checkpoint_tensors(parts) == checkpoint_tensors(whole));  // augmentation replays too

  const auto no_data = run_program(trainer("vit"), "--dataset cifar10 --steps 1");
  CHECK(no_data.status == 1);
  CHECK(no_data.err.rfind("vit: [vit] --dataset cifar10 needs --data DIR", 0) == 0);
  const fs::path truncated = scratch_dir() / "cifar-truncated";
  fs::create_directories(truncated);
  for (const auto& entry : fs::directory_iterator(tiny_cifar()))
    fs::copy_file(entry.path(), truncated / entry.path().filename(),
                  fs::copy_options::overwrite_existing);
  fs::resize_file(truncated / "data_batch_3.bin", 3073 * 2 + 100);
  const auto cut = run_program(trainer("vit"),
                               "--dataset cifar10 --steps 1 --data '" + truncated.string() + "'");
  CHECK(cut.status == 1);
  CHECK(cut.err.find("data_batch_3.bin") != std::string::npos);
  CHECK(std::count(cut.err.begin(), cut.err.end(), '\n') == 1);
  const auto patch =
      run_program(trainer("vit"), "--patch 5 --steps 1 --data '" + tiny_mnist().string() + "'");
  CHECK(patch.err == "vit: [vit] --patch 5 does not divide the 28-pixel images\n");
}

TEST_CASE("cifar trains the CNN and ResNet-20 on CIFAR-10 files and on an image folder") {
  for (const std::string model : {"cnn", "resnet20"}) {
    const fs::path out = scratch_dir() / ("cifar-" + model);
    const auto result =
        run_program(trainer("cifar"), "--model " + model + " --batch 16 --steps 3 --data '" +
                                          tiny_cifar().string() + "' --out '" + out.string() + "'");
    INFO(result.err);
    REQUIRE(result.status == 0);
    const nlohmann::json s = summary(out);
    CHECK(s["config"]["model"] == model);
    CHECK(s["val_accuracy"].get<double>() >= 0.0);
  }
  const fs::path out = scratch_dir() / "cifar-folder";
  const auto result =
      run_program(trainer("cifar"),
                  "--dataset folder --size 16 --batch 4 "
                  "--steps 2 --data '" +
                      tiny_image_folder().string() + "' --out '" + out.string() + "'");
  INFO(result.err);
  REQUIRE(result.status == 0);
  CHECK(summary(out)["config"]["classes"] == 2);
  CHECK(summary(out)["config"]["image_size"] == 16);

  const auto no_data = run_program(trainer("cifar"), "--steps 1");
  CHECK(no_data.status == 1);
  CHECK(no_data.err.rfind("cifar: [cifar] --dataset cifar10 needs --data DIR", 0) == 0);
}

TEST_CASE("diffusion trains the small U-Net, validates on fixed noise and writes a sample grid") {
  const std::string common =
      "--batch 8 --timesteps 20 --eval-batches 2 --schedule constant "
      "--data '" +
      tiny_mnist().string() + "' ";
  const fs::path whole = scratch_dir() / "diffusion-whole",
                 parts = scratch_dir() / "diffusion-parts";
  const auto result = run_program(trainer("diffusion"),
                                  common + "--steps 4 --sample 5 --out '" + whole.string() + "'");
  INFO(result.err);
  REQUIRE(result.status == 0);
  const nlohmann::json s = summary(whole);
  CHECK(s["config"]["image_size"] == 32);  // 28 padded by 2
  CHECK(s["val_loss"].get<double>() > 0);
  const lattice::data::Image grid = lattice::data::load_image((whole / "samples.png").string(), 1);
  CHECK(grid.width == 3 * 32);  // 5 samples: rows of 3
  CHECK(grid.height == 2 * 32);

  REQUIRE(run_program(trainer("diffusion"), common + "--steps 2 --out '" + parts.string() + "'")
              .status == 0);
  REQUIRE(run_program(trainer("diffusion"), common + "--steps 4 --out '" + parts.string() +
                                                "' --resume '" + (parts / "checkpoint").string() +
                                                "'")
              .status == 0);
  CHECK(checkpoint_tensors(parts) == checkpoint_tensors(whole));
  // The validation set, noise and timesteps are fixed: the same weights give the same loss.
  CHECK(summary(parts)["val_loss"] == s["val_loss"]);

  const fs::path cifar_run = scratch_dir() / "diffusion-cifar";
  const auto cifar =
      run_program(trainer("diffusion"),
                  "--dataset cifar10 --batch 8 --steps 1 "
                  "--timesteps 10 --data '" +
                      tiny_cifar().string() + "' --out '" + cifar_run.string() + "'");
  INFO(cifar.err);
  CHECK(cifar.status == 0);
  const auto folder = run_program(trainer("diffusion"), "--config big --steps 1");
  CHECK(folder.status == 1);
  CHECK(folder.err.rfind("diffusion: [diffusion] --dataset folder needs --data DIR", 0) == 0);
  const auto odd_size =
      run_program(trainer("diffusion"), "--config big --size 12 --steps 1 --data '" +
                                            tiny_image_folder().string() + "' --out '" +
                                            (scratch_dir() / "diffusion-odd").string() + "'");
  CHECK(odd_size.status == 1);
  CHECK(odd_size.err.rfind("diffusion: [diffusion] the big U-Net halves the image 3 times: the "
                           "side must be divisible by 8, got 12",
                           0) == 0);
}

TEST_CASE(
    "vit with every diagnostic and the LayerNorm-ε policy logs them per block and trains "
    "the same bits") {
  const fs::path run = scratch_dir() / "vit-stability", plain = scratch_dir() / "vit-plain";
  fs::remove_all(run);
  fs::remove_all(plain);
  const std::string common =
      "--dim 16 --depth 2 --heads 2 --batch 16 --steps 4 --seed 2 "
      "--stack 'gemm=mxfp4:sr,a=bf16' --data '" +
      tiny_mnist().string() + "' ";
  const auto result =
      run_program(trainer("vit"), common +
                                      "--diagnostics all,cast:e4m3 --diagnostics-every 2 "
                                      "--ln-eps-policy rho=0.6,cap=1e-2,every=2 --out '" +
                                      run.string() + "'");
  INFO(result.err);
  REQUIRE(result.status == 0);
  REQUIRE(run_program(trainer("vit"), common + "--out '" + plain.string() + "'").status == 0);
  CHECK(checkpoint_tensors(run) == checkpoint_tensors(plain));
  const std::vector<nlohmann::json> lines = metrics(run);
  const auto observed = std::find_if(lines.begin(), lines.end(), [](const nlohmann::json& line) {
    return line.contains("step") && line["step"] == 4 && line.contains("loss");
  });
  REQUIRE(observed != lines.end());
  for (const char* key :
       {"kappa_softmax/blocks.1", "predictor/blocks.0", "r_block/blocks.1", "rho_ln/blocks.0.norm1",
        "ln_eps/blocks.1.norm2", "r_block_max", "beta", "beta_eff",
        "entropy/blocks.0.attention.head1", "snr_db/blocks.1.attention", "saturation/gemm.x"})
    CHECK(observed->contains(key));
  CHECK(summary(run)["ln_eps_policy"] != "");

  const auto malformed = run_program(trainer("vit"), "--ln-eps-policy rho=0.6,cap=1e-2");
  CHECK(malformed.err ==
        "vit: [ln-eps-policy] \"rho=0.6,cap=1e-2\": missing \"every=\" (expected "
        "rho=R,cap=C,every=N[,floor=F][,sample=N])\n");
}
