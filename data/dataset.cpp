// Subset, batch stacking and the DataLoader (shuffle, prefetch thread, position).
#include "data/dataset.h"

#include <algorithm>
#include <cstring>
#include <numeric>
#include <type_traits>

namespace lattice::data {

void check_index(const char* reader, int64_t index, int64_t size) {
  LATTICE_CHECK(index >= 0 && index < size, "[", reader, "] index ", index,
                " out of range; expected 0 <= index < ", size);
}

Subset::Subset(std::shared_ptr<const Dataset> source, std::vector<int64_t> indices)
    : source_(std::move(source)), indices_(std::move(indices)) {
  LATTICE_CHECK(source_ != nullptr, "[subset] source dataset is null");
  for (int64_t index : indices_) check_index("subset", index, source_->size());
}

std::shared_ptr<Subset> Subset::range(std::shared_ptr<const Dataset> source,
                                      int64_t begin,
                                      int64_t end) {
  LATTICE_CHECK(source != nullptr, "[subset] source dataset is null");
  LATTICE_CHECK(0 <= begin && begin <= end && end <= source->size(), "[subset] range [", begin,
                ", ", end, ") does not lie in [0, ", source->size(), ")");
  std::vector<int64_t> indices(static_cast<size_t>(end - begin));
  std::iota(indices.begin(), indices.end(), begin);
  return std::make_shared<Subset>(std::move(source), std::move(indices));
}

Example Subset::get(int64_t index) const {
  check_index("subset", index, size());
  return source_->get(indices_[size_t(index)]);
}

Batch Subset::get_batch(std::vector<int64_t> indices, int threads) const {
  std::vector<int64_t> sources;
  sources.reserve(indices.size());
  for (const int64_t index : indices) {
    check_index("subset", index, size());
    sources.push_back(indices_[size_t(index)]);
  }
  Batch batch = source_->get_batch(std::move(sources), threads);
  batch.indices = std::move(indices);
  return batch;
}

TensorDataset::TensorDataset(Tensor inputs, Tensor targets)
    : inputs_(std::move(inputs)), targets_(std::move(targets)) {
  LATTICE_CHECK(inputs_.defined() && targets_.defined() && inputs_.rank() >= 1 &&
                    targets_.rank() >= 1 && inputs_.shape(0) == targets_.shape(0),
                "[tensor_dataset] inputs ",
                inputs_.defined() ? concat(inputs_.shape()) : "undefined", " and targets ",
                targets_.defined() ? concat(targets_.shape()) : "undefined",
                ", expected the same leading size");
}

Example TensorDataset::get(int64_t index) const {
  check_index("tensor_dataset", index, size());
  return {inputs_.select(0, index).clone(), targets_.select(0, index).clone()};
}

std::shared_ptr<TensorDataset> materialize(const Dataset& source, int threads) {
  LATTICE_CHECK(source.size() > 0, "[materialize] the dataset is empty");
  std::vector<int64_t> indices(static_cast<size_t>(source.size()));
  std::iota(indices.begin(), indices.end(), int64_t(0));
  Batch all = source.get_batch(std::move(indices), threads);
  return std::make_shared<TensorDataset>(std::move(all.input), std::move(all.target));
}

namespace {

Tensor stack_field(const std::vector<Example>& examples,
                   const std::vector<int64_t>& indices,
                   Tensor Example::*field,
                   const char* name) {
  const Tensor& first = examples.front().*field;
  LATTICE_CHECK(first.defined(), "[loader] example ", indices.front(), " has no ", name);
  Shape shape = first.shape();
  shape.insert(0, int64_t(examples.size()));
  Tensor stacked = empty(shape, first.dtype());
  const size_t bytes = size_t(first.numel() * element_size(first.dtype()));
  auto* out = static_cast<uint8_t*>(stacked.data_ptr());
  for (size_t row = 0; row < examples.size(); ++row) {
    const Tensor& value = examples[row].*field;
    LATTICE_CHECK(
        value.defined() && value.shape() == first.shape() && value.dtype() == first.dtype(),
        "[loader] example ", indices[row], " has ", name, " ",
        value.defined() ? concat(value.shape(), " ", value.dtype()) : "undefined", ", expected ",
        first.shape(), " ", first.dtype(), " like example ", indices.front());
    const Tensor packed = value.contiguous();
    std::memcpy(out + row * bytes, packed.data_ptr(), bytes);
  }
  return stacked;
}

}  // namespace

Batch Dataset::get_batch(std::vector<int64_t> indices, int threads) const {
  // get() of each example on `threads` OpenMP threads (get() is thread-safe); the first
  // exception thrown is rethrown on the caller's thread.
  std::vector<Example> examples(indices.size());
  std::exception_ptr first_error;
  std::mutex error_mutex;
  const auto count = int64_t(indices.size());
#pragma omp parallel for num_threads(std::max(threads, 1)) schedule(dynamic) if (threads > 1)
  for (int64_t i = 0; i < count; ++i) {
    try {
      examples[size_t(i)] = get(indices[size_t(i)]);
    } catch (...) {
      std::lock_guard lock(error_mutex);
      if (!first_error) first_error = std::current_exception();
    }
  }
  if (first_error) std::rethrow_exception(first_error);
  return stack_examples(examples, std::move(indices));
}

Batch stack_examples(const std::vector<Example>& examples, std::vector<int64_t> indices) {
  LATTICE_CHECK(!examples.empty(), "[loader] cannot stack an empty batch");
  LATTICE_CHECK(examples.size() == indices.size(), "[loader] ", examples.size(), " examples but ",
                indices.size(), " indices");
  Batch batch;
  batch.input = stack_field(examples, indices, &Example::input, "input");
  batch.target = stack_field(examples, indices, &Example::target, "target");
  batch.indices = std::move(indices);
  return batch;
}

void to_json(nlohmann::json& json, const LoaderPosition& position) {
  json = nlohmann::json{{"epoch", position.epoch}, {"batch", position.batch}};
}

void from_json(const nlohmann::json& json, LoaderPosition& position) {
  for (const char* key : {"epoch", "batch"}) {
    LATTICE_CHECK(json.is_object() && json.contains(key) && json[key].is_number_integer() &&
                      json[key].get<int64_t>() >= 0,
                  "[loader] position ", json.dump(), ": field \"", key,
                  "\" missing or not a non-negative integer");
  }
  position.epoch = json["epoch"].get<int64_t>();
  position.batch = json["batch"].get<int64_t>();
}

DataLoader::DataLoader(std::shared_ptr<const Dataset> dataset, LoaderOptions options)
    : dataset_(std::move(dataset)), options_(std::move(options)) {
  LATTICE_CHECK(dataset_ != nullptr, "[loader] dataset is null");
  LATTICE_CHECK(options_.batch_size > 0, "[loader] batch size ", options_.batch_size,
                ", expected > 0");
  LATTICE_CHECK(options_.threads >= 1, "[loader] threads ", options_.threads, ", expected >= 1");
  LATTICE_CHECK(options_.prefetch >= 0, "[loader] prefetch ", options_.prefetch, ", expected >= 0");
}

DataLoader::~DataLoader() {
  stop_worker();
}

int64_t DataLoader::batches_per_epoch() const {
  const int64_t n = dataset_->size();
  return options_.drop_last ? n / options_.batch_size
                            : (n + options_.batch_size - 1) / options_.batch_size;
}

std::vector<int64_t> DataLoader::permutation(int64_t epoch) const {
  const int64_t n = dataset_->size();
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), int64_t(0));
  if (!options_.shuffle) return order;
  // Fisher-Yates; step i draws 64 bits (words 2i, 2i+1) and maps them to [0, i] by a
  // multiply-shift, whose bias (< n / 2^64) is far below anything a shuffle could show.
  const RandomStream random{.seed = options_.seed, .subsequence = uint64_t(epoch)};
  for (int64_t i = n - 1; i > 0; --i) {
    const uint64_t bits =
        (uint64_t(random.word(2 * uint64_t(i))) << 32) | random.word(2 * uint64_t(i) + 1);
    const auto j = int64_t((static_cast<unsigned __int128>(bits) * uint64_t(i + 1)) >> 64);
    std::swap(order[size_t(i)], order[size_t(j)]);
  }
  return order;
}

