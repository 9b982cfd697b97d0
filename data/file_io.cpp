// zlib, libjpeg-turbo, libpng and stb behind data/file_io.h. Images are decoded by libjpeg-turbo
// and libpng (fuzzed upstream; stb_image 2.27's JPEG decoder writes out of bounds on corrupt
// files); stb only resizes and writes, and its implementations are compiled here, once.
#include "data/file_io.h"

// jpeglib.h needs size_t and FILE declared first.
#include <cstddef>
#include <cstdio>
// clang-format off
#include <jpeglib.h>
#include <jerror.h>
// clang-format on
#include <png.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <csetjmp>
#include <cstring>
#include <filesystem>
#include <memory>

#define STB_IMAGE_RESIZE_IMPLEMENTATION
#define STB_IMAGE_WRITE_IMPLEMENTATION
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#include <stb/stb_image_resize.h>
#include <stb/stb_image_write.h>
#pragma GCC diagnostic pop

namespace lattice::data {

std::vector<uint8_t> read_file_bytes(const std::string& path, const char* reader) {
  LATTICE_CHECK(!std::filesystem::is_directory(path), "[", reader, "] ", path,
                ": is a directory, expected a file");
  errno = 0;
  const std::unique_ptr<gzFile_s, int (*)(gzFile)> file(gzopen(path.c_str(), "rb"), gzclose);
  LATTICE_CHECK(file != nullptr, "[", reader, "] ", path, ": cannot open (",
                errno ? std::strerror(errno) : "out of memory", ")");
  std::vector<uint8_t> bytes;
  std::vector<uint8_t> chunk(size_t(1) << 20);
  while (true) {
    const int got = gzread(file.get(), chunk.data(), unsigned(chunk.size()));
    if (got < 0) {
      int code = 0;
      const char* message = gzerror(file.get(), &code);
      throw Error(concat("[", reader, "] ", path, ": corrupt gzip stream (", message,
                         "); expected a complete gzip or raw file"));
    }
    if (got == 0) break;
    bytes.insert(bytes.end(), chunk.begin(), chunk.begin() + got);
  }
  // A gzip stream cut short reads as a clean end of file; zlib reports it only here.
  int code = Z_OK;
  const char* message = gzerror(file.get(), &code);
  LATTICE_CHECK(code == Z_OK || code == Z_STREAM_END, "[", reader, "] ", path,
                ": corrupt gzip stream (", message, "); expected a complete gzip or raw file");
  return bytes;
}

void write_gzip_file(const std::string& path, const std::vector<uint8_t>& bytes) {
  const std::unique_ptr<gzFile_s, int (*)(gzFile)> file(gzopen(path.c_str(), "wb6"), gzclose);
  LATTICE_CHECK(file != nullptr, "[gzip] ", path, ": cannot open for writing");
  if (!bytes.empty()) {
    LATTICE_CHECK(gzwrite(file.get(), bytes.data(), unsigned(bytes.size())) == int(bytes.size()),
                  "[gzip] ", path, ": write failed");
  }
}

void write_file_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  const std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(path.c_str(), "wb"), std::fclose);
  LATTICE_CHECK(file != nullptr, "[file] ", path, ": cannot open for writing (",
                std::strerror(errno), ")");
  LATTICE_CHECK(std::fwrite(bytes.data(), 1, bytes.size(), file.get()) == bytes.size(), "[file] ",
                path, ": write failed");
}

