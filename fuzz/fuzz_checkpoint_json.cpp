// The checkpoint JSON reader (optim/checkpoint.h load_checkpoint): a valid tensor file is
// written once; the input is <ckpt>.json. Seeds hold that file's CRC, so mutations reach the
// fields after the CRC check: LATTICE_FUZZ_WRITE_SEED=FILE copies the valid JSON there (what
// fuzz/make_corpus.py derives the seeds from).
#include <cstdlib>

#include "fuzz_support.h"
#include "ops/ops.h"
#include "optim/checkpoint.h"
#include "optim/schedule.h"

namespace {

using namespace lattice;

struct Model {
  Tensor w = full({4, 1}, 0.25f), b = full({1}, 0.5f);
  std::unique_ptr<optim::AdamW> optimizer =
      std::make_unique<optim::AdamW>(optim::one_group({{"w", w}, {"b", b}}, 0.05, 0.01),
                                     optim::AdamOptions{},
                                     parse_precision_stack("w=bf16:sr"));
  optim::LossScaler scaler = optim::LossScaler::dynamic({.initial_scale = 64});
  std::string path = (fuzz::scratch_dir() / "ckpt").string();

  Model() {
    optim::save_checkpoint(path, {{"w", w}, {"b", b}}, *optimizer, optim::TrainingState{}, &scaler);
    if (const char* seed = std::getenv("LATTICE_FUZZ_WRITE_SEED")) {
      std::filesystem::copy_file(path + ".json", seed,
                                 std::filesystem::copy_options::overwrite_existing);
    }
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Model model;
  fuzz::write_scratch("ckpt.json", data, size);
  fuzz::expect_error_or_success([&] {
    const optim::TrainingState state = optim::load_checkpoint(
        model.path, {{"w", model.w}, {"b", model.b}}, *model.optimizer, &model.scaler);
    // What a trainer does next with the restored state.
    const optim::Schedule schedule = optim::parse_schedule(state.schedule, 100);
    (void)schedule.multiplier(state.step);
  });
  return 0;
}
