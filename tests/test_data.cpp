// DataLoader: seeded shuffles, batching, drop_last, prefetch, saved positions and worker errors;
// the gaussian regression generator and the crop/flip augmentation.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <numeric>

#include "data/augment.h"
#include "data/dataset.h"
#include "data/synthetic.h"
#include "data_test_files.h"

using namespace lattice;
using namespace lattice::data;
using lattice::test::error_message;

namespace {

// Example i: input (2) = (i, -i) float32, target = i int64; throws at `fail_at`.
class CountingDataset final : public Dataset {
 public:
  explicit CountingDataset(int64_t n, int64_t fail_at = -1) : n_(n), fail_at_(fail_at) {}
  int64_t size() const override {
    return n_;
  }
  Example get(int64_t index) const override {
    check_index("counting", index, n_);
    LATTICE_CHECK(index != fail_at_, "[counting] example ", index, " is broken");
    return {from_vector<float>({float(index), -float(index)}),
            scalar_tensor(double(index), DType::int64)};
  }

 private:
  int64_t n_, fail_at_;
};

std::vector<int64_t> targets(const Batch& batch) {
  return batch.target.to_vector<int64_t>();
}

// Every batch of `epochs` epochs, as (target list, input values).
std::vector<std::pair<std::vector<int64_t>, std::vector<float>>> drain(DataLoader& loader,
                                                                       int epochs) {
  std::vector<std::pair<std::vector<int64_t>, std::vector<float>>> batches;
  for (int e = 0; e < epochs; ++e) {
    while (auto batch = loader.next()) {
      batches.emplace_back(targets(*batch), batch->input.to_vector<float>());
    }
  }
  return batches;
}

}  // namespace

TEST_CASE("batches stack examples into contiguous (B, ...) tensors whose rows are the indices") {
  DataLoader loader(std::make_shared<CountingDataset>(10),
                    {.batch_size = 4, .shuffle = true, .seed = 3, .prefetch = 0});
  const auto batch = loader.next();
  REQUIRE(batch.has_value());
  CHECK(batch->input.shape() == Shape{4, 2});
  CHECK(batch->target.shape() == Shape{4});
  CHECK(batch->target.dtype() == DType::int64);
  const std::vector<float> inputs = batch->input.to_vector<float>();
  for (int64_t row = 0; row < 4; ++row) {
    CHECK(batch->indices[size_t(row)] == targets(*batch)[size_t(row)]);
    CHECK(inputs[size_t(2 * row)] == float(batch->indices[size_t(row)]));
    CHECK(inputs[size_t(2 * row + 1)] == -float(batch->indices[size_t(row)]));
  }
}

TEST_CASE("each epoch visits every sample once in an order fixed by seed and epoch alone") {
  auto dataset = std::make_shared<CountingDataset>(103);
  DataLoader loader(dataset, {.batch_size = 10, .seed = 7, .prefetch = 0});
  DataLoader same_seed(dataset, {.batch_size = 10, .seed = 7, .prefetch = 0});
  DataLoader other_seed(dataset, {.batch_size = 10, .seed = 8, .prefetch = 0});
  CHECK(loader.batches_per_epoch() == 11);
  std::vector<std::vector<int64_t>> orders;
  for (int epoch = 0; epoch < 3; ++epoch) {
    std::vector<int64_t> order;
    int batches = 0;
    while (auto batch = loader.next()) {
      const auto t = targets(*batch);
      order.insert(order.end(), t.begin(), t.end());
      ++batches;
    }
    CHECK(batches == 11);
    CHECK(loader.epoch() == epoch + 1);
    CHECK(order == loader.permutation(epoch));
    CHECK(order == same_seed.permutation(epoch));
    CHECK(order != other_seed.permutation(epoch));
    std::vector<int64_t> sorted = order;
    std::sort(sorted.begin(), sorted.end());
    std::vector<int64_t> expected(103);
    std::iota(expected.begin(), expected.end(), 0);
    CHECK(sorted == expected);
    CHECK(order != expected);
    orders.push_back(order);
  }
  CHECK(orders[0] != orders[1]);
  CHECK(orders[1] != orders[2]);
  // Epoch 2's order does not depend on having run epochs 0 and 1.
  CHECK(DataLoader(dataset, {.batch_size = 10, .seed = 7}).permutation(2) == orders[2]);
}