Batch DataLoader::build_batch(LoaderPosition position, const std::vector<int64_t>& order) const {
  const int64_t begin = position.batch * options_.batch_size;
  const int64_t end = std::min<int64_t>(begin + options_.batch_size, dataset_->size());
  std::vector<int64_t> indices(order.begin() + begin, order.begin() + end);
  Batch batch = dataset_->get_batch(std::move(indices), options_.threads);
  if (options_.transform) options_.transform(batch, position.epoch);
  return batch;
}

Batch DataLoader::batch_at(LoaderPosition position) const {
  LATTICE_CHECK(position.epoch >= 0 && position.batch >= 0 && position.batch < batches_per_epoch(),
                "[loader] batch ", position.batch, " of epoch ", position.epoch,
                " does not exist; expected 0 <= batch < ", batches_per_epoch());
  return build_batch(position, permutation(position.epoch));
}

void DataLoader::worker_loop(LoaderPosition start) {
  const int64_t per_epoch = batches_per_epoch();
  LoaderPosition position = start;
  std::vector<int64_t> order;
  int64_t order_epoch = -1;
  while (true) {
    if (position.batch >= per_epoch) {
      position = {position.epoch + 1, 0};
      continue;
    }
    {
      std::unique_lock lock(mutex_);
      changed_.wait(lock, [&] { return stopping_ || int64_t(ready_.size()) < options_.prefetch; });
      if (stopping_) return;
    }
    Ready ready{.position = position, .batch = std::nullopt, .error = nullptr};
    try {
      if (order_epoch != position.epoch) {
        order = permutation(position.epoch);
        order_epoch = position.epoch;
      }
      if (in_shard(position)) ready.batch = build_batch(position, order);
    } catch (...) {
      ready.error = std::current_exception();
    }
    const bool failed = ready.error != nullptr;
    {
      std::lock_guard lock(mutex_);
      ready_.push_back(std::move(ready));
    }
    changed_.notify_all();
    if (failed) return;  // the consumer rethrows; the next call to next() starts over
    ++position.batch;
  }
}

