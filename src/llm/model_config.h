// A checkpoint's config.json for the Llama family: Llama (1-3.x), Mistral and Qwen2 share one
// decoder (RMSNorm, rotary embeddings, grouped-query attention, SwiGLU); they differ in the few
// fields kept here. Other architectures are refused by name.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace rlrf::llm {

// rope_scaling of config.json. "none" (null or "default"), "linear" or "llama3".
struct RopeScaling {
  std::string type = "none";
  double factor = 1.0;
  double low_freq_factor = 1.0;   // llama3
  double high_freq_factor = 4.0;  // llama3
  int64_t original_max_position_embeddings = 8192;  // llama3
};

struct ModelConfig {
  std::string architecture = "LlamaForCausalLM";  // architectures[0]
  std::string model_type = "llama";               // llama | mistral | qwen2
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;  // = num_attention_heads when absent
  int64_t head_dim = 0;             // = hidden_size / num_attention_heads when absent
  int64_t intermediate_size = 0;
  int64_t max_position_embeddings = 2048;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  double rms_norm_eps = 1e-6;
  bool tie_word_embeddings = false;
  bool qkv_bias = false;  // q/k/v projections have biases (Qwen2; Llama with attention_bias)
  bool o_bias = false;    // o_proj has a bias (Llama with attention_bias)
  bool mlp_bias = false;
  int64_t sliding_window = 0;  // > 0: attend to at most this many previous positions (Mistral)
  int32_t bos_token_id = -1;
  std::vector<int32_t> eos_token_ids;
  std::string torch_dtype = "float32";
  std::string source_json;  // the parsed text; to_json() keeps its other fields

  // Reads config.json (a file or the directory holding it). Errors name the file and key.
  static ModelConfig load(const std::filesystem::path& path);
  // Parses config.json text; `where` names it in errors.
  static ModelConfig parse(const std::string& text, const std::string& where);
  // config.json text in the Hugging Face layout (loads back to the same config).
  std::string to_json() const;

  int64_t q_dim() const { return num_attention_heads * head_dim; }
  int64_t kv_dim() const { return num_key_value_heads * head_dim; }
  // Parameter count (lm_head counted once when tied).
  int64_t num_parameters() const;
};

}  // namespace rlrf::llm
