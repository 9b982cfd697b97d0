// Image classifiers for the cifar trainer: the peer benchmark's CNN (../shared/peers/
// torch_bench.py: three conv3x3-ReLU-maxpool stages of 32, 64, 128 channels and a linear head)
// and ResNet-20 (He et al. 2016, CIFAR variant: 3 stages of 3 basic blocks, 16/32/64 channels,
// batch norm, 1x1 projection shortcuts where the shape changes, global average pooling).
#pragma once

#include <memory>
#include <vector>

#include "nn/layers.h"
#include "ops/ops.h"

namespace lattice::models {

/// images (N, channels, size, size) -> logits (N, classes); size must be a multiple of 8.
inline std::shared_ptr<nn::Sequential> peer_cnn(int64_t channels, int64_t size, int64_t classes) {
  std::vector<std::shared_ptr<nn::Module>> layers;
  for (const auto& [in, out] : {std::pair{channels, int64_t(32)}, {32, 64}, {64, 128}}) {
    layers.push_back(std::make_shared<nn::Conv2d>(in, out, 3, 1, 1));
    layers.push_back(std::make_shared<nn::Activation>(nn::Activation::Kind::relu));
    layers.push_back(std::make_shared<nn::MaxPool2d>(2));
  }
  layers.push_back(std::make_shared<nn::Flatten>());
  layers.push_back(std::make_shared<nn::Linear>(128 * (size / 8) * (size / 8), classes));
  return std::make_shared<nn::Sequential>(layers);
}

/// conv3x3-BN-ReLU-conv3x3-BN, plus the input (through a 1x1 conv and BN when the stride or
/// the width changes), then ReLU.
class BasicBlock : public nn::Module {
 public:
  BasicBlock(int64_t in, int64_t out, int64_t stride) : Module("BasicBlock") {
    conv1 = register_module("conv1", std::make_shared<nn::Conv2d>(in, out, 3, stride, 1, false));
    bn1 = register_module("bn1", std::make_shared<nn::BatchNorm2d>(out));
    conv2 = register_module("conv2", std::make_shared<nn::Conv2d>(out, out, 3, 1, 1, false));
    bn2 = register_module("bn2", std::make_shared<nn::BatchNorm2d>(out));
    if (stride != 1 || in != out) {
      shortcut_conv = register_module("shortcut_conv",
                                      std::make_shared<nn::Conv2d>(in, out, 1, stride, 0, false));
      shortcut_bn = register_module("shortcut_bn", std::make_shared<nn::BatchNorm2d>(out));
    }
  }

  Tensor forward(const Tensor& x) override {
    const Tensor y = (*bn2)((*conv2)(relu((*bn1)((*conv1)(x)))));
    const Tensor identity = shortcut_conv ? (*shortcut_bn)((*shortcut_conv)(x)) : x;
    return relu(y + identity);
  }

  std::shared_ptr<nn::Conv2d> conv1, conv2, shortcut_conv;
  std::shared_ptr<nn::BatchNorm2d> bn1, bn2, shortcut_bn;
};

/// ResNet-20: images (N, channels, S, S) -> logits (N, classes), any S divisible by 4.
class ResNet20 : public nn::Module {
 public:
  ResNet20(int64_t channels, int64_t classes) : Module("ResNet20") {
    stem = register_module("stem", std::make_shared<nn::Conv2d>(channels, 16, 3, 1, 1, false));
    stem_bn = register_module("stem_bn", std::make_shared<nn::BatchNorm2d>(16));
    blocks = register_module("blocks", std::make_shared<nn::ModuleList>());
    int64_t width = 16;
    for (const int64_t stage : {16, 32, 64})
      for (int i = 0; i < 3; ++i) {
        const int64_t stride = i == 0 && stage != 16 ? 2 : 1;
        blocks->push_back(std::make_shared<BasicBlock>(width, stage, stride));
        width = stage;
      }
    pool = register_module(
        "pool", std::make_shared<nn::AdaptivePool2d>(nn::AdaptivePool2d::Kind::average, 1, 1));
    head = register_module("head", std::make_shared<nn::Linear>(64, classes));
  }

  Tensor forward(const Tensor& images) override {
    Tensor x = relu((*stem_bn)((*stem)(images)));
    for (size_t i = 0; i < blocks->size(); ++i) x = (*blocks)[i](x);
    return (*head)((*pool)(x).reshape({x.shape(0), 64}));
  }

  std::shared_ptr<nn::Conv2d> stem;
  std::shared_ptr<nn::BatchNorm2d> stem_bn;
  std::shared_ptr<nn::ModuleList> blocks;
  std::shared_ptr<nn::AdaptivePool2d> pool;
  std::shared_ptr<nn::Linear> head;
};

}  // namespace lattice::models
