// Trains a LLaMA-style language model (examples/models/llama.h) on WikiText (--data DIR) or,
// by default, on English prose from Debian packages (fortunes and the King James Bible), with
// a SentencePiece BPE tokenizer trained once per corpus and cached. Named configurations
// follow the FP4 appendix's Table 11 (9m, 60m, 350m, 1b); --tokens trains to a token budget.
#include "examples/models/llama.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <unordered_map>

#include "autograd/autograd.h"
#include "data/english_corpus.h"
#include "data/text.h"
#include "examples/trainer.h"
#include "ops/ops.h"
#include "tensor/random.h"

using namespace lattice;
namespace fs = std::filesystem;

namespace {

/// A named model with its Table 11 training setup. 60m, 350m and 1b are the GaLore/StableSPAM
/// LLaMA configurations (vocabulary 32000); 9m is ours: the smallest that keeps their shape
/// (head dim 64, SwiGLU width 3 x dim) at ~9M parameters with a 4096-token BPE vocabulary.
struct NamedConfig {
  const char* name;
  models::LlamaConfig model;
  int64_t batch, sequence, accumulate;
  double lr;
  int64_t tokens;  // Table 11's training duration
};
const NamedConfig kConfigs[] = {
    {"9m",
     {.vocab = 4096, .dim = 256, .layers = 8, .heads = 4, .hidden = 768},
     4096,
     128,
     1,
     1e-3,
     900'000'000},
    {"60m",
     {.vocab = 32000, .dim = 512, .layers = 8, .heads = 8, .hidden = 1376},
     128,
     512,
     1,
     1e-4,
     6'000'000'000},
    {"350m",
     {.vocab = 32000, .dim = 1024, .layers = 24, .heads = 16, .hidden = 2736},
     16,
     1024,
     8,
     1e-4,
     14'700'000'000},
    {"1b",
     {.vocab = 32000, .dim = 2048, .layers = 24, .heads = 32, .hidden = 5461},
     4,
     1024,
     512,
     1e-4,
     42'000'000'000},
};

const NamedConfig& named_config(const std::string& name) {
  for (const NamedConfig& c : kConfigs)
    if (name == c.name) return c;
  throw Error(concat("[llama] --config \"", name, "\": expected 9m, 60m, 350m or 1b"));
}

/// "auto", or a positive count with an optional k/M/B suffix ("5M" = 5000000). `automatic` is
/// what "auto" means.
int64_t parse_token_budget(const std::string& text, int64_t automatic) {
  if (text == "auto") return automatic;
  size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) ++digits;
  const std::string suffix = text.substr(digits);
  const int64_t unit = suffix.empty()                   ? 1
                       : suffix == "k" || suffix == "K" ? 1000
                       : suffix == "M" || suffix == "m" ? 1000000
                       : suffix == "B" || suffix == "b" ? 1000000000
                                                        : 0;
  LATTICE_CHECK(digits > 0 && digits <= 12 && unit > 0, "[llama] --tokens \"", text,
                "\": expected auto or a count such as 2000000, 500k, 5M or 1B");
  const int64_t count = std::stoll(text.substr(0, digits)) * unit;
  LATTICE_CHECK(count > 0, "[llama] --tokens \"", text, "\": expected a positive count");
  return count;
}

/// -sum p log p (nats) of the tokens' frequencies: the loss of the best model that ignores
/// context, the bar a trained model's validation loss must clear.
double unigram_entropy(const std::vector<int64_t>& tokens) {
  std::unordered_map<int64_t, int64_t> counts;
  for (int64_t t : tokens) ++counts[t];
  double entropy = 0.0;
  for (const auto& [token, count] : counts) {
    const double p = double(count) / double(tokens.size());
    entropy -= p * std::log(p);
  }
  return entropy;
}

std::string default_cache() {
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg)
    return (fs::path(xdg) / "lattice").string();
  if (const char* home = std::getenv("HOME"); home && *home)
    return (fs::path(home) / ".cache" / "lattice").string();
  return "runs/cache";
}

/// The training and validation text files: WikiText's in --data (wiki.{train,valid}.raw or
/// .tokens), else the Debian English corpus built in the cache.
data::CorpusFiles corpus_files(const std::string& data_dir, const std::string& cache) {
  if (data_dir.empty())
    return data::debian_english_corpus((fs::path(cache) / "debian-english").string());
  for (const char* suffix : {".raw", ".tokens"}) {
    const fs::path train = fs::path(data_dir) / concat("wiki.train", suffix);
    const fs::path valid = fs::path(data_dir) / concat("wiki.valid", suffix);
    if (fs::exists(train) && fs::exists(valid)) return {train.string(), valid.string()};
  }
  throw Error(concat("[llama] --data ", data_dir,
                     ": no wiki.train.raw and wiki.valid.raw (or .tokens); expected a WikiText "
                     "folder, or no --data for the Debian English corpus"));
}

/// `count` tokens continuing `prompt`: greedy at temperature 0, else sampled from
/// softmax(logits / temperature) with the Philox stream of `seed`.
std::vector<int64_t> generate(models::Llama& model,
                              std::vector<int64_t> tokens,
                              int64_t count,
                              int64_t context,
                              double temperature,
                              uint64_t seed) {
  NoGradGuard no_grad;
  model.eval();
  const RandomStream random{.seed = seed, .subsequence = 1};
  const size_t prompt = tokens.size();
  for (int64_t i = 0; i < count; ++i) {
    const int64_t length = std::min<int64_t>(int64_t(tokens.size()), context);
    const std::vector<int64_t> window(tokens.end() - length, tokens.end());
    const Tensor logits = model(from_vector<int64_t>(window, {1, length}));
    const int64_t vocab = logits.shape(2);
    const std::vector<float> last =
        logits.narrow(1, length - 1, 1).reshape({vocab}).to_vector<float>();
    int64_t next = 0;
    if (temperature <= 0) {
      next = std::max_element(last.begin(), last.end()) - last.begin();
    } else {
      const float top = *std::max_element(last.begin(), last.end());
      std::vector<double> weights(last.size());
      double total = 0.0;
      for (size_t v = 0; v < last.size(); ++v)
        total += weights[v] = std::exp((double(last[v]) - top) / temperature);
      // One uniform draw per token: word i of the stream, 32 bits.
      double u = double(random.word(uint64_t(i))) / 4294967296.0 * total;
      while (next + 1 < vocab && u >= weights[size_t(next)]) u -= weights[size_t(next++)];
    }
    tokens.push_back(next);
  }
  return std::vector<int64_t>(tokens.begin() + std::ptrdiff_t(prompt), tokens.end());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "Train a LLaMA-style language model on WikiText (--data DIR) or on English prose from "
      "Debian's fortunes and bible-kjv packages."};
  examples::TrainerFlags flags{.schedule = "cosine", .log_every = 10, .eval_batches = 16};
  std::string config_name = "9m", tokens_text, tokenizer_kind = "bpe", cache = default_cache();
  models::LlamaConfig overrides{.vocab = 0, .dim = 0, .layers = 0, .heads = 0, .hidden = 0};
  int64_t sequence = 0, sample = 0;
  double temperature = 0.0;
  bool dry_run = false;
  app.add_option("--config", config_name, "9m, 60m, 350m or 1b (sizes and Table 11 setup)")
      ->capture_default_str();
  app.add_option("--dim", overrides.dim, "model width (default: the config's)")
      ->check(CLI::PositiveNumber);
  app.add_option("--layers", overrides.layers, "blocks")->check(CLI::PositiveNumber);
  app.add_option("--heads", overrides.heads, "attention heads")->check(CLI::PositiveNumber);
  app.add_option("--kv-heads", overrides.kv_heads, "key/value heads (grouped-query attention)")
      ->check(CLI::PositiveNumber);
  app.add_option("--hidden", overrides.hidden, "SwiGLU width")->check(CLI::PositiveNumber);
  app.add_option("--vocab", overrides.vocab, "BPE vocabulary size to train (bpe tokenizer)")
      ->check(CLI::Range(int64_t(260), int64_t(1) << 20));
  app.add_option("--seq", sequence, "sequence length (default: the config's)")
      ->check(CLI::PositiveNumber);
  app.add_flag("--smooth-swiglu", overrides.smooth_swiglu, "SmoothSwiGLU feed-forward");
  app.add_flag("--learned-temperature", overrides.learned_temperature,
               "learned per-head softmax temperature");
  app.add_option("--tokens", tokens_text,
                 "train until this many tokens (auto: 100x the parameters, 42x from 350M)");
  app.add_option("--tokenizer", tokenizer_kind, "bpe (SentencePiece, cached) or byte")
      ->capture_default_str()
      ->check(CLI::IsMember({"bpe", "byte"}));
  app.add_option("--cache", cache, "where the Debian corpus and its tokenizer are kept")
      ->capture_default_str();
  app.add_option("--sample", sample, "print this many generated tokens at the end")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--temperature", temperature, "sampling temperature (0: greedy)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_flag("--dry-run", dry_run, "print the model's configuration and size; train nothing");
  examples::add_trainer_flags(app, flags);
  app.footer(app.get_footer() +
             "--batch, --lr and --accumulate default to the config's Table 11 values (9m: 4096 "
             "sequences of 128, lr 1e-3; 60m: 128 x 512, 1e-4; 350m: 16 x 1024, accumulate 8; "
             "1b: 4 x 1024, accumulate 512).\n");
  return examples::trainer_main("llama", app, argc, argv, [&] {
    const NamedConfig& named = named_config(config_name);
    models::LlamaConfig config = named.model;
    for (auto [value, given] : {std::pair{&config.dim, overrides.dim},
                                {&config.layers, overrides.layers},
                                {&config.heads, overrides.heads},
                                {&config.kv_heads, overrides.kv_heads},
                                {&config.hidden, overrides.hidden},
                                {&config.vocab, overrides.vocab}})
      if (given > 0) *value = given;
    config.smooth_swiglu = overrides.smooth_swiglu;
    config.learned_temperature = overrides.learned_temperature;
    if (tokenizer_kind == "byte") config.vocab = 256;
    LATTICE_CHECK(config.dim % config.heads == 0, "[llama] --dim ", config.dim,
                  " is not a multiple of --heads ", config.heads);
    if (app.count("--batch") == 0) flags.batch = named.batch;
    if (app.count("--lr") == 0) flags.lr = named.lr;
    if (app.count("--accumulate") == 0) flags.accumulate = named.accumulate;
    if (sequence == 0) sequence = named.sequence;
    const int64_t tokens_per_step = flags.batch * sequence * flags.accumulate;
    const int64_t parameters = models::llama_parameter_count(config);
    if (!tokens_text.empty()) {
      LATTICE_CHECK(app.count("--steps") == 0, "[llama] give --tokens or --steps, not both");
      // Table 11's budget for a named config as it is; for other sizes its rule: 100 tokens
      // per parameter below 350M parameters, 42 from there on.
      const bool resized = overrides.dim || overrides.layers || overrides.heads ||
                           overrides.kv_heads || overrides.hidden || overrides.vocab ||
                           tokenizer_kind == "byte";
      const int64_t automatic =
          resized ? parameters * (parameters < 350'000'000 ? 100 : 42) : named.tokens;
      const int64_t budget = parse_token_budget(tokens_text, automatic);
      flags.steps = (budget + tokens_per_step - 1) / tokens_per_step;
    }
    if (dry_run) {
      std::printf(
          "llama %s: vocab %lld, dim %lld, %lld layers, %lld heads (%lld kv), SwiGLU %lld: "
          "%lld parameters; %lld tokens per step (%lld x %lld x %lld)%s\n",
          named.name, (long long)config.vocab, (long long)config.dim, (long long)config.layers,
          (long long)config.heads,
          (long long)(config.kv_heads > 0 ? config.kv_heads : config.heads),
          (long long)config.hidden, (long long)parameters, (long long)tokens_per_step,
          (long long)flags.batch, (long long)sequence, (long long)flags.accumulate,
          flags.steps > 0 ? concat(", ", flags.steps, " steps").c_str() : "");
      return 0;
    }

    manual_seed(flags.seed);
    const data::CorpusFiles files = corpus_files(flags.data, cache);
    std::shared_ptr<data::Tokenizer> tokenizer;
    if (tokenizer_kind == "byte") {
      tokenizer = std::make_shared<data::ByteTokenizer>();
    } else {
      // Trained on the training text once and cached beside it, per vocabulary size.
      tokenizer = data::BpeTokenizer::train_or_load(files.train, {.vocab_size = int(config.vocab)});
      config.vocab = tokenizer->vocab_size();  // SentencePiece may stop short of the request
    }
    const auto train_set = data::load_token_sequences(files.train, *tokenizer, sequence);
    const auto validation_set = data::load_token_sequences(files.validation, *tokenizer, sequence);
    LATTICE_CHECK(train_set->size() > 0 && validation_set->size() > 0, "[llama] ", files.train,
                  " and ", files.validation, " hold ", train_set->size(), " and ",
                  validation_set->size(), " windows of ", sequence + 1,
                  " tokens; expected at least one each (a corpus that small cannot train)");
    const double entropy = unigram_entropy(train_set->tokens());
    data::DataLoader train(train_set, {.batch_size = flags.batch, .seed = flags.seed});
    data::DataLoader validation(
        validation_set, {.batch_size = std::min<int64_t>(flags.batch, 32), .shuffle = false});

    models::Llama model(config);
    const int64_t vocab = config.vocab;
    const auto loss_of = [&](const data::Batch& b) {
      return cross_entropy(model(b.input).reshape({-1, vocab}), b.target.reshape({-1}));
    };
    examples::TrainingJob job{
        .name = "llama",
        .model = &model,
        .train = &train,
        .loss = loss_of,
        .evaluate =
            [&] {
              NoGradGuard no_grad;
              double total = 0.0;
              int64_t tokens = 0;
              examples::for_each_validation_batch(
                  validation, flags.eval_batches, examples::trainer_device(flags),
                  [&](const data::Batch& batch) {
                    const int64_t n = batch.target.numel();
                    total += loss_of(batch).item<double>() * double(n);
                    tokens += n;
                  });
              const double loss = total / double(tokens);
              return examples::Evaluation{.loss = loss, .extra = {{"perplexity", std::exp(loss)}}};
            },
        .config = {{"config", named.name},
                   {"vocab", config.vocab},
                   {"dim", config.dim},
                   {"layers", config.layers},
                   {"heads", config.heads},
                   {"kv_heads", config.kv_heads},
                   {"hidden", config.hidden},
                   {"smooth_swiglu", config.smooth_swiglu},
                   {"learned_temperature", config.learned_temperature},
                   {"sequence", sequence},
                   {"tokens_per_step", tokens_per_step},
                   {"tokenizer", tokenizer_kind},
                   {"train_tokens", train_set->tokens().size()},
                   {"validation_tokens", validation_set->tokens().size()},
                   {"unigram_entropy", entropy},
                   {"data", flags.data.empty() ? "debian-english" : flags.data}},
        .unit = "tokens",
        .items = [](const data::Batch& b) { return b.target.numel(); }};
    std::fprintf(stderr,
                 "llama %s: %lld parameters, %lld training tokens (unigram entropy %.3f nats), "
                 "%lld tokens per step\n",
                 named.name, (long long)model.parameter_count(),
                 (long long)train_set->tokens().size(), entropy, (long long)tokens_per_step);
    const int status = examples::run_training(flags, job);
    if (status == 0 && sample > 0) {
      const std::vector<int64_t>& text = validation_set->tokens();
      const std::vector<int64_t> prompt(text.begin(),
                                        text.begin() + std::min<std::ptrdiff_t>(16, text.size()));
      const std::vector<int64_t> generated =
          generate(model, prompt, sample, sequence, temperature, flags.seed);
      const std::string out = tokenizer->decode(prompt) + tokenizer->decode(generated);
      std::printf("%s\n", out.c_str());
      std::ofstream(fs::path(flags.out.empty() ? "runs/llama" : flags.out) / "sample.txt")
          << out << "\n";
    }
    return status;
  });
}
