// GGUF (version 3), the file format of llama.cpp and Ollama: a Llama-family model written so that
// llama.cpp loads it as its "llama" architecture, with the tokenizer embedded; and a reader that
// checks and lists a GGUF file (metadata and tensors), for tests and for comparing files.
//
// File layout (little-endian): "GGUF", u32 version 3, i64 tensor count, i64 key count; each key:
// string name, u32 value type, value (arrays: u32 element type, u64 count, elements; strings:
// u64 length, bytes); each tensor: string name, u32 n_dims, i64 dims (innermost first: a Hugging
// Face weight [out, in] is [in, out] here, same bytes), u32 ggml type (0 F32, 1 F16), u64 offset
// into the data section; the data section starts at the next multiple of general.alignment (32),
// each tensor's data aligned to it.
//
// What llama.cpp expects of a Llama checkpoint (what its own converter writes):
//  - names: token_embd, output_norm, output (absent when the embeddings are tied), and per block
//    blk.N.{attn_norm, attn_q, attn_k, attn_v, attn_output, ffn_norm, ffn_gate, ffn_up, ffn_down};
//  - q and k rows permuted per head from Hugging Face's rotate-half layout (dims i and i + d/2 form
//    a rotary pair) to the interleaved one llama.cpp's "llama" rope uses (dims 2i and 2i + 1):
//    new row 2i + s of a head = old row s * d/2 + i (k with the key-value head count);
//  - f16 files keep one-dimensional tensors (norms, biases) in f32.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "llm/llama.h"

namespace rlrf::llm {

inline constexpr uint32_t kGgufVersion = 3;
inline constexpr uint64_t kGgufAlignment = 32;

struct GgufOptions {
  at::ScalarType dtype = at::kFloat;  // kFloat (general.file_type 0) or kHalf (1)
  std::string name;                   // general.name (default: the output file's stem)
};

// Writes `model` (adapters merged) as a GGUF file of llama.cpp's "llama" architecture, with the
// tokenizer of `tokenizer_dir` (tokenizer.json, tokenizer_config.json) embedded. Refuses, naming
// the setting, what llama.cpp's llama architecture would run differently (sliding windows, Qwen2,
// rope scaling other than linear) and tokenizers it cannot embed.
void save_gguf(LlamaForCausalLM& model, const std::filesystem::path& tokenizer_dir, const std::filesystem::path& path,
               const GgufOptions& options = {});

// Hugging Face rotate-half rows -> llama.cpp's interleaved rows, per head of `head_dim` rows:
// [n_heads * head_dim, ...] (a weight or a bias).
at::Tensor permute_rope_rows(const at::Tensor& w, int64_t n_heads);

// A GGUF file as read back: metadata values as JSON (numbers, strings, bools, arrays) with their
// GGUF type, and tensors as CPU tensors in HF order of dims ([out, in]).
struct GgufValue {
  uint32_t type = 0;        // gguf_type (8 string, 9 array, ...)
  uint32_t array_type = 0;  // element type of an array
  nlohmann::json value;
};
struct GgufTensor {
  std::string name;
  std::vector<int64_t> dims;  // as stored: innermost first
  uint32_t ggml_type = 0;     // 0 F32, 1 F16
  uint64_t offset = 0;
  at::Tensor data;            // fp32 or fp16, shape = reversed dims
};
struct GgufFile {
  uint32_t version = 0;
  std::vector<std::string> keys;  // in file order
  std::map<std::string, GgufValue> metadata;
  std::vector<GgufTensor> tensors;  // in file order
  const GgufTensor* find(const std::string& name) const;
};

// Reads and checks a GGUF file (magic, version, counts, types, offsets and sizes against the file);
// errors name the path and what is wrong. F32 and F16 tensors only.
GgufFile read_gguf(const std::filesystem::path& path);

}  // namespace rlrf::llm
