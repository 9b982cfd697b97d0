// Text corpora: reading files and WikiText's layout, the byte tokenizer, the SentencePiece BPE
// tokenizer trained on a small corpus (and reused from its saved model), and token windows.
#include <doctest/doctest.h>

#include <filesystem>

#include "data/dataset.h"
#include "data/file_io.h"
#include "data/text.h"
#include "data_test_files.h"

using namespace lattice;
using namespace lattice::data;
using lattice::test::error_message;
using lattice::test::TempDir;

namespace {
// A few hundred lines of repetitive English, so BPE has merges to learn.
std::string small_corpus() {
  const char* subjects[] = {"the cat", "a dog", "the lattice", "every tensor", "our model"};
  const char* verbs[] = {"rounds", "trains on", "quantizes", "reads", "remembers"};
  const char* objects[] = {"the numbers", "a block of floats", "its gradients", "the data",
                           "every epoch"};
  std::string text;
  for (int i = 0; i < 400; ++i) {
    text += concat(subjects[i % 5], " ", verbs[(i / 5) % 5], " ", objects[(i / 25) % 5],
                   i % 7 == 0 ? " again." : ".", "\n");
  }
  return text;
}

void write_text(const std::string& path, const std::string& text) {
  write_file_bytes(path, std::vector<uint8_t>(text.begin(), text.end()));
}
}  // namespace

TEST_CASE("the byte tokenizer maps each byte to its value and back, non-ASCII included") {
  const ByteTokenizer bytes;
  const std::string text = "Zürich\n\x01\xff";
  const std::vector<int64_t> tokens = bytes.encode(text);
  CHECK(bytes.vocab_size() == 256);
  CHECK(tokens.size() == text.size());
  CHECK(tokens[0] == 'Z');
  CHECK(tokens[1] == 0xc3);
  CHECK(tokens.back() == 255);
  CHECK(bytes.decode(tokens) == text);
  CHECK(error_message([&] {
          bytes.decode(std::vector<int64_t>{65, 256});
        }) == "[byte_tokenizer] token 256 at position 1, expected 0 <= token < 256");
}

TEST_CASE("text files read as bytes; WikiText raw files found by split, missing ones named") {
  TempDir dir("wikitext");
  write_text(dir.file("wiki.valid.raw"), " = Valkyria = \n\n some text \n");
  CHECK(read_text_file(wikitext_path(dir.path().string(), "valid")) ==
        " = Valkyria = \n\n some text \n");
  CHECK(error_message([&] { wikitext_path(dir.path().string(), "train"); }) ==
        concat("[wikitext] ", dir.file("wiki.train.raw"),
               ": no such file; expected WikiText's raw files wiki.{train,valid,test}.raw"));
  CHECK(error_message([&] { read_text_file(dir.file("absent.txt")); }) ==
        concat("[text] ", dir.file("absent.txt"), ": cannot open (No such file or directory)"));
}

TEST_CASE("token windows: input = tokens[s*i, s*i+T), target shifted by one; stride overlaps") {
  std::vector<int64_t> tokens(11);
  for (int64_t i = 0; i < 11; ++i) tokens[size_t(i)] = 100 + i;
  TokenSequenceDataset windows(tokens, 3);
  CHECK(windows.size() == 3);  // targets up to token 10: windows at 0, 3, 6
  const Example example = windows.get(1);
  CHECK(example.input.dtype() == DType::int64);
  CHECK(example.input.to_vector<int64_t>() == std::vector<int64_t>{103, 104, 105});
  CHECK(example.target.to_vector<int64_t>() == std::vector<int64_t>{104, 105, 106});
  CHECK(windows.get(2).target.to_vector<int64_t>() == std::vector<int64_t>{107, 108, 109});
  TokenSequenceDataset overlapping(tokens, 4, 1);
  CHECK(overlapping.size() == 7);
  CHECK(overlapping.get(6).target.to_vector<int64_t>() == std::vector<int64_t>{107, 108, 109, 110});
  CHECK(TokenSequenceDataset(std::vector<int64_t>{1, 2, 3}, 3).size() == 0);
  CHECK(error_message([&] { windows.get(3); }) ==
        "[tokens] index 3 out of range; expected 0 <= index < 3");

  DataLoader loader(std::make_shared<TokenSequenceDataset>(tokens, 3),
                    {.batch_size = 2, .shuffle = false, .prefetch = 0});
  CHECK(loader.next()->input.shape() == Shape{2, 3});
}

