// Fuzz target: a TOML run configuration and `--set section.key=value` overrides. The input is the
// TOML, then (after a "--file--" line) one override per line; every section is read and checked
// as `rlrf run` does before it starts.
#include "fuzz/fuzz_input.h"
#include "pipeline/run_config.h"
#include "util/config.h"
#include "util/strings.h"
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::string> parts = rlrf::fuzz::split_parts(data, size, 2);
  rlrf::fuzz::accepts_or_rejects([&] {
    rlrf::ConfigFile file = rlrf::ConfigFile::parse(parts[0], "fuzz.toml");
    for (std::string_view line : rlrf::split(parts[1], "\n"))
      if (!line.empty()) file.set(line);
    rlrf::RunConfig config = rlrf::RunConfig::from_file(file);
    config.sections_text({"run", "prepare", "model", "prompt", "generate", "sft", "knowledge", "reward", "rerank",
                          "dpo", "eval"});
  });
  return 0;
}
