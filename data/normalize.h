// Per-channel normalisation of 8-bit images to float: x = (byte / 255 - mean[c]) / std[c], for
// single images and for whole batches of in-memory images.
// Shared by the IDX, CIFAR-10 and image-folder readers.
#pragma once

#include <cstdint>
#include <vector>

#include "data/dataset.h"
#include "tensor/tensor.h"

namespace lattice::data {

/// Empty mean and std mean "scale to [0, 1] only"; otherwise one value per channel, or one
/// value for all channels.
struct Normalization {
  std::vector<float> mean = {};
  std::vector<float> std = {};
};

/// Byte images of `channels` channels to normalised floats, (b / 255 - mean) / std per channel
/// in float: a loop the compiler vectorises (a 256-entry lookup table gives the same bits but
/// gathers one value at a time, the larger part of building an MNIST batch).
class PixelNormalizer {
 public:
  /// Throws lattice::Error naming `reader` when the sizes fit neither 0, 1 nor `channels`
  /// values, or a std is not positive.
  PixelNormalizer(int64_t channels, const Normalization& normalization, const char* reader);

  /// pixels: (C, H*W) planar bytes, or (H*W, C) interleaved when `interleaved`; out: (C, H*W)
  /// floats.
  void operator()(
      const uint8_t* pixels, int64_t height, int64_t width, bool interleaved, float* out) const;
  /// The same into a new float32 (C, H, W) tensor (the caller reshapes).
  Tensor operator()(const uint8_t* pixels, int64_t height, int64_t width, bool interleaved) const;

 private:
  int64_t channels_;
  std::vector<float> mean_, std_;  // one per channel
};

/// Planar byte images held in memory with one byte label each, as the IDX and CIFAR-10 files
/// hold them: image i at pixels + i * channels * height * width.
struct ByteImages {
  const uint8_t* pixels;
  const uint8_t* labels;
  int64_t count, channels, height, width;
  const char* reader;  // for errors
};

/// Images `indices` normalised straight into one batch: input (B, ...example) float32 (example:
/// the shape each image takes, channels * height * width values), target (B) int64 labels, on
/// `threads` OpenMP threads. The same tensors as stacking the readers' examples. Throws
/// "[reader] index ..." for an index outside [0, count).
Batch normalized_batch(const ByteImages& images,
                       const PixelNormalizer& normalize,
                       const Shape& example,
                       std::vector<int64_t> indices,
                       int threads);

}  // namespace lattice::data
