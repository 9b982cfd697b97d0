// Augmentations for the CIFAR and diffusion trainers, as DataLoader batch transforms: random
// crop with zero padding and random horizontal flip. Sample i of epoch e draws Philox block
// i of subsequence e under the transform's own seed, so augmentations are the same with or
// without prefetch, across resumes, and independent of batch composition.
#pragma once

#include <cstdint>

#include "data/dataset.h"

namespace lattice::data {

struct CropFlipOptions {
  /// Zero padding on each side before a crop back to the original size; 0 disables cropping.
  int padding = 4;
  bool horizontal_flip = true;
  uint64_t seed = 0;
};

/// One (C, H, W) float image: pad by `padding` zeros, crop H x W at (dy, dx) in
/// [0, 2*padding], then mirror left-right when `flip`. Returns a new tensor.
Tensor crop_and_flip(const Tensor& image, int padding, int dy, int dx, bool flip);

/// A BatchTransform applying crop_and_flip to every (C, H, W) row of batch.input.
class RandomCropFlip {
 public:
  explicit RandomCropFlip(CropFlipOptions options) : options_(options) {}
  void operator()(Batch& batch, int64_t epoch) const;

  /// The draws of sample `index` in `epoch`: {dy, dx, flip}.
  struct Draw {
    int dy, dx;
    bool flip;
  };
  Draw draw(int64_t index, int64_t epoch) const;

 private:
  CropFlipOptions options_;
};

}  // namespace lattice::data