namespace {

// libjpeg reports a fatal error by calling error_exit, which must not return: it longjmps back
// to decode_jpeg's setjmp. base comes first so that libjpeg's err pointer is also ours.
struct JpegErrorManager {
  jpeg_error_mgr base;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

[[noreturn]] void jpeg_fail(j_common_ptr info) {
  auto* manager = reinterpret_cast<JpegErrorManager*>(info->err);
  (*info->err->format_message)(info, manager->message);
  std::longjmp(manager->jump, 1);
}

// Warnings (level -1) are about corrupt data libjpeg decodes around. A file cut short is an
// error, as in PIL (libjpeg would pad it with gray); the others are quiet, never printed.
void jpeg_warn(j_common_ptr info, int level) {
  if (level == -1 && info->err->msg_code == JWRN_JPEG_EOF) jpeg_fail(info);
}

// Everything decode_jpeg changes after its setjmp lives here, outside its frame: longjmp
// leaves a changed local of that frame indeterminate, and the frame declares none after it.
struct JpegDecode {
  jpeg_decompress_struct info;
  JpegErrorManager error;
  int width = 0, height = 0, channels = 0;  // channels: 1 (gray) or 3 (RGB)
  std::vector<uint8_t> pixels;
};

// Decodes to gray (gray_output) or RGB; false with d.error.message set on a corrupt file.
bool decode_jpeg(
    JpegDecode& d, const uint8_t* data, size_t size, bool gray_output, int64_t max_pixels) {
  d.info.err = jpeg_std_error(&d.error.base);
  d.error.base.error_exit = jpeg_fail;
  d.error.base.emit_message = jpeg_warn;
  if (setjmp(d.error.jump)) {
    jpeg_destroy_decompress(&d.info);
    return false;
  }
  jpeg_create_decompress(&d.info);
  jpeg_mem_src(&d.info, data, static_cast<unsigned long>(size));
  jpeg_read_header(&d.info, TRUE);
  if (int64_t(d.info.image_width) * d.info.image_height > max_pixels) {
    std::snprintf(d.error.message, sizeof d.error.message, "%ux%u pixels, more than %lld",
                  d.info.image_width, d.info.image_height, static_cast<long long>(max_pixels));
    jpeg_destroy_decompress(&d.info);
    return false;
  }
  // CMYK (Adobe, stored inverted) has no libjpeg conversion to RGB; it is converted below.
  const bool cmyk = d.info.jpeg_color_space == JCS_CMYK || d.info.jpeg_color_space == JCS_YCCK;
  d.info.out_color_space = cmyk ? JCS_CMYK : gray_output ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_start_decompress(&d.info);
  d.width = int(d.info.output_width);
  d.height = int(d.info.output_height);
  const int components = d.info.output_components;
  d.pixels.resize(size_t(d.width) * size_t(d.height) * size_t(components));
  while (d.info.output_scanline < d.info.output_height) {
    JSAMPROW row = d.pixels.data() + size_t(d.info.output_scanline) * d.width * components;
    jpeg_read_scanlines(&d.info, &row, 1);
  }
  jpeg_finish_decompress(&d.info);
  jpeg_destroy_decompress(&d.info);
  d.channels = components;
  if (cmyk) {
    // Inverted CMYK: each colour is its ink value times the black value, as stb_image did.
    const size_t count = size_t(d.width) * size_t(d.height);
    for (size_t p = 0; p < count; ++p) {
      const uint8_t* in = d.pixels.data() + 4 * p;
      uint8_t* out = d.pixels.data() + 3 * p;
      const unsigned k = in[3];
      const uint8_t rgb[3] = {uint8_t((in[0] * k + 127) / 255), uint8_t((in[1] * k + 127) / 255),
                              uint8_t((in[2] * k + 127) / 255)};
      std::memcpy(out, rgb, 3);
    }
    d.pixels.resize(count * 3);
    d.channels = 3;
  }
  return true;
}

// The integer luma stb_image used (ITU-R BT.601 weights in 8 bits).
uint8_t luma(const uint8_t* rgb) {
  return uint8_t((rgb[0] * 77 + rgb[1] * 150 + rgb[2] * 29) >> 8);
}

// Gray or RGB (no alpha), or RGBA, to `channels`: alpha 255 when added, dropped when not asked.
std::vector<uint8_t> convert_channels(const std::vector<uint8_t>& in,
                                      int in_channels,
                                      size_t count,
                                      int channels) {
  if (in_channels == channels) return in;
  std::vector<uint8_t> out(count * size_t(channels));
  for (size_t p = 0; p < count; ++p) {
    const uint8_t* source = in.data() + p * size_t(in_channels);
    uint8_t* target = out.data() + p * size_t(channels);
    const bool color = in_channels >= 3;
    const uint8_t alpha = in_channels == 4 ? source[3] : 255;
    if (channels <= 2) {
      target[0] = color ? luma(source) : source[0];
    } else {
      for (int c = 0; c < 3; ++c) target[c] = color ? source[c] : source[0];
    }
    if (channels == 2 || channels == 4) target[channels - 1] = alpha;
  }
  return out;
}

constexpr uint8_t kPngSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

}  // namespace

Image decode_image(std::span<const uint8_t> bytes,
                   int channels,
                   const std::string& name,
                   const char* reader,
                   int64_t max_pixels) {
  LATTICE_CHECK(channels >= 1 && channels <= 4, "[", reader, "] ", name, ": ", channels,
                " channels requested, expected 1 to 4");
  const auto fail = [&](const std::string& reason) {
    throw Error(concat("[", reader, "] ", name, ": cannot decode image (", reason,
                       "); expected a PNG or JPEG file"));
  };
  Image image{.width = 0, .height = 0, .channels = channels, .pixels = {}};
  if (bytes.size() >= 3 && bytes[0] == 0xff && bytes[1] == 0xd8 && bytes[2] == 0xff) {
    auto decode = std::make_unique<JpegDecode>();
    if (!decode_jpeg(*decode, bytes.data(), bytes.size(), channels <= 2, max_pixels)) {
      fail(concat("JPEG: ", decode->error.message));
    }
    image.width = decode->width;
    image.height = decode->height;
    image.pixels = convert_channels(decode->pixels, decode->channels,
                                    size_t(image.width) * size_t(image.height), channels);
    return image;
  }
  if (bytes.size() >= 8 && std::memcmp(bytes.data(), kPngSignature, 8) == 0) {
    // libpng's simplified API catches its own errors (setjmp inside) and reports them in
    // png.message. Decoded as 8-bit RGBA, then converted like the JPEG path.
    png_image png{};
    png.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&png, bytes.data(), bytes.size())) {
      fail(concat("PNG: ", png.message));
    }
    if (int64_t(png.width) * png.height > max_pixels) {
      png_image_free(&png);
      fail(concat("PNG: ", png.width, "x", png.height, " pixels, more than ", max_pixels));
    }
    png.format = PNG_FORMAT_RGBA;
    std::vector<uint8_t> rgba(PNG_IMAGE_SIZE(png));
    if (!png_image_finish_read(&png, nullptr, rgba.data(), 0, nullptr)) {
      const std::string reason = png.message;
      png_image_free(&png);
      fail(concat("PNG: ", reason));
    }
    image.width = int(png.width);
    image.height = int(png.height);
    image.pixels = convert_channels(rgba, 4, size_t(image.width) * size_t(image.height), channels);
    return image;
  }
  std::string start;
  for (size_t i = 0; i < std::min<size_t>(bytes.size(), 4); ++i) {
    char hex[4];
    std::snprintf(hex, sizeof hex, "%s%02x", i ? " " : "", bytes[i]);
    start += hex;
  }
  fail(bytes.empty() ? std::string("empty file")
                     : concat("neither PNG nor JPEG signature; starts with ", start));
  return image;  // not reached: fail throws
}

