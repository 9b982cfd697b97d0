// NPY reader and writer. The header is a Python dict literal ({'descr': '<f4', 'fortran_order':
// False, 'shape': (2, 3), }); the reader parses that literal subset itself rather than trusting
// it to be well formed, so that a bad file gets one line naming the problem.
#include "tensor/npy.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "tensor/safetensors.h"

namespace lattice {
namespace {

static_assert(std::endian::native == std::endian::little,
              "NPY data are read as little-endian; a big-endian host needs byte swaps here");

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicLength = 6;
constexpr size_t kAlignment = 64;  // numpy pads the header so the data start at a multiple
// numpy leaves room for the first axis to grow to 21 digits, so the header can be rewritten in
// place when an array is appended to; we write the same bytes numpy does.
constexpr size_t kGrowthAxisDigits = 21;

struct Descr {
  DType dtype;
  const char* text;
};
// The first entry of each dtype is what the writer uses; the others are accepted spellings.
constexpr Descr kDescrs[] = {{DType::float32, "<f4"}, {DType::float64, "<f8"},
                             {DType::int64, "<i8"},   {DType::int32, "<i4"},
                             {DType::uint8, "|u1"},   {DType::boolean, "|b1"},
                             {DType::uint8, "<u1"},   {DType::boolean, "<b1"}};

/// The header dictionary's three keys, as parsed.
struct Header {
  std::optional<std::string> descr;
  std::optional<bool> fortran_order;
  std::optional<Shape> shape;
};

/// Parses the Python literal subset numpy writes: a dict of quoted keys whose values are a
/// quoted string, True/False or a tuple of non-negative integers.
class HeaderParser {
 public:
  HeaderParser(std::string_view text, const FileProblem& fail) : text_(text), fail_(fail) {}

  Header parse() {
    Header header;
    expect('{');
    while (!accept('}')) {
      const std::string key = quoted_string();
      expect(':');
      if (key == "descr") {
        if (header.descr) fail_("header repeats the key 'descr'");
        skip_spaces();
        if (position_ < text_.size() && text_[position_] == '[')
          fail_("header descr is a list (a structured dtype); expected a plain dtype like '<f4'");
        header.descr = quoted_string();
      } else if (key == "fortran_order") {
        if (header.fortran_order) fail_("header repeats the key 'fortran_order'");
        header.fortran_order = boolean();
      } else if (key == "shape") {
        if (header.shape) fail_("header repeats the key 'shape'");
        header.shape = shape();
      } else {
        fail_("header has the unknown key '", key, "'; expected descr, fortran_order and shape");
      }
      if (!accept(',')) {
        expect('}');
        break;
      }
    }
    skip_spaces();
    if (position_ != text_.size())
      fail_("header has text after its dictionary at byte ", position_);
    if (!header.descr || !header.fortran_order || !header.shape)
      fail_("header lacks the key '",
            !header.descr           ? "descr"
            : !header.fortran_order ? "fortran_order"
                                    : "shape",
            "'");
    return header;
  }

 private:
  void skip_spaces() {
    while (position_ < text_.size() &&
           (text_[position_] == ' ' || text_[position_] == '\n' || text_[position_] == '\t'))
      ++position_;
  }
  bool accept(char c) {
    skip_spaces();
    if (position_ < text_.size() && text_[position_] == c) {
      ++position_;
      return true;
    }
    return false;
  }
  void expect(char c) {
    if (!accept(c))
      fail_("header is not a dictionary literal: expected '", c, "' at byte ", position_);
  }
  std::string quoted_string() {
    skip_spaces();
    const char quote = position_ < text_.size() ? text_[position_] : '\0';
    if (quote != '\'' && quote != '"')
      fail_("header is not a dictionary literal: expected a quoted string at byte ", position_);
    const size_t end = text_.find(quote, position_ + 1);
    if (end == std::string_view::npos) fail_("header has an unterminated string");
    std::string value(text_.substr(position_ + 1, end - position_ - 1));
    if (value.find('\\') != std::string::npos)
      fail_("header string \"", value, "\" has an escape sequence; expected a plain string");
    position_ = end + 1;
    return value;
  }
  bool boolean() {
    skip_spaces();
    for (const auto& [word, value] : {std::pair{"True", true}, std::pair{"False", false}})
      if (text_.substr(position_, std::strlen(word)) == word) {
        position_ += std::strlen(word);
        return value;
      }
    fail_("header fortran_order is not True or False");
  }
  Shape shape() {
    expect('(');
    Shape sizes;
    // Strides multiply sizes with zeros counted as ones, so bound that product (as the
    // safetensors reader does), not just the element count.
    uint64_t stride_span = 1;
    while (!accept(')')) {
      skip_spaces();
      uint64_t size = 0;
      const size_t first_digit = position_;
      while (position_ < text_.size() && text_[position_] >= '0' && text_[position_] <= '9') {
        size = size * 10 + uint64_t(text_[position_++] - '0');
        if (size > (uint64_t(1) << 40)) fail_("header shape has a size above 2^40");
      }
      if (position_ == first_digit)
        fail_("header shape is not a tuple of non-negative integers (at byte ", position_, ")");
      if (position_ < text_.size() && text_[position_] == 'L') ++position_;  // Python 2's long
      if (std::max<uint64_t>(size, 1) > kMaxFileElements / stride_span)
        fail_("header shape has too many elements (at most 2^56, zero sizes counted as one)");
      stride_span *= std::max<uint64_t>(size, 1);
      sizes.push_back(int64_t(size));
      if (!accept(',')) {
        expect(')');
        break;
      }
    }
    return sizes;
  }

