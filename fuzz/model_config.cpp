// Fuzz target: a Hugging Face config.json (Llama, Mistral, Qwen2 families) parsed; an accepted
// config must also read back from what to_json() writes.
#include "fuzz/fuzz_input.h"
#include "llm/model_config.h"
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  rlrf::llm::ModelConfig c;
  try {
    c = rlrf::llm::ModelConfig::parse(text, "config.json");
  } catch (const rlrf::Error&) {
    return 0;
  }
  rlrf::llm::ModelConfig::parse(c.to_json(), "config.json (written back)");  // must not throw
  return 0;
}
