// .npy files (tensor/npy.h): files numpy 1.24 wrote (np.save) load with their values, save_npy
// writes numpy's bytes, every dtype round-trips, and bad files give one-line errors.
#include <doctest/doctest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "ops/ops.h"
#include "process_support.h"
#include "tensor/npy.h"

using namespace lattice;
namespace fs = std::filesystem;

namespace {

using Bytes = std::vector<uint8_t>;

Bytes text_bytes(const std::string& text) {
  return Bytes(text.begin(), text.end());
}

Bytes joined(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& part : parts) out.insert(out.end(), part.begin(), part.end());
  return out;
}

// np.save(f, np.array([[1.5, -2.0, 0.25], [3.0, 4.0, 5.0]], dtype='<f4')), byte for byte: magic,
// version 1.0, header length 0x76 = 118, the dict, 58 spaces and '\n', then the data.
const Bytes kNumpyFloat32 = joined({
    {0x93, 'N', 'U', 'M', 'P', 'Y', 0x01, 0x00, 0x76, 0x00},
    text_bytes("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }" +
               std::string(58, ' ') + "\n"),
    {0x00, 0x00, 0xc0, 0x3f, 0x00, 0x00, 0x00, 0xc0, 0x00, 0x00, 0x80, 0x3e,
     0x00, 0x00, 0x40, 0x40, 0x00, 0x00, 0x80, 0x40, 0x00, 0x00, 0xa0, 0x40},
});
// np.save(f, np.array([True, False, True])).
const Bytes kNumpyBool = joined({
    {0x93, 'N', 'U', 'M', 'P', 'Y', 0x01, 0x00, 0x76, 0x00},
    text_bytes("{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }" + std::string(60, ' ') +
               "\n"),
    {0x01, 0x00, 0x01},
});
// np.lib.format.write_array(f, np.array([1, 2], dtype='<i4'), version=(2, 0)): a 4-byte
// header length, 0x74 = 116.
const Bytes kNumpyVersion2 = joined({
    {0x93, 'N', 'U', 'M', 'P', 'Y', 0x02, 0x00, 0x74, 0x00, 0x00, 0x00},
    text_bytes("{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }" + std::string(58, ' ') +
               "\n"),
    {0x01, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00},
});

/// An .npy file built per the NPY spec: magic, version major.0, the header length little-endian
/// (2 bytes for 1.0, 4 for 2.0 and 3.0), the header `dict` padded with spaces and ended by '\n'
/// so that the data start at a multiple of 64 bytes, then `data`.
Bytes npy_file(int major, const std::string& dict, const Bytes& data) {
  const size_t length_bytes = major == 1 ? 2 : 4;
  const size_t unpadded = 6 + 2 + length_bytes + dict.size() + 1;
  const size_t header_length = dict.size() + 1 + (64 - unpadded % 64) % 64;
  Bytes file = {0x93, 'N', 'U', 'M', 'P', 'Y', uint8_t(major), 0x00};
  for (size_t i = 0; i < length_bytes; ++i) file.push_back(uint8_t(header_length >> (8 * i)));
  const Bytes header = text_bytes(dict + std::string(header_length - dict.size() - 1, ' ') + "\n");
  return joined({file, header, data});
}

std::string dict_of(const std::string& descr, const std::string& shape, bool fortran = false) {
  return "{'descr': '" + descr + "', 'fortran_order': " + (fortran ? "True" : "False") +
         ", 'shape': " + shape + ", }";
}

fs::path write_file(const std::string& name, const Bytes& bytes) {
  const fs::path path = test::scratch_dir() / name;
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  return path;
}

Bytes read_bytes(const fs::path& path) {
  const std::string text = test::read_file(path);
  return Bytes(text.begin(), text.end());
}

