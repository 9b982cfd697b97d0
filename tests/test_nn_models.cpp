// Composite layers and tiny models: SwiGLU and SmoothSwiGLU, the GELU MLP, the transformer
// block, U-Net parts, the DDPM schedule and the patch embedding — values, gradient checks,
// state-dict round trips — and LLaMA, ViT and U-Net models whose loss falls in a few steps.
#include <doctest/doctest.h>

#include <cmath>

#include "examples/models/llama.h"
#include "examples/models/unet.h"
#include "examples/models/vit.h"
#include "nn_support.h"
#include "ops/spatial_ops.h"
#include "tensor/random.h"

using namespace lattice;
using namespace lattice::nn;
using test::check_module_gradients;
using test::random64;

namespace {

double max_difference(const Tensor& a, const Tensor& b) {
  return max(abs(a - b)).item<double>();
}

/// A model built twice from different seeds agrees after a state-dict copy.
template <class M, class... Args>
void check_state_dict_round_trip(const std::function<Tensor(M&)>& run, Args... args) {
  manual_seed(100);
  M a(args...);
  manual_seed(200);
  M b(args...);
  a.eval(), b.eval();
  CHECK(max_difference(run(a), run(b)) > 0.0);
  b.load_state_dict(a.state_dict());
  CHECK(max_difference(run(a), run(b)) == 0.0);
}

}  // namespace

TEST_CASE("SwiGLU is w2(silu(w1 x) * w3 x); SmoothSwiGLU has the same value, other GEMM operands") {
  manual_seed(1);
  SwiGLU plain(4, 6);
  manual_seed(1);
  SwiGLU smooth(4, 6, true);
  CHECK(smooth.type_name() == "SmoothSwiGLU");
  const Tensor x = randn({2, 3, 4}, 2);
  const Tensor expected =
      linear(silu(linear(x, plain.w1->weight)) * linear(x, plain.w3->weight), plain.w2->weight);
  CHECK(max_difference(plain(x), expected) == 0.0);
  CHECK(max_difference(smooth(x), expected) < 1e-6);
  // Under an MXFP4 GEMM stack the per-channel rescaling changes what is quantized.
  PrecisionScope scope(parse_precision_stack("gemm=mxfp4"));
  CHECK(max_difference(plain(x), smooth(x)) > 1e-3);
}

TEST_CASE("gradients through SwiGLU, SmoothSwiGLU, GeluMLP and both transformer blocks") {
  for (bool smoothed : {false, true}) {
    SwiGLU ffn(3, 5, smoothed);
    const Tensor x = random64({2, 2, 3}, 3);
    check_module_gradients(ffn, {x}, [&] { return ffn(x); });
  }
  GeluMLP mlp(3, 5);
  const Tensor x = random64({2, 3}, 4);
  check_module_gradients(mlp, {x}, [&] { return mlp(x); });
  using Options = TransformerBlockOptions;
  for (const Options& options :
       {Options{.attention = {.causal = true, .rope = true}},
        Options{.norm = Options::Norm::layer, .feed_forward = Options::FeedForward::gelu}}) {
    TransformerBlock block(4, 2, 6, options);
    const Tensor tokens = random64({2, 3, 4}, 5);
    check_module_gradients(block, {tokens}, [&] { return block(tokens); });
  }
}

TEST_CASE("GeluMLP and the pre-norm block compute exactly their definitions") {
  manual_seed(20);
  GeluMLP mlp(4, 6);
  const Tensor x = randn({2, 3, 4}, 21);
  CHECK(max_difference(mlp(x), linear(gelu(linear(x, mlp.fc1->weight, mlp.fc1->bias)),
                                      mlp.fc2->weight, mlp.fc2->bias)) == 0.0);
  TransformerBlock block(4, 2, 6, {.attention = {.causal = true}});
  const Tensor h = x + (*block.attention)((*block.norm1)(x));
  CHECK(max_difference(block(x), h + (*block.feed_forward)((*block.norm2)(h))) == 0.0);
}

TEST_CASE(
    "U-Net parts with hand-set weights: a residual block whose branch is zero is its skip, "
    "down/up-sampling with a centre-tap kernel pick and repeat pixels") {
  ResidualBlock block(2, 2, 3, 1);
  block.conv2->weight.fill_(0.0);
  block.conv2->bias.fill_(0.0);
  const Tensor x = randn({1, 2, 4, 4}, 22);
  CHECK(max_difference(block(x, randn({1, 3}, 23)), x) == 0.0);

  const Tensor image = arange(0, 16).reshape({1, 1, 4, 4});
  Downsample down(1);
  Upsample up(1);
  for (Conv2d* conv : {down.conv.get(), up.conv.get()}) {
    conv->weight.fill_(0.0);
    conv->weight.narrow(2, 1, 1).narrow(3, 1, 1).fill_(1.0);  // the centre tap
    conv->bias.fill_(0.0);
  }
  CHECK(down(image).to_vector<float>() == std::vector<float>{0, 2, 8, 10});
  CHECK(max_difference(up(image), upsample_nearest2d(image, 2)) == 0.0);
}

