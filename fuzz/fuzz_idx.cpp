// IDX (MNIST) reader: the input is two files, images then labels, split by its first two bytes
// (little-endian length of the images file). Either may be gzip; every example is read.
#include <algorithm>

#include "data/idx.h"
#include "fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lattice;
  if (size < 2) return 0;
  const size_t images_size = std::min<size_t>(size - 2, size_t(data[0]) | size_t(data[1]) << 8);
  const std::string images = fuzz::write_scratch("images", data + 2, images_size);
  const std::string labels =
      fuzz::write_scratch("labels", data + 2 + images_size, size - 2 - images_size);
  fuzz::expect_error_or_success([&] {
    data::IdxDataset dataset(images, labels, {.flatten = (size & 1) != 0});
    for (int64_t i = 0; i < std::min<int64_t>(dataset.size(), 8); ++i) {
      const data::Example example = dataset.get(i);
      FUZZ_CHECK(example.input.numel() == dataset.rows() * dataset.cols(), "example ", i);
    }
  });
  return 0;
}
