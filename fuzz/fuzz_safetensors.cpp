// The safetensors reader (tensor/safetensors.h): the input is the file; every tensor it returns
// must be readable in full.
#include "fuzz_support.h"
#include "tensor/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lattice;
  const std::string path = fuzz::write_scratch("tensors.safetensors", data, size);
  fuzz::expect_error_or_success([&] {
    const SafetensorsFile file = load_safetensors(path);
    for (const auto& [name, tensor] : file.tensors) {
      // Touch every element through a contiguous float64 copy.
      const Tensor copy = tensor.to(DType::float64).contiguous();
      FUZZ_CHECK(copy.numel() == tensor.numel(), name);
    }
  });
  return 0;
}
