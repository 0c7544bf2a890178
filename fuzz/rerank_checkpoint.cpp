// Fuzz target: a reranker checkpoint (.rrk: shape, settings and tensors of a DLCM or PRM). An
// accepted checkpoint must also write and read back.
#include "fuzz/fuzz_input.h"
#include "rerank/checkpoint.h"
#include "rerank/reranker.h"
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::filesystem::path dir = rlrf::fuzz::scratch_dir();
  rlrf::fuzz::write_bytes(dir / "model.rrk", std::string_view(reinterpret_cast<const char*>(data), size));
  rlrf::Reranker r;
  try {
    r = rlrf::load_reranker(dir / "model.rrk");
  } catch (const rlrf::Error&) {
    return 0;
  }
  rlrf::save_reranker(r, dir / "again.rrk");
  rlrf::load_reranker(dir / "again.rrk");  // must not throw
  return 0;
}
