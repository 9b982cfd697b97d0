// zlib and stb behind data/file_io.h; the stb implementations are compiled here, once.
#include "data/file_io.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_RESIZE_IMPLEMENTATION
#define STB_IMAGE_WRITE_IMPLEMENTATION
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#include <stb/stb_image.h>
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

Image load_image(const std::string& path, int channels, const char* reader) {
  LATTICE_CHECK(channels >= 1 && channels <= 4, "[", reader, "] ", path, ": ", channels,
                " channels requested, expected 1 to 4");
  int width = 0, height = 0, file_channels = 0;
  const std::unique_ptr<stbi_uc, void (*)(void*)> pixels(
      stbi_load(path.c_str(), &width, &height, &file_channels, channels), stbi_image_free);
  LATTICE_CHECK(pixels != nullptr, "[", reader, "] ", path, ": cannot decode image (",
                stbi_failure_reason(), "); expected a PNG or JPEG file");
  Image image{.width = width, .height = height, .channels = channels, .pixels = {}};
  image.pixels.assign(pixels.get(), pixels.get() + size_t(width) * size_t(height) * channels);
  return image;
}

Image resize_and_center_crop(const Image& image, int shorter_side, int crop) {
  LATTICE_CHECK(crop > 0 && crop <= shorter_side, "[image] crop ", crop,
                " must lie in [1, shorter side ", shorter_side, "]");
  const int shorter = std::min(image.width, image.height);
  // Round the longer side, but never below the crop.
  const auto scaled = [&](int side) {
    return std::max(crop, int(std::lround(double(side) * shorter_side / shorter)));
  };
  const int width = image.width == shorter ? shorter_side : scaled(image.width);
  const int height = image.width == shorter ? scaled(image.height) : shorter_side;
  Image resized{.width = width, .height = height, .channels = image.channels, .pixels = {}};
  if (width == image.width && height == image.height) {
    resized.pixels = image.pixels;
  } else {
    resized.pixels.resize(size_t(width) * size_t(height) * image.channels);
    LATTICE_CHECK(stbir_resize_uint8(image.pixels.data(), image.width, image.height, 0,
                                     resized.pixels.data(), width, height, 0, image.channels),
                  "[image] resize from ", image.width, "x", image.height, " to ", width, "x",
                  height, " failed");
  }
  Image cropped{.width = crop, .height = crop, .channels = image.channels, .pixels = {}};
  cropped.pixels.resize(size_t(crop) * crop * image.channels);
  const int left = (width - crop) / 2, top = (height - crop) / 2;
  const size_t row_bytes = size_t(crop) * image.channels;
  for (int y = 0; y < crop; ++y) {
    std::memcpy(cropped.pixels.data() + size_t(y) * row_bytes,
                resized.pixels.data() + (size_t(top + y) * width + left) * image.channels,
                row_bytes);
  }
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
