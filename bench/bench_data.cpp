// Data loading throughput: one Fashion-MNIST epoch through the DataLoader (batch 512) with and
// without the prefetch thread, next to copying the same bytes as a baseline; and batches of
// the synthetic gaussian regression (rows drawn from Philox on demand).
// Usage: bench_data [--data DIR]
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "data/idx.h"
#include "data/synthetic.h"

using namespace lattice;
using namespace lattice::data;

namespace {
double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}
}  // namespace

int main(int argc, char** argv) {
  std::string directory = kFashionMnistDir;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--data") == 0) directory = argv[i + 1];
  }
  try {
    if (std::filesystem::exists(directory)) {
      auto start = std::chrono::steady_clock::now();
      const auto train = load_mnist(directory, true, {.flatten = true});
      std::printf("fashion-mnist: read and gunzip %lld images: %.3f s\n",
                  static_cast<long long>(train->size()), seconds_since(start));
      for (int prefetch : {0, 2}) {
        DataLoader loader(train, {.batch_size = 512, .seed = 1, .prefetch = prefetch});
        start = std::chrono::steady_clock::now();
        int64_t samples = 0;
        while (auto batch = loader.next()) samples += batch->size();
        const double elapsed = seconds_since(start);
        std::printf("  epoch, prefetch %d: %.3f s, %.0f samples/s\n", prefetch, elapsed,
                    double(samples) / elapsed);
      }
      // Baseline: the float bytes of one epoch copied once.
      std::vector<float> source(size_t(train->size()) * 784, 0.5f), target(source.size());
      start = std::chrono::steady_clock::now();
      std::memcpy(target.data(), source.data(), source.size() * sizeof(float));
      std::printf("  baseline memcpy of an epoch's floats: %.3f s (checksum %g)\n",
                  seconds_since(start), double(target[target.size() / 2]));
    } else {
      std::printf("fashion-mnist: %s not found, skipped\n", directory.c_str());
    }
    const TrainValidation regression = make_gaussian_regression({});
    for (int threads : {1, 2}) {
      DataLoader loader(regression.train,
                        {.batch_size = 4096, .seed = 1, .prefetch = 0, .threads = threads});
      const auto start = std::chrono::steady_clock::now();
      const int batches = 4;
      for (int b = 0; b < batches; ++b) loader.next();
      const double elapsed = seconds_since(start) / batches;
      std::printf("regression 4096 x 1024 batch, %d thread(s): %.3f s (%.0f rows/s)\n", threads,
                  elapsed, 4096 / elapsed);
    }
  } catch (const Error& error) {
    std::fprintf(stderr, "bench_data: %s\n", error.what());
    return 1;
  }
  return 0;
}
