// Fuzz target: a GGUF file (magic, version, metadata key/values, tensor table, aligned data).
#include "fuzz/fuzz_input.h"
#include "llm/gguf.h"
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::filesystem::path file = rlrf::fuzz::scratch_dir() / "model.gguf";
  rlrf::fuzz::write_bytes(file, std::string_view(reinterpret_cast<const char*>(data), size));
  rlrf::fuzz::accepts_or_rejects([&] {
    rlrf::llm::GgufFile g = rlrf::llm::read_gguf(file);
    for (const auto& t : g.tensors) t.data.to(at::kFloat).sum().item<float>();
  });
  return 0;
}
