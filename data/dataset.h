// Dataset (random access to (input, target) examples), batching into contiguous (B, ...) tensors,
// and DataLoader: a seeded per-epoch shuffle, drop_last, a background prefetch thread and a
// position (epoch, batch) that a checkpoint saves so a resumed run sees the same batches.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>
#include <vector>

#include "tensor/tensor.h"

namespace lattice::data {

struct Example {
  Tensor input;
  Tensor target;
};

/// Examples stacked along a new leading axis: input (B, ...), target (B, ...). `indices` are
/// the dataset indices of the rows, in order (augmentations draw their randomness from them).
struct Batch {
  Tensor input;
  Tensor target;
  std::vector<int64_t> indices;
  int64_t size() const {
    return int64_t(indices.size());
  }
};

/// Random access to examples. get() is called from the loader's prefetch thread, so it must be
/// safe to call concurrently with itself (the readers here are: they hold immutable data).
class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  /// Example `index` in [0, size()). Throws lattice::Error outside that range.
  virtual Example get(int64_t index) const = 0;
  /// Examples `indices` as stack_examples stacks them, built on `threads` OpenMP threads: by
  /// default get() of each and a copy into the batch. A reader that can write its examples
  /// straight into the batch overrides it with the same values (no per-example tensors).
  virtual Batch get_batch(std::vector<int64_t> indices, int threads) const;
};

/// The examples `indices` of another dataset (a train/validation split, a small debug subset).
class Subset final : public Dataset {
 public:
  Subset(std::shared_ptr<const Dataset> source, std::vector<int64_t> indices);
  /// Examples [begin, end) of `source`.
  static std::shared_ptr<Subset> range(std::shared_ptr<const Dataset> source,
                                       int64_t begin,
                                       int64_t end);
  int64_t size() const override {
    return int64_t(indices_.size());
  }
  Example get(int64_t index) const override;
  /// The source's batch of the mapped indices, with this subset's indices.
  Batch get_batch(std::vector<int64_t> indices, int threads) const override;

 private:
  std::shared_ptr<const Dataset> source_;
  std::vector<int64_t> indices_;
};

/// Examples held in two stacked tensors: example i is (inputs[i], targets[i]) (packed copies).
class TensorDataset final : public Dataset {
 public:
  /// Throws lattice::Error unless both have rank >= 1 and the same leading size.
  TensorDataset(Tensor inputs, Tensor targets);
  int64_t size() const override {
    return inputs_.shape(0);
  }
  Example get(int64_t index) const override;
  const Tensor& inputs() const {
    return inputs_;
  }
  const Tensor& targets() const {
    return targets_;
  }

 private:
  Tensor inputs_, targets_;
};

/// Every example of `source` computed once and kept in memory (a validation split of a
/// generated dataset, evaluated every epoch). `threads` OpenMP threads call get().
std::shared_ptr<TensorDataset> materialize(const Dataset& source, int threads = 1);

/// Throws the loader's out-of-range error for readers to share.
void check_index(const char* reader, int64_t index, int64_t size);

/// One contiguous (B, ...) tensor per field, filled by memcpy. Every example must have the
/// shape and dtype of the first; throws lattice::Error naming the first one that differs.
Batch stack_examples(const std::vector<Example>& examples, std::vector<int64_t> indices);

/// Where a loader stands: the next batch it returns is batch `batch` of epoch `epoch`.
/// batch == batches_per_epoch means the epoch is exhausted (next() then returns nullopt).
struct LoaderPosition {
  int64_t epoch = 0;
  int64_t batch = 0;
  friend bool operator==(const LoaderPosition&, const LoaderPosition&) = default;
};
void to_json(nlohmann::json& json, const LoaderPosition& position);
/// Throws lattice::Error when "epoch" or "batch" is missing or not a non-negative integer.
void from_json(const nlohmann::json& json, LoaderPosition& position);

/// Changes a finished batch in place (augmentation). It may only use its arguments and its own
/// seed, so that a batch is the same with or without prefetch and after a resume.
using BatchTransform = std::function<void(Batch& batch, int64_t epoch)>;

