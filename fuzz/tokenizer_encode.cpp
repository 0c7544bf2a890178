// Fuzz target: the real Llama-3.1 (byte-level BPE, PCRE2 pre-tokenizer) and bert-base-uncased
// (WordPiece) tokenizers from the shared directory encoding arbitrary bytes (invalid UTF-8
// included) and decoding arbitrary ids; encode then decode must give the text back for valid
// UTF-8 on the byte-level tokenizer.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "fuzz/fuzz_input.h"
#include "text/tokenizer.h"
#include "text/unicode.h"
#include "util/files.h"

namespace {
std::unique_ptr<rlrf::Tokenizer> llama, bert;
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const std::filesystem::path t = rlrf::shared_dir() / "tokenizers";
  try {
    llama = std::make_unique<rlrf::Tokenizer>(rlrf::Tokenizer::load(t / "llama-3.1"));
    bert = std::make_unique<rlrf::Tokenizer>(rlrf::Tokenizer::load(t / "bert-base-uncased"));
  } catch (const rlrf::Error& e) {
    std::fprintf(stderr, "tokenizer_encode needs the shared tokenizers: %s\n", e.what());
    std::exit(2);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  for (const rlrf::Tokenizer* tok : {llama.get(), bert.get()}) {
    std::vector<int32_t> ids = tok->encode(text, true);
    for (int32_t id : ids)
      if (id < 0 || id >= tok->vocab_size()) std::abort();
    std::string back = tok->decode(ids, true);
    if (tok == llama.get() && rlrf::text::utf8_repair(text) == text && back != text && text.find("<|") == std::string_view::npos) {
      std::fprintf(stderr, "llama-3.1: decode(encode(text)) != text\n");
      std::abort();
    }
    // The bytes read as ids (in and out of range): decode and the stream either work or say why.
    std::vector<int32_t> raw(size / 4);
    if (!raw.empty()) std::memcpy(raw.data(), data, raw.size() * 4);
    rlrf::fuzz::accepts_or_rejects([&] { tok->decode(raw, false); });
    rlrf::fuzz::accepts_or_rejects([&] {
      rlrf::StreamDecoder stream(*tok, false);
      for (int32_t id : raw) stream.push(id);
      stream.flush();
    });
  }
  return 0;
}
