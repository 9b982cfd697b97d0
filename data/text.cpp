// Text files, the byte and SentencePiece BPE tokenizers, and token windows.
#include "data/text.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace lattice::data {

std::string read_text_file(const std::string& path) {
  LATTICE_CHECK(!std::filesystem::is_directory(path), "[text] ", path,
                ": is a directory, expected a text file");
  std::ifstream file(path, std::ios::binary);
  LATTICE_CHECK(file.good(), "[text] ", path, ": cannot open (", std::strerror(errno), ")");
  std::ostringstream text;
  text << file.rdbuf();
  return text.str();
}

std::string wikitext_path(const std::string& directory, const std::string& split) {
  LATTICE_CHECK(split == "train" || split == "valid" || split == "test", "[wikitext] split \"",
                split, "\", expected train, valid or test");
  const std::string path =
      (std::filesystem::path(directory) / concat("wiki.", split, ".raw")).string();
  LATTICE_CHECK(std::filesystem::exists(path), "[wikitext] ", path,
                ": no such file; expected WikiText's raw files wiki.{train,valid,test}.raw");
  return path;
}

std::vector<int64_t> ByteTokenizer::encode(std::string_view text) const {
  std::vector<int64_t> tokens(text.size());
  for (size_t i = 0; i < text.size(); ++i) tokens[i] = static_cast<unsigned char>(text[i]);
  return tokens;
}

std::string ByteTokenizer::decode(std::span<const int64_t> tokens) const {
  std::string text(tokens.size(), '\0');
  for (size_t i = 0; i < tokens.size(); ++i) {
    LATTICE_CHECK(tokens[i] >= 0 && tokens[i] < 256, "[byte_tokenizer] token ", tokens[i],
                  " at position ", i, ", expected 0 <= token < 256");
    text[i] = char(tokens[i]);
  }
  return text;
}

struct BpeTokenizer::Impl {
  sentencepiece::SentencePieceProcessor processor;
};

BpeTokenizer::BpeTokenizer() : impl_(std::make_unique<Impl>()) {}
BpeTokenizer::~BpeTokenizer() = default;

std::string BpeTokenizer::model_path_for(const std::string& corpus_path,
                                         const BpeOptions& options) {
  if (!options.model_path.empty()) return options.model_path;
  return concat(corpus_path, ".bpe", options.vocab_size, ".model");
}

std::shared_ptr<BpeTokenizer> BpeTokenizer::load(const std::string& model_path) {
  std::shared_ptr<BpeTokenizer> tokenizer(new BpeTokenizer());
  const auto status = tokenizer->impl_->processor.Load(model_path);
  LATTICE_CHECK(status.ok(), "[bpe] ", model_path, ": cannot load SentencePiece model (",
                status.ToString(), ")");
  return tokenizer;
}

std::shared_ptr<BpeTokenizer> BpeTokenizer::train_or_load(const std::string& corpus_path,
                                                          BpeOptions options) {
  namespace fs = std::filesystem;
  const std::string model_path = model_path_for(corpus_path, options);
  if (fs::exists(model_path)) return load(model_path);
  LATTICE_CHECK(fs::is_regular_file(corpus_path), "[bpe] ", corpus_path,
                ": no such file; expected a text corpus to train the BPE model on");
  LATTICE_CHECK(options.vocab_size >= 260, "[bpe] vocab size ", options.vocab_size,
                ", expected >= 260 (256 byte-fallback pieces and the special tokens)");
  // Train under a temporary prefix and rename, so an interrupted run never leaves a partial
  // model that the next run would load.
  const std::string prefix = concat(model_path, ".tmp", ::getpid());
  std::ostringstream args;
  args << "--input=" << corpus_path << " --model_prefix=" << prefix
       << " --model_type=bpe --vocab_size=" << options.vocab_size
       << " --byte_fallback=true --character_coverage=1.0 --hard_vocab_limit=false"
       // Identity normalisation, kept whitespace and no dummy prefix make decode(encode(t)) == t
       // for any text, as a language model's byte stream needs.
       << " --normalization_rule_name=identity --remove_extra_whitespaces=false"
       << " --add_dummy_prefix=false"
       << " --num_threads=1 --minloglevel=2 --input_sentence_size=" << options.max_training_lines
       << " --shuffle_input_sentence=true";
  const auto status = sentencepiece::SentencePieceTrainer::Train(args.str());
  std::error_code ignored;
  fs::remove(prefix + ".vocab", ignored);
  if (!status.ok()) {
    fs::remove(prefix + ".model", ignored);
    throw Error(
        concat("[bpe] ", corpus_path, ": SentencePiece training failed (", status.ToString(), ")"));
  }
  std::error_code error;
  fs::rename(prefix + ".model", model_path, error);
  LATTICE_CHECK(!error, "[bpe] ", model_path, ": cannot save the trained model (", error.message(),
                ")");
  return load(model_path);
}