void DataLoader::start_worker() {
  stop_worker();
  stopping_ = false;
  worker_failed_ = false;
  worker_ = std::thread([this, start = position_] { worker_loop(start); });
}

void DataLoader::stop_worker() {
  if (worker_.joinable()) {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    changed_.notify_all();
    worker_.join();
  }
  ready_.clear();
}

void DataLoader::set_position(LoaderPosition position) {
  LATTICE_CHECK(position.epoch >= 0 && position.batch >= 0 && position.batch <= batches_per_epoch(),
                "[loader] position (epoch ", position.epoch, ", batch ", position.batch,
                ") does not exist; expected 0 <= batch <= ", batches_per_epoch());
  stop_worker();
  position_ = position;
}

std::optional<Batch> DataLoader::next() {
  if (position_.batch >= batches_per_epoch()) {
    position_ = {position_.epoch + 1, 0};
    return std::nullopt;
  }
  if (options_.prefetch == 0) {
    if (order_epoch_ != position_.epoch) {
      order_ = permutation(position_.epoch);
      order_epoch_ = position_.epoch;
    }
    Batch batch = build_batch(position_, order_);
    ++position_.batch;
    return batch;
  }
  Ready ready = take_prefetched();
  // A batch outside the shard was not built ahead; build it here.
  Batch batch = ready.batch ? std::move(*ready.batch) : batch_at(position_);
  ++position_.batch;
  return batch;
}

bool DataLoader::skip() {
  if (position_.batch >= batches_per_epoch()) {
    position_ = {position_.epoch + 1, 0};
    return false;
  }
  if (options_.prefetch > 0) take_prefetched();
  ++position_.batch;
  return true;
}

void DataLoader::set_shard(LoaderShard shard) {
  LATTICE_CHECK(shard.first >= 0 && shard.count >= 1 && shard.first + shard.count <= shard.period,
                "[loader] shard (period ", shard.period, ", first ", shard.first, ", count ",
                shard.count, "): expected 0 <= first, 1 <= count, first + count <= period");
  stop_worker();
  shard_ = shard;
}

bool DataLoader::in_shard(LoaderPosition position) const {
  const int64_t offset = (position.epoch * batches_per_epoch() + position.batch) % shard_.period;
  return offset >= shard_.first && offset < shard_.first + shard_.count;
}

DataLoader::Ready DataLoader::take_prefetched() {
  if (!worker_.joinable() || worker_failed_) start_worker();
  Ready ready;
  {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return !ready_.empty(); });
    ready = std::move(ready_.front());
    ready_.pop_front();
  }
  changed_.notify_all();
  if (ready.error) {
    worker_failed_ = true;
    std::rethrow_exception(ready.error);
  }
  LATTICE_CHECK(ready.position == position_, "[loader] internal: prefetched batch ",
                ready.position.batch, " of epoch ", ready.position.epoch, ", expected batch ",
                position_.batch, " of epoch ", position_.epoch);
  return ready;
}

Batch DataLoader::next_across_epochs() {
  LATTICE_CHECK(batches_per_epoch() > 0, "[loader] an epoch has no batches (", dataset_->size(),
                " samples, batch size ", options_.batch_size, ", drop_last)");
  if (auto batch = next()) return std::move(*batch);
  return std::move(*next());
}

nlohmann::json DataLoader::state() const {
  nlohmann::json json = position_;
  json["seed"] = options_.seed;
  json["batch_size"] = options_.batch_size;
  json["dataset_size"] = dataset_->size();
  json["shuffle"] = options_.shuffle;
  json["drop_last"] = options_.drop_last;
  return json;
}

void DataLoader::load_state(const nlohmann::json& state) {
  const LoaderPosition position = state.get<LoaderPosition>();
  const auto check_same = [&](const char* key, const auto& mine) {
    using Value = std::decay_t<decltype(mine)>;
    if (!state.contains(key)) return;
    Value saved{};
    try {
      saved = state[key].get<Value>();
    } catch (const nlohmann::json::exception&) {
      throw Error(concat("[loader] saved state field \"", key, "\" is ", state[key].dump(),
                         ", expected a ", std::is_same_v<Value, bool> ? "boolean" : "number"));
    }
    LATTICE_CHECK(saved == mine, "[loader] saved state has ", key, " ", saved, ", this loader has ",
                  mine, "; the saved batches cannot be replayed");
  };
  check_same("seed", options_.seed);
  check_same("batch_size", options_.batch_size);
  check_same("dataset_size", dataset_->size());
  check_same("shuffle", options_.shuffle);
  check_same("drop_last", options_.drop_last);
  set_position(position);
}

}  // namespace lattice::data