TEST_CASE("without shuffle batches run in index order; drop_last drops the short last batch") {
  auto dataset = std::make_shared<CountingDataset>(10);
  DataLoader keep(dataset, {.batch_size = 4, .shuffle = false, .prefetch = 0});
  const auto kept = drain(keep, 1);
  REQUIRE(kept.size() == 3);
  CHECK(kept[0].first == std::vector<int64_t>{0, 1, 2, 3});
  CHECK(kept[2].first == std::vector<int64_t>{8, 9});

  DataLoader drop(dataset, {.batch_size = 4, .shuffle = true, .drop_last = true, .prefetch = 0});
  CHECK(drop.batches_per_epoch() == 2);
  const auto dropped = drain(drop, 1);
  REQUIRE(dropped.size() == 2);
  for (const auto& batch : dropped) CHECK(batch.first.size() == 4);
}

TEST_CASE("prefetching gives exactly the batches built on the caller's thread, augmented too") {
  auto dataset = std::make_shared<CountingDataset>(37);
  // A transform that uses only its arguments: adds epoch*1000 + index to the second column.
  const BatchTransform transform = [](Batch& batch, int64_t epoch) {
    float* values = batch.input.data<float>();
    for (int64_t row = 0; row < batch.size(); ++row) {
      values[2 * row + 1] += float(epoch * 1000 + batch.indices[size_t(row)]);
    }
  };
  DataLoader direct(dataset, {.batch_size = 5, .seed = 1, .prefetch = 0, .transform = transform});
  DataLoader prefetched(dataset,
                        {.batch_size = 5, .seed = 1, .prefetch = 3, .transform = transform});
  const auto a = drain(direct, 3), b = drain(prefetched, 3);
  CHECK(a.size() == 24);
  CHECK(a == b);
  CHECK(a[8].second[1] == 1000.f);  // epoch 1: -i + 1000 + i
}

TEST_CASE("a restored position (through JSON) replays the batches of the uninterrupted run") {
  auto dataset = std::make_shared<CountingDataset>(23);
  const LoaderOptions options{.batch_size = 4, .seed = 11, .prefetch = 2};
  DataLoader uninterrupted(dataset, options);
  const auto expected = drain(uninterrupted, 3);  // 6 batches per epoch

  DataLoader first(dataset, options);
  for (int step = 0; step < 8; ++step) first.next_across_epochs();
  CHECK(first.position() == LoaderPosition{1, 2});
  const std::string saved = first.state().dump();

  DataLoader resumed(dataset, options);
  resumed.load_state(nlohmann::json::parse(saved));
  CHECK(resumed.position() == LoaderPosition{1, 2});
  std::vector<std::pair<std::vector<int64_t>, std::vector<float>>> rest;
  while (auto batch = resumed.next())
    rest.emplace_back(targets(*batch), batch->input.to_vector<float>());
  const auto last_epoch = drain(resumed, 1);
  rest.insert(rest.end(), last_epoch.begin(), last_epoch.end());
  REQUIRE(rest.size() == expected.size() - 8);
  CHECK(std::equal(rest.begin(), rest.end(), expected.begin() + 8));

  // A position alone round-trips through to_json/from_json.
  const nlohmann::json position = LoaderPosition{3, 5};
  CHECK(position.get<LoaderPosition>() == LoaderPosition{3, 5});
}

TEST_CASE("a saved state from another batch size or seed is refused with a one-line error") {
  auto dataset = std::make_shared<CountingDataset>(23);
  DataLoader saver(dataset, {.batch_size = 4, .seed = 11});
  DataLoader other_batch(dataset, {.batch_size = 8, .seed = 11});
  CHECK(error_message([&] { other_batch.load_state(saver.state()); }) ==
        "[loader] saved state has batch_size 4, this loader has 8; the saved batches cannot be "
        "replayed");
  DataLoader other_seed(dataset, {.batch_size = 4, .seed = 12});
  CHECK(error_message([&] { other_seed.load_state(saver.state()); }).find("seed 11") !=
        std::string::npos);
  CHECK(error_message([&] {
          saver.load_state(nlohmann::json{{"epoch", 1}});
        }).find("\"batch\" missing") != std::string::npos);
  CHECK(error_message([&] {
          saver.set_position({0, 7});
        }).find("expected 0 <= batch <= 6") != std::string::npos);
}

TEST_CASE("an exception in the prefetch worker is rethrown by next(), and the loader shuts down") {
  auto dataset = std::make_shared<CountingDataset>(20, /*fail_at=*/13);
  {
    DataLoader loader(dataset, {.batch_size = 4, .shuffle = false, .prefetch = 2});
    CHECK(loader.next().has_value());
    CHECK(loader.next().has_value());
    CHECK(loader.next().has_value());
    CHECK(error_message([&] { loader.next(); }) == "[counting] example 13 is broken");
    CHECK(loader.position() == LoaderPosition{0, 3});
    // Still failing on retry, and still destructible.
    CHECK(error_message([&] { loader.next(); }) == "[counting] example 13 is broken");
  }
  {
    // Destroyed while the worker waits on a full queue.
    DataLoader loader(std::make_shared<CountingDataset>(1000), {.batch_size = 2, .prefetch = 2});
    CHECK(loader.next().has_value());
  }
}