  std::string_view text_;
  const FileProblem& fail_;
  size_t position_ = 0;
};

const Descr& descr_of(DType dtype) {
  for (const Descr& d : kDescrs)
    if (d.dtype == dtype) return d;
  throw Error(concat("[npy] dtype ", dtype_name(dtype), " has no NPY descr"));
}

/// The dict literal numpy writes for this dtype and shape (keys sorted, trailing ", }").
std::string header_dict(DType dtype, const Shape& shape) {
  std::string tuple = "(";
  for (size_t i = 0; i < shape.size(); ++i) tuple += concat(i ? ", " : "", shape[i]);
  tuple += shape.size() == 1 ? ",)" : ")";
  std::string dict = concat("{'descr': '", descr_of(dtype).text,
                            "', 'fortran_order': False, 'shape': ", tuple, ", }");
  if (!shape.empty()) {
    const size_t digits = std::to_string(shape[0]).size();
    dict.append(digits < kGrowthAxisDigits ? kGrowthAxisDigits - digits : 0, ' ');
  }
  return dict;
}

}  // namespace

void save_npy(const std::string& path, const Tensor& tensor) {
  LATTICE_CHECK(tensor.defined(), "[npy] ", path, ": the tensor is undefined");
  const Tensor packed = tensor.contiguous().to(Device::cpu);
  const std::string dict = header_dict(packed.dtype(), packed.shape());
  // The header ends in '\n' after 1 to 64 padding spaces. Version 1.0 stores its length in 2
  // bytes; 2.0, used only when that does not fit (as numpy does), in 4.
  const auto header_length_with = [&](size_t prefix) {
    return dict.size() + 1 + (kAlignment - (prefix + dict.size() + 1) % kAlignment);
  };
  const bool version2 = header_length_with(kMagicLength + 4) > 65535;
  const size_t prefix = kMagicLength + 2 + (version2 ? 4 : 2);
  const uint64_t header_length = header_length_with(prefix);
  const size_t padding = header_length - dict.size() - 1;
  const size_t data_bytes = size_t(packed.numel() * element_size(packed.dtype()));

  std::vector<uint8_t> file(prefix + header_length + data_bytes);
  std::memcpy(file.data(), kMagic, kMagicLength);
  file[6] = version2 ? 2 : 1;
  file[7] = 0;
  for (size_t i = 0; i < (version2 ? 4u : 2u); ++i) file[8 + i] = uint8_t(header_length >> (8 * i));
  std::memcpy(file.data() + prefix, dict.data(), dict.size());
  std::memset(file.data() + prefix + dict.size(), ' ', padding);
  file[prefix + header_length - 1] = '\n';
  if (data_bytes) std::memcpy(file.data() + prefix + header_length, packed.data_ptr(), data_bytes);
  write_file_atomically(path, file, "npy", "npy");
}

Tensor load_npy(const std::string& path) {
  const FileProblem fail{"npy", path};
  const std::vector<uint8_t> file = read_regular_file(path, "npy");
  if (file.size() < kMagicLength + 4 || std::memcmp(file.data(), kMagic, kMagicLength) != 0)
    fail("does not start with \\x93NUMPY and a version (not an .npy file)");
  const int major = file[6], minor = file[7];
  if (minor != 0 || major < 1 || major > 3)
    fail("format version ", major, ".", minor, "; expected 1.0, 2.0 or 3.0");
  const size_t length_bytes = major == 1 ? 2 : 4;
  const size_t prefix = kMagicLength + 2 + length_bytes;
  if (file.size() < prefix) fail("file is ", file.size(), " bytes, too short for its header");
  uint64_t header_length = 0;
  for (size_t i = 0; i < length_bytes; ++i) header_length |= uint64_t(file[8 + i]) << (8 * i);
  if (header_length > file.size() - prefix)
    fail("header length ", header_length, " runs past the end of the ", file.size(), "-byte file");
  const std::string_view header_text(reinterpret_cast<const char*>(file.data() + prefix),
                                     header_length);
  const Header header = HeaderParser(header_text, fail).parse();

  const Descr* descr = nullptr;
  for (const Descr& d : kDescrs)
    if (*header.descr == d.text) descr = &d;
  if (!descr) {
    if (header.descr->starts_with(">"))
      fail("dtype '", *header.descr, "' is big-endian; expected little-endian ('<f4', ...)");
    fail("dtype '", *header.descr, "'; expected '<f4', '<f8', '<i8', '<i4', '|u1' or '|b1'");
  }
  if (*header.fortran_order)
    fail("fortran_order is True; only C-order arrays are read (save np.ascontiguousarray(a))");

  const Shape& shape = *header.shape;
  uint64_t numel = 1;
  for (const int64_t size : shape) numel *= uint64_t(size);
  const uint64_t expected = numel * uint64_t(element_size(descr->dtype));
  const uint64_t data_size = file.size() - prefix - header_length;
  if (data_size != expected)
    fail("data are ", data_size, " bytes; shape ", shape, " ", descr->text, " needs ", expected,
         data_size < expected ? " (truncated file?)" : " (extra bytes at the end)");
  const uint8_t* data = file.data() + prefix + header_length;
  if (descr->dtype == DType::boolean)
    for (uint64_t i = 0; i < data_size; ++i)
      if (data[i] > 1) fail("bool array holds byte ", int(data[i]), " at element ", i);
  Tensor tensor = empty(shape, descr->dtype);
  if (data_size) std::memcpy(tensor.data_ptr(), data, data_size);
  return tensor;
}

}  // namespace lattice