TEST_CASE("U-Net parts: shapes, the time embedding's reach, gradient checks") {
  ResidualBlock block(2, 4, 3, 2);
  CHECK(block.skip != nullptr);
  const Tensor x = random64({2, 2, 4, 4}, 6), t = random64({2, 3}, 7);
  check_module_gradients(block, {x, t}, [&] { return block(x, t); });
  Downsample down(2);
  Upsample up(2);
  CHECK(down(ones({1, 2, 8, 6})).shape() == Shape{1, 2, 4, 3});
  CHECK(up(ones({1, 2, 3, 4})).shape() == Shape{1, 2, 6, 8});
  SpatialSelfAttention attention(4, 2, 2);
  const Tensor image = random64({2, 4, 2, 3}, 8);
  check_module_gradients(attention, {image}, [&] { return attention(image); });
  CHECK_THROWS_WITH_AS(block(ones({2, 2, 4, 4}), ones({3, 3})),
                       "[ResidualBlock] expects x (N, C, H, W) and a time embedding (N, D), got "
                       "(2, 2, 4, 4) and (3, 3)",
                       Error);
}

TEST_CASE("timestep embedding, DDPM schedule and noise-prediction loss") {
  const std::vector<float> e =
      timestep_embedding(from_vector<int64_t>({0, 3}), 4, 100.0).to_vector<float>();
  // frequencies 1 and 100^(-1/2) = 0.1
  CHECK(e == std::vector<float>{0, 0, 1, 1, float(std::sin(3.0)), float(std::sin(0.3)),
                                float(std::cos(3.0)), float(std::cos(0.3))});
  const NoiseSchedule schedule(3, 0.1, 0.3);
  CHECK(schedule.alpha_bar(0) == doctest::Approx(0.9));
  CHECK(schedule.alpha_bar(2) == doctest::Approx(0.9 * 0.8 * 0.7));
  const Tensor noisy =
      schedule.add_noise(full({2, 1, 2}, 1.0), full({2, 1, 2}, 2.0), from_vector<int64_t>({0, 2}));
  const std::vector<float> v = noisy.to_vector<float>();
  CHECK(v[0] == doctest::Approx(std::sqrt(0.9) + 2 * std::sqrt(0.1)));
  CHECK(v[3] == doctest::Approx(std::sqrt(0.504) + 2 * std::sqrt(0.496)));
  CHECK(noise_prediction_loss(full({2, 2}, 1.0), full({2, 2}, 3.0)).item<float>() == 4.0f);
  CHECK_THROWS_WITH_AS(schedule.alpha_bar(3), "[NoiseSchedule] timestep 3 outside [0, 3)", Error);
}

TEST_CASE("PatchEmbedding: class token first, positions added, gradients") {
  PatchEmbedding patches(1, 4, 2, 3);
  const Tensor out = patches(ones({2, 1, 4, 4}));
  CHECK(out.shape() == Shape{2, 5, 3});
  // Token 0 is the class token plus position 0 for every image.
  const Tensor expected_first =
      (patches.class_token + patches.position.narrow(1, 0, 1)).reshape({3});
  CHECK(max_difference(out.select(0, 1).select(0, 0), expected_first) == 0.0);
  const Tensor images = random64({2, 1, 4, 4}, 9);
  check_module_gradients(patches, {images}, [&] { return patches(images); });
  CHECK_THROWS_WITH_AS(patches(ones({1, 1, 6, 6})),
                       "[PatchEmbedding] expects (N, C, 4, 4), got (1, 1, 6, 6)", Error);
}

TEST_CASE("state dicts round-trip for the tiny LLaMA, ViT and U-Net") {
  const Tensor tokens = from_vector<int64_t>({1, 5, 2, 7, 3, 3}, {2, 3});
  check_state_dict_round_trip<models::Llama>(
      [&](models::Llama& m) { return m(tokens); },
      models::LlamaConfig{.vocab = 8, .dim = 8, .layers = 2, .heads = 2, .hidden = 12});
  const Tensor images = randn({2, 3, 8, 8}, 10);
  check_state_dict_round_trip<models::Vit>([&](models::Vit& m) { return m(images); },
                                           models::VitConfig{.image_size = 8,
                                                             .patch = 4,
                                                             .dim = 8,
                                                             .layers = 1,
                                                             .heads = 2,
                                                             .hidden = 16,
                                                             .classes = 3});
  const Tensor t = from_vector<int64_t>({5, 50});
  check_state_dict_round_trip<models::Unet>(
      [&](models::Unet& m) { return m(images, t); },
      models::UnetConfig{.base = 4, .time_dim = 8, .groups = 2});
}

