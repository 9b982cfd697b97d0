// Byte images to normalised float (C, H, W) tensors.
#include "data/normalize.h"

namespace lattice::data {

PixelNormalizer::PixelNormalizer(int64_t channels,
                                 const Normalization& normalization,
                                 const char* reader)
    : channels_(channels) {
  for (const auto* values : {&normalization.mean, &normalization.std}) {
    LATTICE_CHECK(values->empty() || values->size() == 1 || int64_t(values->size()) == channels,
                  "[", reader, "] normalisation has ", values->size(), " ",
                  values == &normalization.mean ? "means" : "stds", ", expected 0, 1 or ",
                  channels);
  }
  for (float s : normalization.std) {
    LATTICE_CHECK(s > 0.f, "[", reader, "] normalisation std ", s, ", expected > 0");
  }
  const auto pick = [](const std::vector<float>& list, int64_t c, float fallback) {
    return list.empty() ? fallback : list[list.size() == 1 ? 0 : size_t(c)];
  };
  for (int64_t c = 0; c < channels; ++c) {
    mean_.push_back(pick(normalization.mean, c, 0.f));
    std_.push_back(pick(normalization.std, c, 1.f));
  }
}

void PixelNormalizer::operator()(
    const uint8_t* pixels, int64_t height, int64_t width, bool interleaved, float* out) const {
  const int64_t plane = height * width;
  for (int64_t c = 0; c < channels_; ++c) {
    const float mean = mean_[size_t(c)], std = std_[size_t(c)];
    float* channel = out + c * plane;
    const uint8_t* source = interleaved ? pixels + c : pixels + c * plane;
    const int64_t step = interleaved ? channels_ : 1;
    if (step == 1) {
#pragma omp simd
      for (int64_t p = 0; p < plane; ++p) channel[p] = (float(source[p]) / 255.f - mean) / std;
    } else {
      for (int64_t p = 0; p < plane; ++p)
        channel[p] = (float(source[p * step]) / 255.f - mean) / std;
    }
  }
}

Tensor PixelNormalizer::operator()(const uint8_t* pixels,
                                   int64_t height,
                                   int64_t width,
                                   bool interleaved) const {
  Tensor out = empty({channels_, height, width});
  (*this)(pixels, height, width, interleaved, out.data<float>());
  return out;
}

}  // namespace lattice::data