std::string load_error(const Bytes& bytes) {
  const fs::path path = write_file("bad.npy", bytes);
  try {
    load_npy(path.string());
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace

TEST_CASE("the spec's layout reproduces numpy's files byte for byte") {
  CHECK(npy_file(1, dict_of("<f4", "(2, 3)"),
                 Bytes(kNumpyFloat32.end() - 24, kNumpyFloat32.end())) == kNumpyFloat32);
  CHECK(npy_file(1, dict_of("|b1", "(3,)"), {1, 0, 1}) == kNumpyBool);
  CHECK(npy_file(2, dict_of("<i4", "(2,)"), {1, 0, 0, 0, 2, 0, 0, 0}) == kNumpyVersion2);
}

TEST_CASE("files numpy wrote load with numpy's shape, dtype and values") {
  const Tensor floats = load_npy(write_file("floats.npy", kNumpyFloat32).string());
  CHECK(floats.dtype() == DType::float32);
  CHECK(floats.shape() == Shape{2, 3});
  CHECK(floats.to_vector<float>() == std::vector<float>{1.5f, -2.0f, 0.25f, 3.0f, 4.0f, 5.0f});

  const Tensor flags = load_npy(write_file("flags.npy", kNumpyBool).string());
  CHECK(flags.dtype() == DType::boolean);
  CHECK(flags.to_vector<int64_t>() == std::vector<int64_t>{1, 0, 1});

  const Tensor ints = load_npy(write_file("v2.npy", kNumpyVersion2).string());
  CHECK(ints.dtype() == DType::int32);
  CHECK(ints.to_vector<int64_t>() == std::vector<int64_t>{1, 2});

  // Version 3.0 has 2.0's layout; a 0-d array has the shape ().
  const Tensor scalar = load_npy(
      write_file("v3.npy", npy_file(3, dict_of("<i8", "()"), {7, 0, 0, 0, 0, 0, 0, 0})).string());
  CHECK(scalar.dtype() == DType::int64);
  CHECK(scalar.rank() == 0);
  CHECK(scalar.item<int64_t>() == 7);
}

TEST_CASE("save_npy writes exactly the bytes np.save writes") {
  const fs::path floats = test::scratch_dir() / "ours_floats.npy";
  save_npy(floats.string(), from_vector<float>({1.5f, -2.0f, 0.25f, 3.0f, 4.0f, 5.0f}, {2, 3}));
  CHECK(read_bytes(floats) == kNumpyFloat32);
  const fs::path flags = test::scratch_dir() / "ours_flags.npy";
  save_npy(flags.string(), from_vector<float>({1, 0, 1}).to(DType::boolean));
  CHECK(read_bytes(flags) == kNumpyBool);
}

TEST_CASE("every dtype round-trips through save_npy and load_npy, strided views in C order") {
  const Tensor matrix = from_vector<double>({1.0, 2.0, 3.0, 4.0, 5.0, 6.0}, {2, 3});
  const std::vector<Tensor> tensors = {
      matrix.t(),  // (3, 2), not contiguous: written in C order of the view
      matrix.to(DType::float32),
      matrix.to(DType::int64).reshape({6}),
      scalar_tensor(-3, DType::int32),
      matrix.to(DType::uint8).unsqueeze(0),
      from_vector<float>({0, 1, 1}).to(DType::boolean),
      zeros({0, 4})};
  for (size_t i = 0; i < tensors.size(); ++i) {
    const fs::path path = test::scratch_dir() / ("round" + std::to_string(i) + ".npy");
    save_npy(path.string(), tensors[i]);
    const Tensor loaded = load_npy(path.string());
    CAPTURE(i);
    CHECK(loaded.dtype() == tensors[i].dtype());
    CHECK(loaded.shape() == tensors[i].shape());
    CHECK(loaded.to_vector<double>() == tensors[i].to_vector<double>());
    CHECK(read_bytes(path).size() % 64 == (loaded.numel() * element_size(loaded.dtype())) % 64);
  }
  CHECK(load_npy((test::scratch_dir() / "round0.npy").string()).to_vector<double>() ==
        std::vector<double>{1, 4, 2, 5, 3, 6});
}

TEST_CASE("bad .npy files give one-line errors naming the file and the problem") {
  const std::string path = (test::scratch_dir() / "bad.npy").string();
  const Bytes four_floats(16, 0);
  CHECK(load_error(npy_file(1, dict_of("<f8", "(2, 3)", true), Bytes(48, 0))) ==
        "[npy] " + path +
            ": fortran_order is True; only C-order arrays are read (save np.ascontiguousarray(a))");
  CHECK(load_error(npy_file(1, dict_of(">f4", "(4,)"), four_floats)) ==
        "[npy] " + path + ": dtype '>f4' is big-endian; expected little-endian ('<f4', ...)");
  CHECK(load_error(npy_file(1, dict_of("<f2", "(8,)"), four_floats)) ==
        "[npy] " + path + ": dtype '<f2'; expected '<f4', '<f8', '<i8', '<i4', '|u1' or '|b1'");
  CHECK(load_error(npy_file(1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (4,), }",
                            four_floats)) ==
        "[npy] " + path +
            ": header descr is a list (a structured dtype); expected a plain dtype like '<f4'");
  CHECK(load_error(npy_file(1, dict_of("<f4", "(3,)"), four_floats)) ==
        "[npy] " + path + ": data are 16 bytes; shape (3) <f4 needs 12 (extra bytes at the end)");
  CHECK(load_error(npy_file(1, dict_of("<f4", "(5,)"), four_floats)) ==
        "[npy] " + path + ": data are 16 bytes; shape (5) <f4 needs 20 (truncated file?)");
  CHECK(load_error(npy_file(1, "{'descr': '<f4', 'shape': (4,), }", four_floats)) ==
        "[npy] " + path + ": header lacks the key 'fortran_order'");
  CHECK(load_error(npy_file(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), 'x': 1}",
                            four_floats)) ==
        "[npy] " + path +
            ": header has the unknown key 'x'; expected descr, fortran_order and shape");
  CHECK(load_error(npy_file(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (-4,), }",
                            four_floats)) ==
        "[npy] " + path + ": header shape is not a tuple of non-negative integers (at byte 51)");
  CHECK(load_error(
            npy_file(1, "{'descr': '<f4', 'fortran_order': 0, 'shape': (4,), }", four_floats)) ==
        "[npy] " + path + ": header fortran_order is not True or False");
  CHECK(load_error(npy_file(1, dict_of("|b1", "(2,)"), {1, 2})) ==
        "[npy] " + path + ": bool array holds byte 2 at element 1");
  CHECK(load_error(npy_file(4, dict_of("<f4", "(4,)"), four_floats)) ==
        "[npy] " + path + ": format version 4.0; expected 1.0, 2.0 or 3.0");
  CHECK(load_error(text_bytes("PK\x03\x04 not numpy")) ==
        "[npy] " + path + ": does not start with \\x93NUMPY and a version (not an .npy file)");
  Bytes cut = npy_file(1, dict_of("<f4", "(4,)"), four_floats);
  cut.resize(40);  // inside the header
  CHECK(load_error(cut) ==
        "[npy] " + path + ": header length 118 runs past the end of the 40-byte file");
  CHECK_THROWS_WITH_AS(load_npy((test::scratch_dir() / "absent.npy").string()),
                       ("[npy] " + (test::scratch_dir() / "absent.npy").string() +
                        ": cannot open: No such file or directory")
                           .c_str(),
                       Error);
}