Image load_image(const std::string& path, int channels, const char* reader) {
  const std::vector<uint8_t> bytes = read_file_bytes(path, reader);
  return decode_image(bytes, channels, path, reader);
}

Image resize_and_center_crop(const Image& image, int shorter_side, int crop) {
  LATTICE_CHECK(crop > 0 && crop <= shorter_side, "[image] crop ", crop,
                " must lie in [1, shorter side ", shorter_side, "]");
  LATTICE_CHECK(image.width > 0 && image.height > 0 && image.channels >= 1 &&
                    image.pixels.size() == size_t(image.width) * image.height * image.channels,
                "[image] ", image.width, "x", image.height, "x", image.channels, " image with ",
                image.pixels.size(), " bytes; expected width*height*channels > 0");
  const int shorter = std::min(image.width, image.height);
  // Round the longer side, but never below the crop. 64-bit: only the crop is ever allocated,
  // and a 1 x 10^8 strip resized to 256 rows is 2.6e10 columns wide.
  const auto scaled = [&](int side) {
    return std::max<int64_t>(crop, std::llround(double(side) * shorter_side / shorter));
  };
  const int64_t width = image.width == shorter ? shorter_side : scaled(image.width);
  const int64_t height = image.width == shorter ? scaled(image.height) : shorter_side;
  const int64_t left = (width - crop) / 2, top = (height - crop) / 2;
  Image cropped{.width = crop, .height = crop, .channels = image.channels, .pixels = {}};
  cropped.pixels.resize(size_t(crop) * crop * image.channels);
  if (width == image.width && height == image.height) {
    const size_t row_bytes = size_t(crop) * image.channels;
    for (int y = 0; y < crop; ++y) {
      std::memcpy(cropped.pixels.data() + size_t(y) * row_bytes,
                  image.pixels.data() + (size_t(top + y) * width + left) * image.channels,
                  row_bytes);
    }
    return cropped;
  }
  // Only the crop is resampled: the scale of the whole resize, shifted by the crop's offset (in
  // resized pixels), the filters stbir_resize_uint8 uses. Resizing the whole image first costs
  // stb O(resized width * input width) in its filter setup: 30 s for an 8 x 32776 strip.
  LATTICE_CHECK(stbir_resize_subpixel(
                    image.pixels.data(), image.width, image.height, 0, cropped.pixels.data(), crop,
                    crop, 0, STBIR_TYPE_UINT8, image.channels, STBIR_ALPHA_CHANNEL_NONE, 0,
                    STBIR_EDGE_CLAMP, STBIR_EDGE_CLAMP, STBIR_FILTER_DEFAULT, STBIR_FILTER_DEFAULT,
                    STBIR_COLORSPACE_LINEAR, nullptr, float(width) / float(image.width),
                    float(height) / float(image.height), float(left), float(top)),
                "[image] resize from ", image.width, "x", image.height, " to ", width, "x", height,
                " failed");
  return cropped;
}

