// Byte images to normalised floats: one image into a tensor or a buffer, or a whole batch of
// in-memory images straight into its tensors.
#include "data/normalize.h"

#include <algorithm>

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

Batch normalized_batch(const ByteImages& images,
                       const PixelNormalizer& normalize,
                       const Shape& example,
                       std::vector<int64_t> indices,
                       int threads) {
  LATTICE_CHECK(!indices.empty(), "[loader] cannot stack an empty batch");
  for (const int64_t index : indices) check_index(images.reader, index, images.count);
  const auto n = int64_t(indices.size());
  const int64_t size = images.channels * images.height * images.width;
  Shape shape = example;
  shape.insert(0, n);
  Batch batch{empty(shape), empty({n}, DType::int64), std::move(indices)};
  float* inputs = batch.input.data<float>();
  int64_t* targets = batch.target.data<int64_t>();
#pragma omp parallel for num_threads(std::max(threads, 1)) if (threads > 1)
  for (int64_t i = 0; i < n; ++i) {
    const int64_t index = batch.indices[size_t(i)];
    normalize(images.pixels + index * size, images.height, images.width, false, inputs + i * size);
    targets[i] = images.labels[size_t(index)];
  }
  return batch;
}

}  // namespace lattice::data
