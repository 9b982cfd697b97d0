// Random crop with zero padding and horizontal flip.
#include "data/augment.h"

#include <algorithm>
#include <cstring>

namespace lattice::data {

namespace {
// image, out: (C, H, W) packed float32.
void crop_and_flip_into(const float* image,
                        float* out,
                        int64_t channels,
                        int64_t height,
                        int64_t width,
                        int padding,
                        int dy,
                        int dx,
                        bool flip) {
  for (int64_t c = 0; c < channels; ++c) {
    for (int64_t y = 0; y < height; ++y) {
      float* row = out + (c * height + y) * width;
      const int64_t source_y = y + dy - padding;
      if (source_y < 0 || source_y >= height) {
        std::fill(row, row + width, 0.f);
        continue;
      }
      const float* source = image + (c * height + source_y) * width;
      for (int64_t x = 0; x < width; ++x) {
        const int64_t source_x = (flip ? width - 1 - x : x) + dx - padding;
        row[x] = source_x >= 0 && source_x < width ? source[source_x] : 0.f;
      }
    }
  }
}
}  // namespace

Tensor crop_and_flip(const Tensor& image, int padding, int dy, int dx, bool flip) {
  LATTICE_CHECK(image.rank() == 3 && image.dtype() == DType::float32, "[augment] image ",
                image.shape(), " ", image.dtype(), ", expected (C, H, W) float32");
  LATTICE_CHECK(padding >= 0 && dy >= 0 && dx >= 0 && dy <= 2 * padding && dx <= 2 * padding,
                "[augment] crop offset (", dy, ", ", dx, ") with padding ", padding,
                ", expected offsets in [0, 2*padding]");
  const Tensor packed = image.contiguous();
  Tensor out = empty(image.shape());
  crop_and_flip_into(packed.data<float>(), out.data<float>(), image.shape(0), image.shape(1),
                     image.shape(2), padding, dy, dx, flip);
  return out;
}

RandomCropFlip::Draw RandomCropFlip::draw(int64_t index, int64_t epoch) const {
  const RandomStream stream{.seed = options_.seed, .subsequence = uint64_t(epoch)};
  const PhiloxBlock bits = stream.block(uint64_t(index));
  const uint32_t positions = uint32_t(2 * options_.padding + 1);
  // The modulo bias over 2^32 draws is below 1e-8 for any sane padding.
  return {.dy = int(bits.word[0] % positions),
          .dx = int(bits.word[1] % positions),
          .flip = options_.horizontal_flip && (bits.word[2] >> 31) != 0};
}

void RandomCropFlip::operator()(Batch& batch, int64_t epoch) const {
  const Tensor& input = batch.input;
  LATTICE_CHECK(input.rank() == 4 && input.dtype() == DType::float32 && input.is_contiguous(),
                "[augment] batch input ", input.shape(), " ", input.dtype(),
                ", expected contiguous (B, C, H, W) float32");
  const int64_t channels = input.shape(1), height = input.shape(2), width = input.shape(3);
  const int64_t image_size = channels * height * width;
  std::vector<float> scratch(static_cast<size_t>(image_size));
  float* values = input.data<float>();
  for (int64_t row = 0; row < batch.size(); ++row) {
    const Draw d = draw(batch.indices[size_t(row)], epoch);
    float* image = values + row * image_size;
    crop_and_flip_into(image, scratch.data(), channels, height, width, options_.padding, d.dy, d.dx,
                       d.flip);
    std::memcpy(image, scratch.data(), size_t(image_size) * sizeof(float));
  }
}

}  // namespace lattice::data
