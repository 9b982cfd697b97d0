// Text corpora for language models: plain text files and WikiText's raw files read as bytes,
// a byte-level tokenizer (vocab 256), a SentencePiece BPE tokenizer trained on the corpus and
// cached beside it, and a token stream cut into (input, target = input shifted by one) windows.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "data/dataset.h"

namespace lattice::data {

/// The file's bytes as a string. Throws "[text] path: cannot open (...)".
std::string read_text_file(const std::string& path);
/// WikiText raw split file in `directory`: wiki.{train,valid,test}.raw (split "train",
/// "valid" or "test"). Throws naming the missing file.
std::string wikitext_path(const std::string& directory, const std::string& split);

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual int64_t vocab_size() const = 0;
  virtual std::vector<int64_t> encode(std::string_view text) const = 0;
  virtual std::string decode(std::span<const int64_t> tokens) const = 0;
};

/// One token per byte: token = the byte's value, so any text round-trips exactly.
class ByteTokenizer final : public Tokenizer {
 public:
  int64_t vocab_size() const override {
    return 256;
  }
  std::vector<int64_t> encode(std::string_view text) const override;
  /// Throws on a token outside [0, 256).
  std::string decode(std::span<const int64_t> tokens) const override;
};

struct BpeOptions {
  int vocab_size = 4096;
  /// Where the model is (or will be) saved; empty: beside the corpus, as
  /// "<corpus>.bpe<vocab_size>.model".
  std::string model_path = {};
  /// Training reads at most this many lines of the corpus (sampled); 0 reads all.
  int max_training_lines = 1000000;
};

/// SentencePiece BPE with byte fallback and identity normalisation: every text encodes (no
/// unknown tokens) and decodes back to itself, whitespace and newlines included.
class BpeTokenizer final : public Tokenizer {
 public:
  /// Loads options.model_path (or the default path beside `corpus_path`) when it exists;
  /// otherwise trains a BPE model on the corpus and saves it there first. Throws
  /// lattice::Error naming the corpus or model file on failure.
  static std::shared_ptr<BpeTokenizer> train_or_load(const std::string& corpus_path,
                                                     BpeOptions options = {});
  /// Loads an existing model file.
  static std::shared_ptr<BpeTokenizer> load(const std::string& model_path);
  /// The model path train_or_load uses for this corpus and these options.
  static std::string model_path_for(const std::string& corpus_path, const BpeOptions& options);

  ~BpeTokenizer() override;
  int64_t vocab_size() const override;
  std::vector<int64_t> encode(std::string_view text) const override;
  std::string decode(std::span<const int64_t> tokens) const override;

 private:
  BpeTokenizer();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Consecutive windows of a token stream: example i is input = tokens[s*i, s*i + T) and
/// target = tokens[s*i + 1, s*i + T + 1) (int64, shape (T)), s = stride (T by default: no
/// overlap). Windows run while a target fits.
class TokenSequenceDataset final : public Dataset {
 public:
  TokenSequenceDataset(std::vector<int64_t> tokens, int64_t sequence_length, int64_t stride = 0);

  int64_t size() const override {
    return count_;
  }
  Example get(int64_t index) const override;
  int64_t sequence_length() const {
    return sequence_length_;
  }
  const std::vector<int64_t>& tokens() const {
    return tokens_;
  }

 private:
  std::vector<int64_t> tokens_;
  int64_t sequence_length_, stride_, count_ = 0;
};

/// A whole corpus encoded line by line (each chunk ends after its newline), so that huge
/// files never go to the tokenizer in one piece; the tokens are those of the lines in order.
std::vector<int64_t> encode_text(std::string_view text, const Tokenizer& tokenizer);

/// The token windows of a text file (plain text or a WikiText .raw file) under `tokenizer`.
std::shared_ptr<TokenSequenceDataset> load_token_sequences(const std::string& path,
                                                           const Tokenizer& tokenizer,
                                                           int64_t sequence_length,
                                                           int64_t stride = 0);

}  // namespace lattice::data