TEST_CASE("stacking examples of different shapes names the example and the expected shape") {
  class Ragged final : public Dataset {
   public:
    int64_t size() const override {
      return 3;
    }
    Example get(int64_t index) const override {
      return {zeros({index == 2 ? 3 : 2}), scalar_tensor(0, DType::int64)};
    }
  };
  DataLoader loader(std::make_shared<Ragged>(), {.batch_size = 3, .shuffle = false});
  CHECK(error_message([&] { loader.next(); }) ==
        "[loader] example 2 has input (3) float32, expected (2) float32 like example 0");
}

TEST_CASE("next_across_epochs moves into the next epoch; an empty epoch is an error") {
  DataLoader loader(std::make_shared<CountingDataset>(5), {.batch_size = 2, .prefetch = 1});
  for (int step = 0; step < 4; ++step) loader.next_across_epochs();
  CHECK(loader.position() == LoaderPosition{1, 1});
  DataLoader empty_epoch(std::make_shared<CountingDataset>(3),
                         {.batch_size = 4, .drop_last = true});
  CHECK_FALSE(empty_epoch.next().has_value());
  CHECK(error_message([&] { empty_epoch.next_across_epochs(); }).find("an epoch has no batches") !=
        std::string::npos);
}

TEST_CASE("gaussian regression: rows reproducible from (seed, index), y = x . w_true") {
  GaussianRegressionDataset data({.rows = 1000, .features = 64, .seed = 5});
  const Example a = data.get(17), again = data.get(17), other = data.get(18);
  CHECK(a.input.shape() == Shape{64});
  CHECK(a.target.shape() == Shape{1});
  CHECK(a.input.to_vector<float>() == again.input.to_vector<float>());
  CHECK(a.input.to_vector<float>() != other.input.to_vector<float>());
  const auto x = a.input.to_vector<float>(), w = data.true_weights().to_vector<float>();
  double y = 0;
  for (size_t j = 0; j < x.size(); ++j) y += double(x[j]) * w[j];
  CHECK(a.target.item<float>() == float(y));
  CHECK(GaussianRegressionDataset({.rows = 1000, .features = 64, .seed = 6})
            .get(17)
            .input.to_vector<float>() != x);

  // X ~ N(0, 1): over 200 x 64 draws, mean within 5 sigma (5/sqrt(12800) ~ 0.044) of 0 and
  // variance within 0.1 of 1.
  double sum = 0, sum_squares = 0;
  for (int64_t i = 0; i < 200; ++i) {
    for (float v : data.get(i).input.to_vector<float>()) {
      sum += v;
      sum_squares += double(v) * v;
    }
  }
  const double mean = sum / 12800, variance = sum_squares / 12800 - mean * mean;
  CHECK(std::abs(mean) < 0.044);
  CHECK(std::abs(variance - 1) < 0.1);

  const TrainValidation split =
      make_gaussian_regression({.rows = 1000, .features = 8, .validation_fraction = 0.2});
  CHECK(split.train->size() == 800);
  CHECK(split.validation->size() == 200);
  GaussianRegressionDataset whole({.rows = 1000, .features = 8});
  CHECK(split.validation->get(0).input.to_vector<float>() ==
        whole.get(800).input.to_vector<float>());
  CHECK(error_message([&] { whole.get(1000); }) ==
        "[regression] index 1000 out of range; expected 0 <= index < 1000");
}

TEST_CASE("crop_and_flip pads with zeros, crops at (dy, dx) and mirrors") {
  // One 3x3 channel 1..9; padding 1, offset (0, 0) shifts the image down-right by one.
  const Tensor image = from_vector<float>({1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 3, 3});
  CHECK(crop_and_flip(image, 1, 0, 0, false).to_vector<float>() ==
        std::vector<float>{0, 0, 0, 0, 1, 2, 0, 4, 5});
  CHECK(crop_and_flip(image, 1, 1, 1, false).to_vector<float>() == image.to_vector<float>());
  CHECK(crop_and_flip(image, 1, 1, 1, true).to_vector<float>() ==
        std::vector<float>{3, 2, 1, 6, 5, 4, 9, 8, 7});
  CHECK(crop_and_flip(image, 1, 2, 1, true).to_vector<float>() ==
        std::vector<float>{6, 5, 4, 9, 8, 7, 0, 0, 0});
}

