// An out-of-tree program against the installed Lattice: a small MLP of its own fits
// y = sin(3 x0) + x1 x2 on generated data for a few Adam steps, saves its weights as a
// safetensors file (argv[1], default fit_mlp.safetensors) and fails unless the loss fell.
#include <cmath>
#include <cstdio>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "autograd/autograd.h"
#include "core/version.h"
#include "nn/layers.h"
#include "nn/module.h"
#include "ops/ops.h"
#include "optim/optimizer.h"
#include "tensor/safetensors.h"
#include "tensor/tensor.h"

using namespace lattice;

// Two Linear layers with a tanh between them; registering them names the weights
// "hidden.weight", "hidden.bias", "out.weight" and "out.bias".
class Mlp : public nn::Module {
 public:
  Mlp(int64_t inputs, int64_t hidden)
      : Module("Mlp"),
        hidden_(register_module("hidden", std::make_shared<nn::Linear>(inputs, hidden))),
        out_(register_module("out", std::make_shared<nn::Linear>(hidden, 1))) {}

  Tensor forward(const Tensor& x) override {
    return (*out_)(tanh((*hidden_)(x)));
  }

 private:
  std::shared_ptr<nn::Linear> hidden_, out_;
};

int main(int argc, char** argv) {
  const std::string path = argc > 1 ? argv[1] : "fit_mlp.safetensors";
  constexpr int64_t rows = 256, features = 3, steps = 60;
  try {
    const Tensor x = randn({rows, features}, /*seed=*/7);
    const std::vector<float> inputs = x.to_vector<float>();
    std::vector<float> targets(rows);
    for (int64_t i = 0; i < rows; ++i) {
      const float* row = &inputs[size_t(i * features)];
      targets[size_t(i)] = std::sin(3.0f * row[0]) + row[1] * row[2];
    }
    const Tensor y = from_vector(targets, {rows, 1});

    Mlp model(features, 32);
    optim::Adam optimizer(optim::one_group(model.named_parameters(), /*lr=*/1e-2));
    double first_loss = 0, last_loss = 0;
    for (int64_t step = 0; step < steps; ++step) {
      optimizer.zero_grad();
      const Tensor loss = mse(model(x), y);
      backward(loss);
      optimizer.step();
      last_loss = loss.item<double>();
      if (step == 0) first_loss = last_loss;
    }
    save_safetensors(path, model.state_dict(), {{"lattice_version", version()}});
    std::printf("lattice %s: mse %.4f -> %.4f in %lld steps, weights in %s\n", version(),
                first_loss, last_loss, (long long)steps, path.c_str());
    if (!(last_loss < 0.5 * first_loss)) {
      std::fprintf(stderr, "fit_mlp: the loss did not halve\n");
      return 1;
    }
    const size_t saved = load_safetensors(path).tensors.size();
    if (saved != 4) {
      std::fprintf(stderr, "fit_mlp: %s holds %zu tensors, expected 4\n", path.c_str(), saved);
      return 1;
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fit_mlp: %s\n", e.what());
    return 1;
  }
}