namespace {
void check_image(const std::string& path, const Image& image) {
  LATTICE_CHECK(image.width > 0 && image.height > 0 && image.channels >= 1 && image.channels <= 4 &&
                    image.pixels.size() == size_t(image.width) * image.height * image.channels,
                "[image] ", path, ": ", image.width, "x", image.height, "x", image.channels,
                " image with ", image.pixels.size(), " bytes; expected width*height*channels");
}
}  // namespace

void write_png(const std::string& path, const Image& image) {
  check_image(path, image);
  LATTICE_CHECK(stbi_write_png(path.c_str(), image.width, image.height, image.channels,
                               image.pixels.data(), image.width * image.channels) != 0,
                "[image] ", path, ": cannot write PNG");
}

void write_jpeg(const std::string& path, const Image& image, int quality) {
  check_image(path, image);
  LATTICE_CHECK(stbi_write_jpg(path.c_str(), image.width, image.height, image.channels,
                               image.pixels.data(), quality) != 0,
                "[image] ", path, ": cannot write JPEG");
}

void write_png(const std::string& path, const Tensor& chw) {
  LATTICE_CHECK(chw.rank() == 3 && (chw.shape(0) == 1 || chw.shape(0) == 3 || chw.shape(0) == 4),
                "[image] ", path, ": tensor of shape ", chw.shape(),
                ", expected (C, H, W) with C in {1, 3, 4}");
  const Tensor values = chw.to(DType::float32).contiguous();
  const auto channels = int(chw.shape(0)), height = int(chw.shape(1)), width = int(chw.shape(2));
  Image image{.width = width, .height = height, .channels = channels, .pixels = {}};
  image.pixels.resize(size_t(width) * height * channels);
  const float* source = values.data<float>();
  for (int c = 0; c < channels; ++c) {
    for (int64_t p = 0; p < int64_t(width) * height; ++p) {
      const float v = std::clamp(source[c * int64_t(width) * height + p], 0.f, 1.f);
      image.pixels[size_t(p) * channels + c] = uint8_t(std::lround(v * 255.f));
    }
  }
  write_png(path, image);
}

}  // namespace lattice::data
