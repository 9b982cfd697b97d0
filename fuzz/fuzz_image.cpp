// Image decoding (PNG through libpng, JPEG through libjpeg-turbo) and the image folder's
// resize-and-crop. The input is the file; its size picks the channel count asked for. The pixel
// cap is lowered from kMaxImagePixels to keep each input fast; the cap check itself is the same.
#include "data/file_io.h"
#include "fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lattice;
  const int channels = int(size % 4) + 1;
  fuzz::expect_error_or_success([&] {
    const data::Image image =
        data::decode_image({data, size}, channels, "input", "image", int64_t(1) << 18);
    FUZZ_CHECK(image.width > 0 && image.height > 0 && image.channels == channels &&
                   image.pixels.size() == size_t(image.width) * image.height * channels,
               image.width, "x", image.height, "x", image.channels);
    const data::Image crop = data::resize_and_center_crop(image, 6, 4);
    FUZZ_CHECK(crop.pixels.size() == size_t(4 * 4 * channels), crop.pixels.size());
  });
  return 0;
}
