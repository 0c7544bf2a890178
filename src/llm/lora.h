// LoRA on a LlamaForCausalLM: adapters on chosen linear layers (PEFT's target_modules matching),
// on/off (the DPO reference model = adapters off), merging into the base weights, the trainable
// parameter list, and save/load in PEFT's layout so that PEFT and vLLM load the adapters:
//   adapter_config.json        {"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": [..], ...}
//   adapter_model.safetensors  base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight [r, in]
//                              base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight [out, r]
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "llm/llama.h"

namespace rlrf {
class ConfigSection;
}

namespace rlrf::llm {

struct LoraConfig {
  int64_t r = 8;
  double alpha = 16.0;
  double dropout = 0.0;  // PEFT's and TRL's default
  bool use_rslora = false;
  // Module names as PEFT matches them: a layer is adapted when its path equals an entry or ends
  // with "." + entry ("q_proj" matches "model.layers.3.self_attn.q_proj"). "all-linear" adapts
  // every linear layer but lm_head. `target_regex`, when set, replaces the list: the full module
  // path must match it (PEFT's string form of target_modules).
  std::vector<std::string> target_modules = {"q_proj", "k_proj", "v_proj", "o_proj"};
  std::string target_regex;
  std::string base_model_name_or_path;  // written to adapter_config.json
  uint64_t seed = 0;                    // A's initialisation (each layer gets its own stream)

  // Reads keys r, alpha, dropout, use_rslora, target_modules, seed of a config section.
  void read(const ConfigSection& section);
};

// Adds adapters to the matching linear layers and freezes every base parameter
// (requires_grad = false); returns the adapted module paths. Error when nothing matches.
std::vector<std::string> apply_lora(LlamaForCausalLM& model, const LoraConfig& config);

bool has_lora(LlamaForCausalLM& model);
void set_lora_enabled(LlamaForCausalLM& model, bool enabled);
// Folds every adapter into its base weight and removes the adapters (PEFT merge_and_unload).
void merge_lora(LlamaForCausalLM& model);
// A copy of `model` (adapters, if any, merged first is the caller's business) with another compute
// dtype or device; parameters are copied by name. Converting an fp32 model to bf16 rounds each
// weight once.
LlamaForCausalLM convert_model(LlamaForCausalLM& model, const ModelOptions& options);

// The policy that a chain of fine-tunes produced, as generation and DPO load it: `base` (a model
// directory) read in fp32, each adapter directory in `adapters` applied and merged in fp32, in
// order (W + s B A exact to fp32 rounding), and only then converted to `options`'s dtype. Merging
// into bf16 weights instead rounds away every delta smaller than half a bf16 step (|w| ~ 0.3: ~1e-3,
// the size of a whole DPO update); tests/llm/lora_test.cpp measures both.
LlamaForCausalLM load_merged_policy(const std::filesystem::path& base, const std::vector<std::filesystem::path>& adapters,
                                    const ModelOptions& options);

// Full fine-tuning: every parameter trainable (requires_grad = true). Refused with adapters.
void enable_full_finetune(LlamaForCausalLM& model);

// Parameters the optimizer should update: the LoRA A/B weights when adapters exist, otherwise
// every parameter that requires grad. Named by their HF/PEFT module path.
std::vector<std::pair<std::string, at::Tensor>> named_trainable_parameters(LlamaForCausalLM& model);
std::vector<at::Tensor> trainable_parameters(LlamaForCausalLM& model);

// What adapter_config.json's target_modules lists for the model's adapters: exactly the adapted
// layers as PEFT matches them: short names like "q_proj" (sorted) when every layer of each name is
// adapted, else the full module paths of the adapted layers (in the model's order).
std::vector<std::string> adapted_module_names(LlamaForCausalLM& model);

// Writes adapter_config.json and adapter_model.safetensors (fp32, or `dtype`) into `dir`.
void save_lora(LlamaForCausalLM& model, const LoraConfig& config, const std::filesystem::path& dir,
               at::ScalarType dtype = at::kFloat);
// Reads a PEFT LoRA adapter directory, applies it to `model` (replacing any adapters) and fills
// the weights. Refuses what it cannot reproduce (DoRA, bias other than "none", fan_in_fan_out,
// rank/alpha patterns, modules_to_save) by name. Returns the adapter's config.
LoraConfig load_lora(LlamaForCausalLM& model, const std::filesystem::path& dir);

// The PEFT adapter_config.json of `dir` (the checks of load_lora), without loading weights.
LoraConfig read_lora_config(const std::filesystem::path& dir);

// A chain of adapters, applied to one base in order (as load_merged_policy merges them), folded
// into one PEFT adapter of that base: sum_i s_i B_i A_i is exactly one LoRA of rank r = sum_i r_i,
//   A = [A_1; A_2; ...] (rows), B = [s_1 B_1, s_2 B_2, ...] (columns), lora_alpha = r (scale 1),
// with zero blocks where an adapter leaves a module alone. Written to `out_dir` (adapter_config.json
// naming `base_model_name_or_path`, adapter_model.safetensors in `dtype`). The only rounding is
// s_i B_i in fp32; applying it computes W x + B (A x), the chain W + s_1 B_1 A_1 + ... .
struct FoldedLora {
  int64_t r = 0;
  std::vector<std::string> modules;  // module paths adapted
};
FoldedLora fold_lora_adapters(const std::vector<std::filesystem::path>& adapters, const std::filesystem::path& out_dir,
                              const std::string& base_model_name_or_path, at::ScalarType dtype = at::kFloat);

// "base_model.model." + module path: PEFT's key prefix.
inline constexpr const char* kPeftPrefix = "base_model.model.";

}  // namespace rlrf::llm
