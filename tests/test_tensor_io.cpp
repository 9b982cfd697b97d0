// Tensor files from the tensor layer alone (tensor/safetensors.h): a model saved with
// save_safetensors and read back with load_safetensors + load_state_dict, dtypes kept, and a
// dtype mismatch refused by load_state_dict instead of converted.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "nn/layers.h"
#include "process_support.h"
#include "tensor/random.h"
#include "tensor/safetensors.h"

using namespace lattice;

namespace {

/// A safetensors file as a foreign writer makes it: 8-byte little-endian header length, header,
/// data.
std::string write_safetensors_file(const std::string& name,
                                   const std::string& header,
                                   const std::vector<uint8_t>& data) {
  const std::string path = (test::scratch_dir() / name).string();
  const uint64_t length = header.size();
  std::ofstream file(path, std::ios::binary);
  for (int i = 0; i < 8; ++i) file.put(char(length >> (8 * i)));
  file << header;
  file.write(reinterpret_cast<const char*>(data.data()), std::streamsize(data.size()));
  return path;
}

}  // namespace

TEST_CASE("a module saved with save_safetensors loads into a fresh one through load_state_dict") {
  manual_seed(3);
  nn::Linear source(4, 3);
  manual_seed(4);
  nn::Linear target(4, 3);
  REQUIRE(source.weight.to_vector<float>() != target.weight.to_vector<float>());
  const std::string path = (test::scratch_dir() / "linear.safetensors").string();
  save_safetensors(path, source.state_dict());

  const SafetensorsFile file = load_safetensors(path);
  REQUIRE(file.tensors.size() == 2);
  CHECK(file.tensors[0].first == "weight");
  CHECK(file.tensors[1].first == "bias");
  for (const auto& [name, tensor] : file.tensors) CHECK(tensor.dtype() == DType::float32);
  target.load_state_dict(file.tensors);
  CHECK(target.weight.to_vector<float>() == source.weight.to_vector<float>());
  CHECK(target.bias.to_vector<float>() == source.bias.to_vector<float>());
}

TEST_CASE(
    "float64 tensors stay float64 in the file, and load_state_dict refuses them for float32") {
  nn::Linear model(2, 1);
  const std::vector<float> before = model.weight.to_vector<float>();
  // 0.1 is not a float32 value: a silent conversion would round it.
  const NamedTensors wide = {{"weight", from_vector<double>({0.1, 0.2}, {1, 2})},
                             {"bias", from_vector<double>({0.3})}};
  const std::string path = (test::scratch_dir() / "wide.safetensors").string();
  save_safetensors(path, wide);
  const SafetensorsFile file = load_safetensors(path);
  CHECK(file.tensors[0].second.dtype() == DType::float64);
  CHECK(file.tensors[0].second.to_vector<double>() == std::vector<double>{0.1, 0.2});
  CHECK_THROWS_WITH_AS(model.load_state_dict(file.tensors),
                       "[load_state_dict] \"weight\": dtype float64 in the state, the module's is "
                       "float32 (convert with .to(DType) first if intended)",
                       Error);
  CHECK(model.weight.to_vector<float>() == before);  // nothing was copied

  // Converting on purpose is one call away, and then loads.
  NamedTensors narrowed;
  for (const auto& [name, tensor] : file.tensors)
    narrowed.emplace_back(name, tensor.to(DType::float32));
  model.load_state_dict(narrowed);
  CHECK(model.weight.to_vector<float>() == std::vector<float>{0.1f, 0.2f});
}

TEST_CASE("a missing tensor file is named with the safetensors prefix, not the checkpoint's") {
  const std::string path = (test::scratch_dir() / "absent.safetensors").string();
  CHECK_THROWS_WITH_AS(
      load_safetensors(path),
      ("[safetensors] " + path + ": cannot open: No such file or directory").c_str(), Error);
}

TEST_CASE("BF16 and F16 files load as float32 on the bf16/fp16 lattice and save back as such") {
  // Codes, little-endian: bf16 0x3f80 = 1, 0xc0a0 = -5, 0x3dcd = 0x3dcd0000 as fp32;
  // fp16 0x3c00 = 1, 0x7bff = 65504 (its max), 0x0001 = 2^-24 (its smallest subnormal).
  const std::string path = write_safetensors_file(
      "half.safetensors",
      R"({"b":{"dtype":"BF16","shape":[3],"data_offsets":[0,6]},)"
      R"("h":{"dtype":"F16","shape":[3],"data_offsets":[6,12]}})",
      {0x80, 0x3f, 0xa0, 0xc0, 0xcd, 0x3d, 0x00, 0x3c, 0xff, 0x7b, 0x01, 0x00});
  const SafetensorsFile file = load_safetensors(path);
  const Tensor b = file.tensors[0].second, h = file.tensors[1].second;
  CHECK(b.dtype() == DType::float32);
  CHECK(b.format() == bf16);
  uint32_t bits = 0x3dcd0000u;
  float third = 0;
  std::memcpy(&third, &bits, 4);
  CHECK(b.to_vector<float>() == std::vector<float>{1.0f, -5.0f, third});
  CHECK(h.format() == fp16);
  CHECK(h.to_vector<float>() == std::vector<float>{1.0f, 65504.0f, std::ldexp(1.0f, -24)});

  const std::string again = (test::scratch_dir() / "half_again.safetensors").string();
  save_safetensors(again, file.tensors);
  const std::string text = test::read_file(again);
  CHECK(text.find(R"("dtype":"BF16")") != std::string::npos);
  CHECK(text.find(R"("dtype":"F16")") != std::string::npos);
  const SafetensorsFile reloaded = load_safetensors(again);
  CHECK(reloaded.tensors[0].second.format() == bf16);
  CHECK(reloaded.tensors[0].second.to_vector<float>() == b.to_vector<float>());
  CHECK(reloaded.tensors[1].second.to_vector<float>() == h.to_vector<float>());
}

TEST_CASE("a tensor labelled bf16 that holds a value off the bf16 lattice is not saved") {
  const std::string path = (test::scratch_dir() / "mislabelled.safetensors").string();
  const Tensor mislabelled = from_vector<float>({1.0f, 0.1f}).with_format(bf16);
  CHECK_THROWS_WITH_AS(save_safetensors(path, {{"x", mislabelled}}),
                       ("[safetensors] " + path +
                        ": tensor \"x\" is labelled bf16 but element 1 (0.1) is not a bf16 value")
                           .c_str(),
                       Error);
}
