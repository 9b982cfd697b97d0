// Image decoding (data/file_io.h decode_image / load_image): PNG through libpng and JPEG through
// libjpeg-turbo, channel conversions, and one-line errors for corrupt, truncated, oversized and
// other-format files (stb_image 2.27, used before, overflowed its JPEG Huffman table on the
// 9-byte file below and decoded every format it knew, slowly).
#include <doctest/doctest.h>
#include <stb/stb_image_resize.h>
#include <zlib.h>

#include <cstring>

#include "data/file_io.h"
#include "data_test_files.h"

using namespace lattice;
using namespace lattice::data;
using lattice::test::contains;
using lattice::test::error_message;
using lattice::test::TempDir;

namespace {

void push_u32(std::vector<uint8_t>& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(uint8_t(v >> shift));
}

void push_chunk(std::vector<uint8_t>& out, const char* kind, const std::vector<uint8_t>& body) {
  push_u32(out, uint32_t(body.size()));
  const size_t start = out.size();
  out.insert(out.end(), kind, kind + 4);
  out.insert(out.end(), body.begin(), body.end());
  push_u32(out, uint32_t(crc32(0, out.data() + start, uInt(out.size() - start))));
}

// A PNG of 8-bit rows (filter byte 0 added), colour type 0 gray, 2 RGB, 4 gray+alpha, 6 RGBA.
std::vector<uint8_t> png_bytes(uint32_t width,
                               uint32_t height,
                               uint8_t color_type,
                               const std::vector<uint8_t>& pixels) {
  std::vector<uint8_t> out = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  std::vector<uint8_t> header;
  push_u32(header, width);
  push_u32(header, height);
  header.insert(header.end(), {8, color_type, 0, 0, 0});
  push_chunk(out, "IHDR", header);
  std::vector<uint8_t> raw;
  const size_t row = height ? pixels.size() / height : 0;
  for (uint32_t y = 0; y < height; ++y) {
    raw.push_back(0);
    raw.insert(raw.end(), pixels.begin() + y * row, pixels.begin() + (y + 1) * row);
  }
  std::vector<uint8_t> packed(compressBound(uLong(raw.size())));
  uLongf packed_size = uLongf(packed.size());
  REQUIRE(compress(packed.data(), &packed_size, raw.data(), uLong(raw.size())) == Z_OK);
  packed.resize(packed_size);
  push_chunk(out, "IDAT", packed);
  push_chunk(out, "IEND", {});
  return out;
}

std::string decode_error(const std::vector<uint8_t>& bytes, const std::string& name = "x.img") {
  return error_message([&] { decode_image(bytes, 3, name); });
}

}  // namespace

TEST_CASE("PNG: RGBA read as RGB drops alpha exactly; gray is replicated; RGB to gray is luma") {
  const Image rgb = decode_image(png_bytes(2, 1, 6, {10, 20, 30, 0, 40, 50, 60, 255}), 3, "a");
  CHECK(rgb.width == 2);
  CHECK(rgb.height == 1);
  CHECK(rgb.pixels == std::vector<uint8_t>{10, 20, 30, 40, 50, 60});
  const Image gray = decode_image(png_bytes(2, 1, 0, {7, 200}), 4, "g");
  CHECK(gray.pixels == std::vector<uint8_t>{7, 7, 7, 255, 200, 200, 200, 255});
  const Image luma = decode_image(png_bytes(1, 1, 2, {255, 0, 0}), 1, "l");
  CHECK(luma.pixels == std::vector<uint8_t>{(255 * 77) >> 8});
}

TEST_CASE("JPEG written by write_jpeg loads through load_image (gray and RGB requests)") {
  TempDir dir("image_decode_jpeg");
  Image flat{.width = 8, .height = 8, .channels = 3, .pixels = std::vector<uint8_t>(192, 90)};
  write_jpeg(dir.file("flat.jpg"), flat, 100);
  for (int channels : {1, 3, 4}) {
    const Image image = load_image(dir.file("flat.jpg"), channels);
    CHECK(image.width == 8);
    CHECK(image.channels == channels);
    REQUIRE(image.pixels.size() == size_t(64 * channels));
    CHECK(std::abs(int(image.pixels[0]) - 90) <= 2);
    if (channels == 4) CHECK(image.pixels[3] == 255);
  }
}

TEST_CASE("the 9-byte JPEG that overflowed stb_image's Huffman table is a one-line error") {
  TempDir dir("image_decode_dht");
  write_file_bytes(dir.file("dht.jpg"), {0xff, 0xd8, 0xff, 0xc4, 0xd9, 0xd9, 0x00, 0x0f, 0xff});
  const std::string message = error_message([&] { load_image(dir.file("dht.jpg"), 3, "images"); });
  CHECK(
      contains(message, concat("[images] ", dir.file("dht.jpg"), ": cannot decode image (JPEG: ")));
  CHECK(contains(message, "); expected a PNG or JPEG file"));
}

