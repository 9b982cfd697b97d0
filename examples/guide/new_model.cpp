// A new model in the C++ API (the README's guide, compiled and run by tests/test_guide.cpp):
// a module with parameters of its own, trained by a plain loop under a precision stack with one
// layer overridden, then saved with save_safetensors and loaded back.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "autograd/autograd.h"
#include "nn/layers.h"
#include "ops/ops.h"
#include "optim/optimizer.h"
#include "tensor/precision_stack.h"
#include "tensor/random.h"
#include "tensor/safetensors.h"

using namespace lattice;

// x + gain * down(relu(up(x))): two registered submodules and one registered parameter.
class ResidualMlp : public nn::Module {
 public:
  ResidualMlp(int64_t width, int64_t hidden) : nn::Module("ResidualMlp") {
    up = register_module("up", std::make_shared<nn::Linear>(width, hidden));
    down = register_module("down", std::make_shared<nn::Linear>(hidden, width));
    gain = register_parameter("gain", full({width}, 0.5));
  }
  Tensor forward(const Tensor& x) override {
    return add(x, mul(gain, (*down)(relu((*up)(x)))));
  }
  std::shared_ptr<nn::Linear> up, down;
  Tensor gain;
};

class Classifier : public nn::Module {
 public:
  Classifier(int64_t features, int64_t width, int64_t classes) : nn::Module("Classifier") {
    embed = register_module("embed", std::make_shared<nn::Linear>(features, width));
    block = register_module("block", std::make_shared<ResidualMlp>(width, 4 * width));
    head = register_module("head", std::make_shared<nn::Linear>(width, classes));
  }
  Tensor forward(const Tensor& x) override {
    return (*head)((*block)((*embed)(x)));
  }
  std::shared_ptr<nn::Linear> embed;
  std::shared_ptr<ResidualMlp> block;
  std::shared_ptr<nn::Linear> head;
};

int main(int argc, char** argv) {
  const std::string out = argc > 1 ? argv[1] : "classifier.safetensors";
  const int steps = argc > 2 ? std::stoi(argv[2]) : 100;

  // Data: 2-D points labelled by their quadrant (4 classes).
  const Tensor points = randn({512, 2}, RandomStream{.seed = 1});
  std::vector<int64_t> quadrant;
  for (size_t i = 0; i < 512; ++i) {
    const std::vector<float> xy = points.select(0, int64_t(i)).to_vector<float>();
    quadrant.push_back(int64_t(xy[0] > 0) + 2 * int64_t(xy[1] > 0));
  }
  const Tensor labels = from_vector(quadrant);

  manual_seed(0);  // the initial weights follow the seed
  Classifier model(2, 32, 4);
  // The whole model computes in MXFP8; the classifier head keeps fp32 GEMMs.
  const PrecisionStack stack = parse_precision_stack("mxfp8");
  model.override_precision("head", parse_precision_stack("fp32"));
  optim::Adam optimizer(optim::one_group(model.named_parameters(), 1e-2), {}, stack);

  for (int step = 0; step < steps; ++step) {
    PrecisionScope scope(stack);
    optimizer.zero_grad();
    const Tensor loss = cross_entropy(model(points), labels);
    backward(loss);
    optimizer.step();
    if (step == 0 || step == steps - 1)
      std::printf("step %d loss %.4f\n", step, loss.item<double>());
  }

  // Tensors go to a safetensors file (any safetensors reader opens it) and come back by name.
  save_safetensors(out, model.state_dict());
  Classifier restored(2, 32, 4);
  restored.load_state_dict(load_safetensors(out).tensors);
  std::printf("saved %lld tensors to %s\n", (long long)restored.state_dict().size(), out.c_str());
  return 0;
}
