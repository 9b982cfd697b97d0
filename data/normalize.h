// Per-channel normalisation of 8-bit images to float: x = (byte / 255 - mean[c]) / std[c].
// Shared by the IDX, CIFAR-10 and image-folder readers.
#pragma once

#include <cstdint>
#include <vector>

#include "tensor/tensor.h"

namespace lattice::data {

/// Empty mean and std mean "scale to [0, 1] only"; otherwise one value per channel, or one
/// value for all channels.
struct Normalization {
  std::vector<float> mean = {};
  std::vector<float> std = {};
};

/// Throws lattice::Error naming `reader` when the sizes fit neither 0, 1 nor `channels`
/// values, or a std is not positive.
void check_normalization(const Normalization& normalization, int64_t channels, const char* reader);

/// pixels: (C, H*W) planar bytes, or (H*W, C) interleaved when `interleaved`; -> float32
/// (C, H, W) (the caller reshapes).
Tensor normalize_pixels(const uint8_t* pixels,
                        int64_t channels,
                        int64_t height,
                        int64_t width,
                        bool interleaved,
                        const Normalization& normalization);

}  // namespace lattice::data
