// Whole-file reads and writes shared by the readers: bytes (gzip or raw, through zlib), images
// (PNG through libpng, JPEG through libjpeg-turbo, decoded to 8-bit) and image writes (stb).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace lattice::data {

/// The file's bytes, gunzipped when it is gzip (zlib reads raw files unchanged). `reader` tags
/// errors: "[reader] path: cannot open (...)", "[reader] path: corrupt gzip stream (...)".
std::vector<uint8_t> read_file_bytes(const std::string& path, const char* reader);
/// Writes `bytes` gzip-compressed (level 6). Throws lattice::Error on failure.
void write_gzip_file(const std::string& path, const std::vector<uint8_t>& bytes);
/// Writes `bytes` as they are. Throws lattice::Error on failure.
void write_file_bytes(const std::string& path, const std::vector<uint8_t>& bytes);

/// An 8-bit image, rows of width*channels bytes (HWC).
struct Image {
  int width = 0;
  int height = 0;
  int channels = 0;
  std::vector<uint8_t> pixels;
};

/// The most pixels (width*height) an image may have: a header claiming more is refused before
/// anything is allocated (a 100-byte file can claim 65500x65500).
inline constexpr int64_t kMaxImagePixels = int64_t(1) << 27;

/// Decodes PNG or JPEG `bytes` (told apart by their signature) to `channels` channels (1-4):
/// gray is replicated, colour reduced to luma, alpha dropped or added as 255. `name` (the file)
/// tags errors: "[reader] name: cannot decode image (JPEG: Premature end of JPEG file);
/// expected a PNG or JPEG file", also for images of more than max_pixels pixels.
Image decode_image(std::span<const uint8_t> bytes,
                   int channels,
                   const std::string& name,
                   const char* reader = "image",
                   int64_t max_pixels = kMaxImagePixels);
/// decode_image of the file's bytes (gunzipped if gzip); also throws when it cannot be read.
Image load_image(const std::string& path, int channels, const char* reader = "image");
/// Resizes so that the shorter side is `shorter_side` (aspect kept), then crops the centre
/// `crop` x `crop` square. Throws when crop > shorter_side.
Image resize_and_center_crop(const Image& image, int shorter_side, int crop);

/// Writes an 8-bit image as PNG or JPEG (quality 1-100). Throws lattice::Error on failure.
void write_png(const std::string& path, const Image& image);
void write_jpeg(const std::string& path, const Image& image, int quality = 95);
/// A float (C, H, W) tensor with values in [0, 1] (clamped) as an 8-bit PNG, C in {1, 3, 4}.
void write_png(const std::string& path, const Tensor& chw);

}  // namespace lattice::data
