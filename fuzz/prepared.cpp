// Fuzz target: a prepared-data file (prepared.bin: dataset, splits, lists). An accepted file must
// also write and read back.
#include "data/prepare.h"
#include "fuzz/fuzz_input.h"
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::filesystem::path dir = rlrf::fuzz::scratch_dir();
  rlrf::fuzz::write_bytes(dir / "prepared.bin", std::string_view(reinterpret_cast<const char*>(data), size));
  rlrf::PreparedData d;
  try {
    d = rlrf::load_prepared(dir / "prepared.bin");
  } catch (const rlrf::Error&) {
    return 0;
  }
  rlrf::count(d);
  rlrf::save_prepared(d, dir / "again.bin");
  rlrf::load_prepared(dir / "again.bin");  // must not throw
  return 0;
}