TEST_CASE("BPE is trained on the corpus, saved beside it, reused, and round-trips text") {
  TempDir dir("bpe");
  const std::string corpus = dir.file("corpus.txt");
  write_text(corpus, small_corpus());
  const auto bpe = BpeTokenizer::train_or_load(corpus, {.vocab_size = 400});
  const std::string model = dir.file("corpus.txt.bpe400.model");
  CHECK(BpeTokenizer::model_path_for(corpus, {.vocab_size = 400}) == model);
  REQUIRE(std::filesystem::exists(model));
  CHECK(bpe->vocab_size() > 256);
  CHECK(bpe->vocab_size() <= 400);

  const std::string sentence = "the lattice quantizes every epoch again.";
  const std::vector<int64_t> tokens = bpe->encode(sentence);
  CHECK(tokens.size() < sentence.size() / 2);  // merges learned from the corpus
  CHECK(bpe->decode(tokens) == sentence);
  // Byte fallback and identity normalisation: unseen characters, runs of spaces, leading
  // spaces and newlines all round-trip.
  CHECK(bpe->decode(bpe->encode("Ωmega €5")) == "Ωmega €5");
  const std::string lines = "  the cat  reads\n\nthe data.\n";
  CHECK(bpe->decode(encode_text(lines, *bpe)) == lines);
  CHECK(encode_text(lines, *bpe) == bpe->encode(lines));

  // The saved model is loaded, not retrained: same tokens, file untouched.
  const auto written = std::filesystem::last_write_time(model);
  const auto reused = BpeTokenizer::train_or_load(corpus, {.vocab_size = 400});
  CHECK(reused->encode(sentence) == tokens);
  CHECK(std::filesystem::last_write_time(model) == written);

  const std::string elsewhere = dir.file("models/bpe.model");
  std::filesystem::create_directory(dir.path() / "models");
  BpeTokenizer::train_or_load(corpus, {.vocab_size = 360, .model_path = elsewhere});
  CHECK(std::filesystem::exists(elsewhere));
  CHECK(std::distance(std::filesystem::directory_iterator(dir.path() / "models"),
                      std::filesystem::directory_iterator()) == 1);  // no temporaries left
}

TEST_CASE("a corpus file becomes token windows; line-wise encoding equals whole-text encoding") {
  TempDir dir("token_file");
  const std::string text = "first line\nsecond\n\nlast without newline";
  write_text(dir.file("corpus.txt"), text);
  const ByteTokenizer bytes;
  CHECK(encode_text(text, bytes) == bytes.encode(text));
  const auto windows = load_token_sequences(dir.file("corpus.txt"), bytes, 8);
  CHECK(windows->size() == int64_t((text.size() - 1 - 8) / 8 + 1));
  CHECK(bytes.decode(windows->get(1).input.to_vector<int64_t>()) == text.substr(8, 8));
  CHECK(bytes.decode(windows->get(1).target.to_vector<int64_t>()) == text.substr(9, 8));
}

TEST_CASE("BPE errors name the corpus or the model file") {
  TempDir dir("bpe_errors");
  CHECK(error_message([&] { BpeTokenizer::train_or_load(dir.file("absent.txt")); }) ==
        concat("[bpe] ", dir.file("absent.txt"),
               ": no such file; expected a text corpus to train the BPE model on"));
  write_text(dir.file("bad.model"), "not a model");
  CHECK(error_message([&] { BpeTokenizer::load(dir.file("bad.model")); })
            .starts_with(
                concat("[bpe] ", dir.file("bad.model"), ": cannot load SentencePiece model (")));
}