struct LoaderOptions {
  int64_t batch_size = 64;
  bool shuffle = true;
  /// Drop the last, smaller batch of each epoch.
  bool drop_last = false;
  uint64_t seed = 0;
  /// Batches the background thread keeps ready; 0 builds each batch on the caller's thread.
  int prefetch = 2;
  /// OpenMP threads calling Dataset::get for the examples of one batch (image decoding, the
  /// generated regression rows); 1 keeps it on the building thread.
  int threads = 1;
  BatchTransform transform = {};
};

/// A data-parallel process's share of the batches: of every `period` consecutive batches,
/// counted across epochs from epoch 0's first, it trains on those at offsets [first, first +
/// count) and passes the others with skip(). Only a hint for the prefetch thread (which then
/// builds no batch the process skips): next() returns any batch it is asked for.
struct LoaderShard {
  int64_t period = 1;
  int64_t first = 0;
  int64_t count = 1;
};

/// Batches of a dataset, epoch after epoch. Epoch e visits the samples in permutation(e), which
/// depends only on the seed and e (Philox subsequence e), so any batch can be rebuilt from its
/// position alone. A trainer loop:
///   while (auto batch = loader.next()) { ... }        // one epoch; then loader.epoch() += 1
///   Batch batch = loader.next_across_epochs();        // step-based loops
/// Not thread-safe: one consumer thread calls next().
class DataLoader {
 public:
  DataLoader(std::shared_ptr<const Dataset> dataset, LoaderOptions options);
  ~DataLoader();
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  int64_t batches_per_epoch() const;
  /// The epoch the next batch belongs to.
  int64_t epoch() const {
    return position_.epoch;
  }
  LoaderPosition position() const {
    return position_;
  }
  /// Continues from `position` (as saved by position()); discards prefetched batches.
  void set_position(LoaderPosition position);

  /// The next batch of the current epoch, or nullopt once it is exhausted, after which the
  /// position moves to the start of the next epoch. Rethrows an exception from the worker.
  std::optional<Batch> next();
  /// The next batch, moving to the next epoch when one ends. Throws when an epoch is empty.
  Batch next_across_epochs();
  /// Passes the next batch without returning it (data-parallel training: another process
  /// trains on it). Returns false, and moves to the next epoch, where next() returns nullopt.
  bool skip();
  /// Sets which batches the prefetch thread builds (discards prefetched batches). Throws
  /// lattice::Error unless 0 <= first, 1 <= count and first + count <= period.
  void set_shard(LoaderShard shard);

  /// Batch `batch_index` of `epoch`, built on the caller's thread (what next() returns there).
  Batch batch_at(LoaderPosition position) const;
  /// The sample order of `epoch`: a Fisher-Yates shuffle driven by Philox, or 0..n-1.
  std::vector<int64_t> permutation(int64_t epoch) const;

  /// {"epoch", "batch", "seed", "batch_size", "dataset_size"} for a checkpoint.
  nlohmann::json state() const;
  /// Restores state(); throws lattice::Error when seed, batch size or dataset size differ
  /// from this loader's (the saved batches could not be replayed).
  void load_state(const nlohmann::json& state);

  const Dataset& dataset() const {
    return *dataset_;
  }
  const LoaderOptions& options() const {
    return options_;
  }

 private:
  struct Ready {
    LoaderPosition position;
    std::optional<Batch> batch;
    std::exception_ptr error;
  };
  Batch build_batch(LoaderPosition position, const std::vector<int64_t>& order) const;
  bool in_shard(LoaderPosition position) const;
  /// The prefetch thread's next entry, which must be at position_ (rethrows its error).
  Ready take_prefetched();
  void start_worker();
  void stop_worker();
  void worker_loop(LoaderPosition start);

  std::shared_ptr<const Dataset> dataset_;
  LoaderOptions options_;
  LoaderShard shard_;
  LoaderPosition position_;
  // The permutation next() uses without prefetch, computed once per epoch.
  std::vector<int64_t> order_;
  int64_t order_epoch_ = -1;

  std::thread worker_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<Ready> ready_;
  bool stopping_ = false;
  bool worker_failed_ = false;
};

}  // namespace lattice::data