TEST_CASE("a tiny LLaMA learns a fixed batch; every parameter gets a gradient") {
  manual_seed(11);
  models::Llama llama({.vocab = 16,
                       .dim = 16,
                       .layers = 2,
                       .heads = 2,
                       .kv_heads = 1,
                       .hidden = 32,
                       .learned_temperature = true});
  std::vector<int64_t> sequence;
  for (int64_t i = 0; i < 2 * 9; ++i) sequence.push_back((i * 5 + i / 9) % 16);
  const Tensor tokens = from_vector(sequence, {2, 9});
  const Tensor input = tokens.narrow(1, 0, 8), target = tokens.narrow(1, 1, 8).reshape({-1});
  const auto loss = [&] { return cross_entropy(llama(input).reshape({-1, 16}), target); };
  // The count the llama trainer reports without building a model agrees with the model's.
  CHECK(models::llama_parameter_count({.vocab = 16,
                                       .dim = 16,
                                       .layers = 2,
                                       .heads = 2,
                                       .kv_heads = 1,
                                       .hidden = 32,
                                       .learned_temperature = true}) == llama.parameter_count());
  CHECK(models::llama_parameter_count({}) == models::Llama({}).parameter_count());
  const std::vector<double> losses = test::sgd_steps(llama, 12, 0.3, loss);
  CHECK(test::parameters_without_gradient(llama).empty());
  CHECK(losses.back() < 0.7 * losses.front());
}

TEST_CASE("a tiny ViT learns a fixed batch") {
  manual_seed(12);
  models::Vit vit({.channels = 1,
                   .image_size = 8,
                   .patch = 4,
                   .dim = 16,
                   .layers = 2,
                   .heads = 2,
                   .hidden = 32,
                   .classes = 4});
  const Tensor images = randn({8, 1, 8, 8}, 13);
  const Tensor labels = from_vector<int64_t>({0, 1, 2, 3, 0, 1, 2, 3});
  const std::vector<double> losses =
      test::sgd_steps(vit, 12, 0.1, [&] { return cross_entropy(vit(images), labels); });
  CHECK(test::parameters_without_gradient(vit).empty());
  CHECK(losses.back() < 0.7 * losses.front());
}

TEST_CASE("a tiny U-Net's noise-prediction loss falls") {
  manual_seed(14);
  models::Unet unet({.channels = 1, .base = 8, .time_dim = 16, .groups = 4});
  const NoiseSchedule schedule(100);
  const Tensor x0 = randn({4, 1, 8, 8}, 15), noise = randn({4, 1, 8, 8}, 16);
  const Tensor t = from_vector<int64_t>({10, 40, 70, 99});
  const Tensor noisy = schedule.add_noise(x0, noise, t);
  const std::vector<double> losses =
      test::sgd_steps(unet, 12, 0.05, [&] { return noise_prediction_loss(unet(noisy, t), noise); });
  CHECK(test::parameters_without_gradient(unet).empty());
  CHECK(losses.back() < 0.8 * losses.front());
  // Three levels halve the side twice: 6 does not divide by 4.
  CHECK_THROWS_WITH_AS(unet(randn({1, 1, 6, 6}, 17), from_vector<int64_t>({3})),
                       "[Unet] expects images (N, C, H, W) with H and W divisible by 4 (it halves "
                       "them 2 times), got (1, 1, 6, 6)",
                       Error);
}

TEST_CASE("the U-Net's levels: channels, attention and skips follow the config") {
  manual_seed(18);
  models::Unet unet({.channels = 1,
                     .base = 4,
                     .multipliers = {1, 2, 3, 3},
                     .attention_levels = {1, 3},
                     .time_dim = 8,
                     .groups = 2});
  CHECK(unet.encoder->size() == 4);
  CHECK(unet.downsamples->size() == 3);
  CHECK(unet.upsamples->size() == 3);
  const auto level = [](nn::ModuleList& list, size_t i) -> models::UnetLevel& {
    return static_cast<models::UnetLevel&>(list[i]);
  };
  // Encoder level i maps the previous width to base x multiplier[i]; the decoder runs the
  // levels backwards, each block taking its input's and the skip's channels.
  CHECK(level(*unet.encoder, 0).block->conv1->weight.shape() == Shape{4, 4, 3, 3});
  CHECK(level(*unet.encoder, 2).block->conv1->weight.shape() == Shape{12, 8, 3, 3});
  CHECK(level(*unet.decoder, 0).block->conv1->weight.shape() == Shape{12, 24, 3, 3});
  CHECK(level(*unet.decoder, 1).block->conv1->weight.shape() == Shape{12, 24, 3, 3});
  CHECK(level(*unet.decoder, 2).block->conv1->weight.shape() == Shape{8, 20, 3, 3});
  CHECK(level(*unet.decoder, 3).block->conv1->weight.shape() == Shape{4, 12, 3, 3});
  // Attention where named: encoder levels 1 and 3, and their mirrors (decoder 2 and 0).
  CHECK(level(*unet.encoder, 0).attention == nullptr);
  CHECK(level(*unet.encoder, 1).attention != nullptr);
  CHECK(level(*unet.encoder, 3).attention != nullptr);
  CHECK(level(*unet.decoder, 0).attention != nullptr);
  CHECK(level(*unet.decoder, 1).attention == nullptr);
  CHECK(level(*unet.decoder, 2).attention != nullptr);
  const Tensor out = unet(randn({2, 1, 16, 8}, 19), from_vector<int64_t>({1, 7}));
  CHECK(out.shape() == Shape{2, 1, 16, 8});
}
