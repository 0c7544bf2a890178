// Fuzz target: a tokenizer.json (BPE, byte-level, WordPiece, normalizers, pre-tokenizers, added
// tokens) loaded from arbitrary bytes, then used: encode with and without specials, decode, stream.
#include "fuzz/fuzz_input.h"
#include "text/tokenizer.h"
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::filesystem::path file = rlrf::fuzz::scratch_dir() / "tokenizer.json";
  rlrf::fuzz::write_bytes(file, std::string_view(reinterpret_cast<const char*>(data), size));
  rlrf::fuzz::accepts_or_rejects([&] {
    rlrf::Tokenizer tok = rlrf::Tokenizer::load(file);
    for (bool special : {true, false}) {
      std::vector<int32_t> ids = tok.encode("Hello, world! It's 1999 \xc3\xa9t\xc3\xa9 <|eot_id|> [SEP]  x", special);
      std::string text = tok.decode(ids, !special);
      rlrf::StreamDecoder stream(tok, special);
      for (int32_t id : ids) text += stream.push(id);
      text += stream.flush();
    }
    tok.id_to_token(0);
    tok.token_to_id("a");
  });
  return 0;
}
