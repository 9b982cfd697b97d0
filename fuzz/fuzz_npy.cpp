// The .npy reader (tensor/npy.h): the input is the file; a tensor it returns must be readable in
// full and survive save_npy -> load_npy unchanged.
#include <vector>

#include "fuzz_support.h"
#include "tensor/npy.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lattice;
  const std::string path = fuzz::write_scratch("array.npy", data, size);
  fuzz::expect_error_or_success([&] {
    const Tensor tensor = load_npy(path);
    const std::string copy = (fuzz::scratch_dir() / "copy.npy").string();
    save_npy(copy, tensor);
    const Tensor again = load_npy(copy);
    FUZZ_CHECK(again.dtype() == tensor.dtype() && again.shape() == tensor.shape(), "round trip");
    // Bytes, not values: NaN payloads must survive too.
    const auto bytes = [](const Tensor& t) {
      const auto* begin = static_cast<const uint8_t*>(t.data_ptr());
      return std::vector<uint8_t>(begin, begin + t.numel() * element_size(t.dtype()));
    };
    FUZZ_CHECK(bytes(again) == bytes(tensor), "round trip changed the data");
  });
  return 0;
}
