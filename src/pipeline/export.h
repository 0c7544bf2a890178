// Policies that load anywhere: a run's round-r policy (or any model directory) written as
//  hf   - one merged checkpoint in Hugging Face layout (config.json, model.safetensors, tokenizer
//         files) for transformers, vLLM, SGLang;
//  peft - one PEFT LoRA adapter relative to the base its adapter_config.json names, with the LoRA
//         SFT and every LoRA round folded in (llm::fold_lora_adapters). When SFT was a full
//         fine-tune its delta is not low-rank: the SFT model is then written beside the adapter, in
//         Hugging Face layout (base/), and named as its base;
//  gguf - one GGUF file for llama.cpp and Ollama (llm/gguf.h), f32 or f16.
// Round r's stored adapter is a delta on the round r-1 policy; round_adapter_base names that model.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "pipeline/run_config.h"

namespace rlrf {

enum class ExportFormat { kHf, kPeft, kGguf };
// "hf" | "peft" | "gguf"; an Error naming the value otherwise.
ExportFormat parse_export_format(const std::string& name);

struct ExportOptions {
  ExportFormat format = ExportFormat::kHf;
  std::string dtype = "fp32";  // hf: fp32 | bf16 | fp16; peft: fp32 | bf16; gguf: fp32 | fp16
  std::string name;            // gguf: general.name (default: the file's stem)
};

struct ExportResult {
  std::filesystem::path output;       // the directory (hf, peft) or the file (gguf) written
  int round = -1;                     // the run's round written
  std::filesystem::path base;         // peft: the base model the adapter is relative to
  int64_t rank = 0;                   // peft: the folded adapter's rank
  std::vector<std::filesystem::path> adapters;  // the adapters merged or folded, in order
};

// Round r's policy of the run in `run_dir` (its config.toml says how the policy was built); r < 0:
// the run's last round ([run] rounds).
// `output`: a directory (hf, peft) or, for gguf, a file ending in .gguf or a directory that gets
// round<r>-<f32|f16>.gguf. Errors name the missing file when the round has not been trained.
ExportResult export_run_policy(const std::filesystem::path& run_dir, int round, const std::filesystem::path& output,
                               const ExportOptions& options);

// A model directory in Hugging Face layout as hf (a copy in another dtype) or gguf; peft is refused
// (a plain model has no adapter). gguf into a directory gets <model dir name>-<f32|f16>.gguf.
ExportResult export_model_dir(const std::filesystem::path& model_dir, const std::filesystem::path& output,
                              const ExportOptions& options);

// The model round r's adapter (trained on the round r-1 policy) is relative to: round r-1's chain
// base when that chain has no adapters (a model on disk), otherwise <run>/models/round<r-1>/merged
// (models/sft/merged for r = 1), which `rlrf export --run <run> --round <r-1> --format hf --output`
// that path writes. `command` gets that command ("" when the base is on disk already).
std::string round_adapter_base(const RunConfig& config, const std::filesystem::path& run_dir, int round,
                               std::string* command = nullptr);

// README.md of round r's adapter directory: what it is relative to and how to get the policy.
void write_round_adapter_readme(const RunConfig& config, const std::filesystem::path& run_dir, int round);

}  // namespace rlrf