TEST_CASE("RandomCropFlip draws depend on seed, epoch and sample index only") {
  const RandomCropFlip augment({.padding = 4, .horizontal_flip = true, .seed = 9});
  int flips = 0;
  std::vector<int> offsets(9, 0);
  for (int64_t i = 0; i < 900; ++i) {
    const auto d = augment.draw(i, 0);
    CHECK((d.dy >= 0 && d.dy <= 8 && d.dx >= 0 && d.dx <= 8));
    flips += d.flip;
    ++offsets[size_t(d.dx)];
  }
  // Binomial(900, 1/2): 5 sigma = 75; each offset Binomial(900, 1/9): 5 sigma ~ 47.
  CHECK(std::abs(flips - 450) < 75);
  for (int count : offsets) CHECK(std::abs(count - 100) < 47);

  // In a batch, row r is augmented by the draws of its dataset index.
  Batch batch{.input = from_vector<float>({1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9},
                                          {2, 1, 3, 3}),
              .target = zeros({2}),
              .indices = {41, 7}};
  const RandomCropFlip small({.padding = 1, .horizontal_flip = true, .seed = 2});
  const Tensor original = batch.input.clone();
  small(batch, 3);
  for (int64_t row = 0; row < 2; ++row) {
    const auto d = small.draw(batch.indices[size_t(row)], 3);
    CHECK(batch.input.select(0, row).to_vector<float>() ==
          crop_and_flip(original.select(0, row), 1, d.dy, d.dx, d.flip).to_vector<float>());
  }
  CHECK(small.draw(41, 3).dy == RandomCropFlip({.padding = 1, .seed = 2}).draw(41, 3).dy);
}

TEST_CASE("batches built by several threads equal those built by one; errors still surface") {
  auto dataset = std::make_shared<CountingDataset>(50);
  DataLoader one(dataset, {.batch_size = 8, .seed = 4, .prefetch = 0, .threads = 1});
  DataLoader two(dataset, {.batch_size = 8, .seed = 4, .prefetch = 2, .threads = 2});
  CHECK(drain(one, 2) == drain(two, 2));
  DataLoader failing(std::make_shared<CountingDataset>(50, 3),
                     {.batch_size = 8, .shuffle = false, .threads = 2});
  CHECK(error_message([&] { failing.next(); }) == "[counting] example 3 is broken");
}

TEST_CASE("materialize keeps every example in two stacked tensors") {
  GaussianRegressionDataset rows({.rows = 30, .features = 5, .seed = 2});
  const auto kept = materialize(rows, 2);
  CHECK(kept->size() == 30);
  CHECK(kept->inputs().shape() == Shape{30, 5});
  CHECK(kept->targets().shape() == Shape{30, 1});
  CHECK(kept->get(13).input.to_vector<float>() == rows.get(13).input.to_vector<float>());
  CHECK(kept->get(13).target.to_vector<float>() == rows.get(13).target.to_vector<float>());
  CHECK(error_message([&] {
          TensorDataset(zeros({3, 2}), zeros({4}));
        }) == "[tensor_dataset] inputs (3, 2) and targets (4), expected the same leading size");
}

TEST_CASE(
    "RandomCropFlip as a loader transform: same batches with prefetch, new draws each epoch") {
  auto images = std::make_shared<TensorDataset>(randn({12, 2, 5, 5}, 3), zeros({12}));
  const RandomCropFlip augment({.padding = 2, .seed = 5});
  DataLoader direct(images, {.batch_size = 5, .seed = 1, .prefetch = 0, .transform = augment});
  DataLoader prefetched(images, {.batch_size = 5, .seed = 1, .prefetch = 2, .transform = augment});
  const auto a = drain(direct, 2), b = drain(prefetched, 2);
  CHECK(a == b);
  // The same twelve images augmented in epoch 0 and in epoch 1 differ from each other and
  // from the originals.
  DataLoader plain(images, {.batch_size = 12, .shuffle = false, .prefetch = 0});
  const Batch batch = *plain.next();
  Batch epoch0{batch.input.clone(), batch.target, batch.indices};
  Batch epoch1{batch.input.clone(), batch.target, batch.indices};
  augment(epoch0, 0);
  augment(epoch1, 1);
  CHECK(epoch0.input.to_vector<float>() != epoch1.input.to_vector<float>());
  CHECK(epoch0.input.to_vector<float>() != batch.input.to_vector<float>());
}
