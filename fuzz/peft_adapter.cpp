// Fuzz target: a PEFT LoRA adapter directory (adapter_config.json, then after a "--file--" line
// adapter_model.safetensors) read and applied to the tests' tiny Llama; an adapter that loads must
// give a forward pass.
#include <ATen/ATen.h>
#include <cstdint>

#include <cstdio>
#include <cstdlib>

#include "fuzz/fuzz_input.h"
#include "llm/checkpoint.h"
#include "llm/lora.h"
#include "util/files.h"

namespace {
rlrf::llm::LlamaForCausalLM model{nullptr};
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  try {
    model = rlrf::llm::load_model(rlrf::source_dir() / "tests" / "data" / "llm" / "tiny-llama31", {});
  } catch (const rlrf::Error& e) {
    std::fprintf(stderr, "peft_adapter: %s\n", e.what());
    std::exit(2);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::filesystem::path dir = rlrf::fuzz::scratch_dir();
  auto parts = rlrf::fuzz::split_parts(data, size, 2);
  rlrf::fuzz::write_bytes(dir / "adapter_config.json", parts[0]);
  rlrf::fuzz::write_bytes(dir / "adapter_model.safetensors", parts[1]);
  rlrf::fuzz::accepts_or_rejects([&] { rlrf::llm::read_lora_config(dir); });
  try {
    rlrf::llm::load_lora(model, dir);
  } catch (const rlrf::Error&) {
    return 0;
  }
  at::NoGradGuard no_grad;
  model->forward(at::arange(4, at::kLong).view({1, 4}));  // must not throw
  return 0;
}
