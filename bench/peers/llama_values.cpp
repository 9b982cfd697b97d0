// llama_values: the loss and every parameter gradient of a tiny examples/models/llama.h model
// on one fixed batch, with its parameters, as one JSON object, for
// bench/peers/torch_llama_values.py to rebuild the model in PyTorch (bench/peers/torch_llama.py's
// definition), load the same parameters and compare. The whole model, not op by op: embedding,
// RMSNorm, attention with RoPE and the causal mask, SwiGLU, the head and the loss together.
//
//   build/bin/llama_values > llama.json
//   python3 bench/peers/torch_llama_values.py llama.json
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "autograd/autograd.h"
#include "examples/models/llama.h"
#include "ops/ops.h"
#include "tensor/random.h"

using namespace lattice;

namespace {

std::string json_list(const std::vector<double>& values) {
  std::string out = "[";
  for (size_t i = 0; i < values.size(); ++i) {
    char text[32];
    std::snprintf(text, sizeof text, "%.17g", values[i]);
    if (i) out += ',';
    out += text;
  }
  return out + "]";
}

std::vector<double> doubles(const Tensor& t) {
  return t.to(DType::float64).to_vector<double>();
}

}  // namespace

int main() {
  const models::LlamaConfig config{.vocab = 32, .dim = 16, .layers = 2, .heads = 2, .hidden = 24};
  constexpr int64_t kBatch = 2, kSeq = 8;
  set_default_random_state({.seed = 7});
  models::Llama model(config);
  // Tokens (kBatch, kSeq + 1): the model reads the first kSeq and predicts the next.
  std::vector<int64_t> tokens;
  for (int64_t i = 0; i < kBatch * (kSeq + 1); ++i) tokens.push_back((i * 7 + 3) % config.vocab);
  const Tensor all = from_vector(tokens, {kBatch, kSeq + 1});
  const Tensor inputs = all.slice(1, 0, kSeq).contiguous(), targets = all.slice(1, 1, kSeq + 1);
  const Tensor logits = model(inputs);
  const Tensor loss =
      cross_entropy(logits.reshape({kBatch * kSeq, config.vocab}), targets.reshape({-1}));
  backward(loss);

  std::string line = "{\"vocab\":" + std::to_string(config.vocab) +
                     ",\"dim\":" + std::to_string(config.dim) +
                     ",\"layers\":" + std::to_string(config.layers) +
                     ",\"heads\":" + std::to_string(config.heads) +
                     ",\"hidden\":" + std::to_string(config.hidden) +
                     ",\"batch\":" + std::to_string(kBatch) + ",\"seq\":" + std::to_string(kSeq);
  std::vector<double> token_values(tokens.begin(), tokens.end());
  line += ",\"tokens\":" + json_list(token_values);
  line += ",\"loss\":" + json_list({loss.to(DType::float64).item<double>()});
  line += ",\"parameters\":{";
  bool first = true;
  for (const auto& [name, parameter] : model.named_parameters()) {
    if (!first) line += ',';
    first = false;
    line += "\"" + name + "\":{\"data\":" + json_list(doubles(parameter)) +
            ",\"grad\":" + json_list(doubles(grad(parameter))) + "}";
  }
  std::printf("%s}}\n", line.c_str());
  return 0;
}