int64_t BpeTokenizer::vocab_size() const {
  return impl_->processor.GetPieceSize();
}

std::vector<int64_t> BpeTokenizer::encode(std::string_view text) const {
  std::vector<int> ids;
  const auto status = impl_->processor.Encode(text, &ids);
  LATTICE_CHECK(status.ok(), "[bpe] encode failed (", status.ToString(), ")");
  return {ids.begin(), ids.end()};
}

std::string BpeTokenizer::decode(std::span<const int64_t> tokens) const {
  std::vector<int> ids;
  ids.reserve(tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i) {
    LATTICE_CHECK(tokens[i] >= 0 && tokens[i] < vocab_size(), "[bpe] token ", tokens[i],
                  " at position ", i, ", expected 0 <= token < ", vocab_size());
    ids.push_back(int(tokens[i]));
  }
  std::string text;
  const auto status = impl_->processor.Decode(ids, &text);
  LATTICE_CHECK(status.ok(), "[bpe] decode failed (", status.ToString(), ")");
  return text;
}

std::vector<int64_t> encode_text(std::string_view text, const Tokenizer& tokenizer) {
  std::vector<int64_t> tokens;
  size_t begin = 0;
  while (begin < text.size()) {
    const size_t newline = text.find('\n', begin);
    const size_t end = newline == std::string_view::npos ? text.size() : newline + 1;
    const std::vector<int64_t> line = tokenizer.encode(text.substr(begin, end - begin));
    tokens.insert(tokens.end(), line.begin(), line.end());
    begin = end;
  }
  return tokens;
}

std::shared_ptr<TokenSequenceDataset> load_token_sequences(const std::string& path,
                                                           const Tokenizer& tokenizer,
                                                           int64_t sequence_length,
                                                           int64_t stride) {
  return std::make_shared<TokenSequenceDataset>(encode_text(read_text_file(path), tokenizer),
                                                sequence_length, stride);
}

TokenSequenceDataset::TokenSequenceDataset(std::vector<int64_t> tokens,
                                           int64_t sequence_length,
                                           int64_t stride)
    : tokens_(std::move(tokens)),
      sequence_length_(sequence_length),
      stride_(stride == 0 ? sequence_length : stride) {
  LATTICE_CHECK(sequence_length_ > 0 && stride_ > 0, "[tokens] sequence length ", sequence_length_,
                " and stride ", stride_, ", expected both > 0");
  const int64_t available = int64_t(tokens_.size()) - 1 - sequence_length_;
  count_ = available < 0 ? 0 : available / stride_ + 1;
}

Example TokenSequenceDataset::get(int64_t index) const {
  check_index("tokens", index, count_);
  const auto begin = tokens_.begin() + index * stride_;
  return {from_vector(std::vector<int64_t>(begin, begin + sequence_length_)),
          from_vector(std::vector<int64_t>(begin + 1, begin + sequence_length_ + 1))};
}

}  // namespace lattice::data
