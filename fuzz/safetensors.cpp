// Fuzz target: a .safetensors file (8-byte header length, JSON header of dtypes, shapes and
// offsets, __metadata__, the data) opened and every tensor read.
#include "fuzz/fuzz_input.h"
#include "llm/safetensors.h"
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::filesystem::path file = rlrf::fuzz::scratch_dir() / "model.safetensors";
  rlrf::fuzz::write_bytes(file, std::string_view(reinterpret_cast<const char*>(data), size));
  rlrf::fuzz::accepts_or_rejects([&] {
    rlrf::llm::SafetensorsFile f = rlrf::llm::SafetensorsFile::open(file);
    for (const std::string& name : f.names()) {
      f.info(name);
      at::Tensor t = f.tensor(name);
      t.to(at::kFloat).sum().item<float>();
    }
    f.metadata();
  });
  return 0;
}
