// Text corpora and tokenizer files (data/text.h): the input read as a text file and cut into
// byte-token windows (which must decode back to the text), and loaded as a SentencePiece model
// file, whose tokenizer must then encode and decode a short text.
#include "data/text.h"
#include "fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lattice;
  const std::string path = fuzz::write_scratch("corpus.txt", data, size);
  fuzz::expect_error_or_success([&] {
    const std::string text = data::read_text_file(path);
    FUZZ_CHECK(text.size() == size, text.size(), " bytes read of ", size);
    data::ByteTokenizer bytes;
    const std::vector<int64_t> tokens = data::encode_text(text, bytes);
    FUZZ_CHECK(bytes.decode(tokens) == text, "byte tokens do not decode to the text");
    const auto windows = data::load_token_sequences(path, bytes, 4, 3);
    for (int64_t i = 0; i < std::min<int64_t>(windows->size(), 4); ++i) (void)windows->get(i);
  });
  fuzz::expect_error_or_success([&] {
    const auto tokenizer = data::BpeTokenizer::load(path);
    const std::vector<int64_t> tokens = tokenizer->encode("a lattice\n of 12 tokens");
    (void)tokenizer->decode(tokens);
  });
  return 0;
}
