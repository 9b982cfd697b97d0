// CIFAR-10 binary batch reader: the input is one batch file (gzip or raw); every record is read.
#include "data/cifar.h"
#include "fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lattice;
  const std::string path = fuzz::write_scratch("batch.bin", data, size);
  fuzz::expect_error_or_success([&] {
    data::Cifar10Dataset dataset({path});
    for (int64_t i = 0; i < dataset.size(); ++i) {
      FUZZ_CHECK(dataset.get(i).input.numel() == 3 * 32 * 32, "record ", i);
      FUZZ_CHECK(dataset.label(i) < 10, "record ", i);
    }
  });
  return 0;
}
