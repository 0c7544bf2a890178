// Model directories in the Hugging Face layout: config.json + model.safetensors (or shards with
// model.safetensors.index.json) -> a LlamaForCausalLM on the chosen device/dtype; and the reverse,
// a full fine-tune saved so that this loader (and transformers/vLLM) read it back.
#pragma once
#include <cstdint>
#include <filesystem>

#include "llm/llama.h"
#include "llm/model_config.h"
#include "llm/safetensors.h"

namespace rlrf::llm {

// Builds the model of `dir`'s config.json and fills every parameter by its HF name from the
// checkpoint's safetensors. Errors name the file and tensor: a missing tensor, a wrong shape
// ("tensor 'X' has wrong shape; expected [..], got [..]"), a corrupt file. Tensors the model does
// not use (e.g. rotary inv_freq buffers) are ignored with a debug log line.
LlamaForCausalLM load_model(const std::filesystem::path& dir, const ModelOptions& options);

// Fills an existing model's parameters from `store` (used by load_model).
void load_weights(LlamaForCausalLM& model, const TensorStore& store);

struct SaveOptions {
  at::ScalarType dtype = at::kBFloat16;          // stored dtype (the model's is kept in memory)
  uint64_t max_shard_bytes = 4ull << 30;          // larger checkpoints are sharded with an index
  std::filesystem::path tokenizer_from;           // copy tokenizer*.json, special_tokens_map.json,
                                                  // generation_config.json from here (if set)
};

// Saves a full model (LoRA adapters must be merged first) in the HF layout: config.json (torch_dtype
// set), model.safetensors or shards + index, and the tokenizer files. Tied models store
// model.embed_tokens.weight only.
void save_model(LlamaForCausalLM& model, const std::filesystem::path& dir, const SaveOptions& options);

}  // namespace rlrf::llm