TEST_CASE("truncated and corrupted PNG and JPEG files are one-line errors naming the file") {
  const std::vector<uint8_t> png = png_bytes(3, 2, 2, std::vector<uint8_t>(18, 77));
  CHECK(decode_image(png, 3, "ok.png").pixels == std::vector<uint8_t>(18, 77));
  CHECK(contains(decode_error({png.begin(), png.end() - 20}, "cut.png"),
                 "[image] cut.png: cannot decode image (PNG: "));
  std::vector<uint8_t> bad_crc = png;
  bad_crc[30] ^= 0xff;  // inside IHDR's CRC-covered bytes
  CHECK(contains(decode_error(bad_crc), "cannot decode image (PNG: "));

  TempDir dir("image_decode_cut");
  Image noise{.width = 16, .height = 16, .channels = 3, .pixels = {}};
  for (int i = 0; i < 16 * 16 * 3; ++i) noise.pixels.push_back(uint8_t(i * 37));
  write_jpeg(dir.file("noise.jpg"), noise, 90);
  const std::vector<uint8_t> jpeg = read_file_bytes(dir.file("noise.jpg"), "test");
  CHECK(decode_image(jpeg, 3, "noise.jpg").width == 16);
  // libjpeg would pad a file cut short with gray; a truncated image is an error, as in PIL.
  CHECK(contains(decode_error({jpeg.begin(), jpeg.begin() + jpeg.size() * 3 / 4}, "cut.jpg"),
                 "[image] cut.jpg: cannot decode image (JPEG: Premature end of JPEG file)"));
}

TEST_CASE("formats other than PNG and JPEG are refused without being decoded") {
  // A valid 1x1 uncompressed 24-bit TGA, which stb_image decoded.
  const std::vector<uint8_t> tga = {0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 24, 0, 9, 9, 9};
  CHECK(decode_error(tga) ==
        "[image] x.img: cannot decode image (neither PNG nor JPEG signature; starts with 00 00 02 "
        "00); expected a PNG or JPEG file");
  CHECK(contains(decode_error({}), "(empty file)"));
}

TEST_CASE("an image whose header claims more than kMaxImagePixels is refused before decoding") {
  // 20000 x 20000 RGB would need 1.2 GB; the header alone is enough to refuse it.
  std::vector<uint8_t> png = png_bytes(20000, 20000, 2, {});
  CHECK(contains(decode_error(png), "(PNG: 20000x20000 pixels, more than 134217728)"));
  // The same for a JPEG: the frame header's height and width of a small valid file, patched.
  TempDir dir("image_decode_cap");
  write_jpeg(dir.file("small.jpg"),
             Image{.width = 8, .height = 8, .channels = 3, .pixels = std::vector<uint8_t>(192, 5)});
  std::vector<uint8_t> jpeg = read_file_bytes(dir.file("small.jpg"), "test");
  CHECK(contains(error_message([&] { decode_image(jpeg, 3, "j", "image", 63); }),
                 "(JPEG: 8x8 pixels, more than 63)"));
  CHECK(decode_image(jpeg, 3, "j", "image", 64).width == 8);
  size_t sof = 2;
  while (sof + 9 < jpeg.size() && !(jpeg[sof] == 0xff && jpeg[sof + 1] == 0xc0)) ++sof;
  REQUIRE(sof + 9 < jpeg.size());
  for (size_t at : {sof + 5, sof + 7}) {  // height, width: 60000 big-endian
    jpeg[at] = 60000 >> 8;
    jpeg[at + 1] = 60000 & 0xff;
  }
  CHECK(contains(decode_error(jpeg), "(JPEG: 60000x60000 pixels, more than 134217728)"));
}

TEST_CASE("resize_and_center_crop resamples only the crop, as resizing all and cropping would") {
  // It used to resize the whole image: stb's filter setup is O(resized width * input width),
  // 30 s for the 8 x 32776 JPEG in fuzz/corpus/image/regression-wide-strip-resize.jpg.
  Image noise{.width = 37, .height = 23, .channels = 3, .pixels = {}};
  for (int i = 0; i < 37 * 23 * 3; ++i) noise.pixels.push_back(uint8_t((i * 97) % 251));
  for (const std::pair<int, int>& sizes : {std::pair{16, 12}, std::pair{40, 40}, std::pair{9, 3}}) {
    const int shorter_side = sizes.first, crop = sizes.second;
    CAPTURE(shorter_side);
    const int width = int(std::lround(37.0 * shorter_side / 23)), height = shorter_side;
    std::vector<uint8_t> full(size_t(width) * height * 3);
    REQUIRE(stbir_resize_uint8(noise.pixels.data(), 37, 23, 0, full.data(), width, height, 0, 3));
    const Image cropped = resize_and_center_crop(noise, shorter_side, crop);
    const int left = (width - crop) / 2, top = (height - crop) / 2;
    int largest_difference = 0;
    for (int y = 0; y < crop; ++y) {
      for (int x = 0; x < crop * 3; ++x) {
        const int want = full[(size_t(top + y) * width + left) * 3 + size_t(x)];
        const int got = cropped.pixels[size_t(y) * crop * 3 + size_t(x)];
        largest_difference = std::max(largest_difference, std::abs(want - got));
      }
    }
    CHECK(largest_difference == 0);
  }
  CHECK(contains(error_message([] { resize_and_center_crop(Image{}, 4, 4); }),
                 "[image] 0x0x0 image with 0 bytes; expected width*height*channels > 0"));
}
