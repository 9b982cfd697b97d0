// Byte images to normalised float (C, H, W) tensors.
#include "data/normalize.h"

namespace lattice::data {

void check_normalization(const Normalization& normalization, int64_t channels, const char* reader) {
  for (const auto* values : {&normalization.mean, &normalization.std}) {
    LATTICE_CHECK(values->empty() || values->size() == 1 || int64_t(values->size()) == channels,
                  "[", reader, "] normalisation has ", values->size(), " ",
                  values == &normalization.mean ? "means" : "stds", ", expected 0, 1 or ",
                  channels);
  }
  for (float s : normalization.std) {
    LATTICE_CHECK(s > 0.f, "[", reader, "] normalisation std ", s, ", expected > 0");
  }
}

Tensor normalize_pixels(const uint8_t* pixels,
                        int64_t channels,
                        int64_t height,
                        int64_t width,
                        bool interleaved,
                        const Normalization& normalization) {
  Tensor out = empty({channels, height, width});
  float* values = out.data<float>();
  const int64_t plane = height * width;
  const auto pick = [](const std::vector<float>& list, int64_t c, float fallback) {
    return list.empty() ? fallback : list[list.size() == 1 ? 0 : size_t(c)];
  };
  for (int64_t c = 0; c < channels; ++c) {
    // A 256-entry table per channel: exact (b/255 - mean)/std at the cost of a lookup.
    const float mean = pick(normalization.mean, c, 0.f), std = pick(normalization.std, c, 1.f);
    float table[256];
    for (int b = 0; b < 256; ++b) table[b] = (float(b) / 255.f - mean) / std;
    float* channel = values + c * plane;
    if (interleaved) {
      for (int64_t p = 0; p < plane; ++p) channel[p] = table[pixels[p * channels + c]];
    } else {
      const uint8_t* source = pixels + c * plane;
      for (int64_t p = 0; p < plane; ++p) channel[p] = table[source[p]];
    }
  }
  return out;
}

}  // namespace lattice::data
