// The Llama-family decoder in libtorch, with the Hugging Face math and parameter names
// ("model.layers.0.self_attn.q_proj.weight", ...), so a checkpoint loads by name: RMSNorm in fp32,
// rotary embeddings in the HF convention (rotate_half, optional llama3/linear scaling), grouped-query
// attention, SwiGLU MLP, optional tied lm_head, fp32 or bf16 compute on CPU or CUDA.
//
// Sequences in a batch carry their own positions and a key-validity mask, so left padding (used by
// generation and log-prob scoring) gives the same results as running each sequence alone.
//
// Speed: q/k/v (and gate/up) weights are views into one buffer per layer, so forward passes
// without grad and without active LoRA run each group as one matmul (with grad, e.g. DPO, the
// layers run one by one so LoRA and autograd see them). Copying into the parameters (load,
// optimizer steps, merge) keeps the buffers current; replacing a parameter's storage (Module::to)
// only turns the fused path off. Rotary cos/sin come from a table grown on demand.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/core/TensorOptions.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <string>
#include <vector>

#include "llm/kv_cache.h"
#include "llm/linear.h"
#include "llm/model_config.h"

namespace rlrf::llm {

// Device and compute dtype, chosen once for a model.
struct ModelOptions {
  std::string device = "cpu";            // "cpu", "cuda", "cuda:N" (resolve "auto" before)
  at::ScalarType dtype = at::kFloat;     // kFloat or kBFloat16 (kHalf; kDouble for gradient checks)
  at::TensorOptions tensor_options() const;
};

// at::kFloat from "fp32"/"float32", at::kBFloat16 from "bf16"/"bfloat16", kHalf from "fp16";
// Error naming the value otherwise.
at::ScalarType parse_dtype(const std::string& name);

class LlamaForCausalLMImpl;
// Intra-op threads for training `model` on CPU in `compute` precision when none are asked for: one
// for small models computing in fp32 (OpenBLAS and libtorch's threads wait for each other after
// every small op: tinystories-656k's demo DPO round took 22.2 s on one thread, 59.6 s on two), 0
// (leave as set) otherwise: bf16 compute goes to oneDNN, which splits its work well (the same round
// 16.9 s on two threads, 21.8 s on one; the demo's SFT 25.9 s against 36.5 s).
int training_threads(const LlamaForCausalLMImpl& model, at::ScalarType compute);
std::string dtype_name(at::ScalarType dtype);  // "fp32", "bf16", "fp16"

// What all layers of one forward share: rotary tables and the attention mask.
struct ForwardContext {
  at::Tensor cos;          // [B, T, 1, head_dim] compute dtype
  at::Tensor sin_signed;   // [B, T, 1, head_dim] sin with the first half negated (rotate_half)
  at::Tensor mask;         // [B, 1, 1, T, S] additive (0 or lowest), or undefined: attend to all
  KVCache* cache = nullptr;  // when set: new keys go to slots [cache->length, +T), attend to [0, +T)
  // Batch rows whose attention scores are computed together (0: all). A prefill of many long
  // prompts without gradients takes its scores a few rows at a time so they stay in cache.
  int64_t attention_rows = 0;
  // bf16 CPU attention without gradients takes its mask add and softmax in one pass
  // (attention_softmax.h); false: ATen's operators.
  bool one_pass_softmax = true;
  // Inference on the CPU without gradients, fp32 or bf16, keys and values in the cache: scores,
  // mask, softmax and weighted values in one pass (cpu_attention.h); false: ATen's operators.
  bool fused_attention = true;
  // Inference on the CPU without gradients, fp32 or bf16: the MLP's silu(gate) * up in one pass
  // (swiglu.h); false: ATen's operators.
  bool one_pass_swiglu = true;
  // The mask is causal by slot (query t sees slots up to past + t), so work past them may be skipped.
  bool causal = true;
};

class RMSNormImpl : public torch::nn::Module {
 public:
  RMSNormImpl(int64_t dim, double eps, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x);  // [..., dim] -> [..., dim]; statistics in fp32
  at::Tensor weight;                        // [dim]
  double eps;
};
TORCH_MODULE(RMSNorm);

class EmbeddingImpl : public torch::nn::Module {
 public:
  EmbeddingImpl(int64_t num, int64_t dim, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& ids);  // [B, T] int64 -> [B, T, dim]
  at::Tensor weight;                          // [num, dim]
};
TORCH_MODULE(Embedding);

class LlamaAttentionImpl : public torch::nn::Module {
 public:
  LlamaAttentionImpl(const ModelConfig& c, const at::TensorOptions& options);
  // x [B, T, hidden] -> [B, T, hidden]; `layer` indexes the cache.
  at::Tensor forward(const at::Tensor& x, const ForwardContext& ctx, int64_t layer);
  Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};

 private:
  // q/k/v weights (and biases) are views into one buffer, so inference without grad and without
  // active LoRA runs one matmul for all three.
  bool can_fuse() const;
  int64_t n_heads_, n_kv_heads_, head_dim_;
  at::Tensor qkv_weight_;  // [(H + 2 KV) * D, hidden]
  at::Tensor qkv_bias_;    // [(H + 2 KV) * D] or undefined
};
TORCH_MODULE(LlamaAttention);

class LlamaMLPImpl : public torch::nn::Module {
 public:
  LlamaMLPImpl(const ModelConfig& c, const at::TensorOptions& options);
  // [B, T, hidden] -> down(silu(gate(x)) * up(x)); one_pass: silu(gate) * up through swiglu.h where
  // it applies (CPU inference, fp32 or bf16).
  at::Tensor forward(const at::Tensor& x, bool one_pass = true);
  Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};

 private:
  bool can_fuse() const;
  int64_t intermediate_;
  at::Tensor gate_up_weight_;  // [2 * intermediate, hidden]: gate_proj then up_proj (views)
  at::Tensor gate_up_bias_;
};
TORCH_MODULE(LlamaMLP);

class LlamaDecoderLayerImpl : public torch::nn::Module {
 public:
  LlamaDecoderLayerImpl(const ModelConfig& c, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x, const ForwardContext& ctx, int64_t layer);  // [B, T, hidden]
  LlamaAttention self_attn{nullptr};
  LlamaMLP mlp{nullptr};
  RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
};
TORCH_MODULE(LlamaDecoderLayer);

// "model.*": embeddings, decoder layers, final norm.
class LlamaModelImpl : public torch::nn::Module {
 public:
  LlamaModelImpl(const ModelConfig& c, const at::TensorOptions& options);
  Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  std::vector<LlamaDecoderLayer> layer_list;  // typed view of `layers`
  RMSNorm norm{nullptr};
};
TORCH_MODULE(LlamaModel);

class LlamaForCausalLMImpl : public torch::nn::Module {
 public:
  // Allocates uninitialised parameters (load_model fills them from a checkpoint).
  LlamaForCausalLMImpl(const ModelConfig& config, const ModelOptions& options);

  // ids [B, T] int64 (any device); positions [B, T] int64 (undefined: 0..T-1, or continuing the
  // cache); key_valid [B, S] bool over all key slots S = past + T (undefined: all valid); cache:
  // when given, keys/values are appended at cache->length and cache->length grows by T.
  // attend [B, T, S] bool (undefined: causal by slot, and key_valid): which keys each query sees,
  // for packed sequences whose parts must not see each other (llm/logprob.h's pair_logprobs).
  // Returns the final hidden states [B, T, hidden] (after the last RMSNorm), compute dtype.
  at::Tensor hidden_states(const at::Tensor& ids, const at::Tensor& positions = {},
                           const at::Tensor& key_valid = {}, KVCache* cache = nullptr, const at::Tensor& attend = {});
  // hidden [..., hidden] -> logits [..., vocab] in fp32 (fp64 for fp64 models).
  at::Tensor logits(const at::Tensor& hidden);
  // ids [B, T] -> logits [B, T, vocab] fp32 (see hidden_states for the other arguments).
  at::Tensor forward(const at::Tensor& ids, const at::Tensor& positions = {}, const at::Tensor& key_valid = {},
                     KVCache* cache = nullptr);

  // Linear layers by their module path ("model.layers.0.self_attn.q_proj", "lm_head").
  std::vector<std::pair<std::string, Linear>> named_linears();

  // CPU forwards of several tokens without gradients (prefill) in bf16 or fp16 compute attention
  // a group of batch rows at a time, the group's fp32 scores at most this many bytes (0: all rows
  // at once), so they stay in cache. The results do not depend on it: the same products and softmax
  // rows, grouped differently (Llama.PrefillAttentionInRowGroupsEqualsAllRowsAtOnce).
  static constexpr int64_t kDefaultAttentionChunkBytes = int64_t{4} << 20;
  void set_attention_chunk_bytes(int64_t bytes) { attention_chunk_bytes_ = bytes; }
  // bf16 CPU attention without gradients: the mask add and softmax in one pass (default), or
  // through ATen's operators (Llama.OnePassSoftmaxEqualsATensOperators compares the two).
  void set_one_pass_softmax(bool on) { one_pass_softmax_ = on; }
  // CPU inference without gradients in fp32 or bf16 (prefills and decoding steps): attention in
  // one pass (default), or through ATen's operators (Llama.FusedAttentionEqualsATensOperators
  // compares the two).
  void set_fused_attention(bool on) { fused_attention_ = on; }
  // CPU inference without gradients in fp32 or bf16: the MLP's silu(gate) * up in one pass
  // (default), or through ATen's operators (Llama.OnePassSwigluEqualsATensOperators compares them).
  void set_one_pass_swiglu(bool on) { one_pass_swiglu_ = on; }

  const ModelConfig& config() const { return config_; }
  const ModelOptions& options() const { return options_; }
  at::Device device() const;
  at::ScalarType dtype() const { return options_.dtype; }
  // The lm_head weight [vocab, hidden] (the embedding matrix when tied).
  at::Tensor lm_head_weight() const;

  LlamaModel model{nullptr};
  Linear lm_head{nullptr};  // null when tie_word_embeddings

 private:
  ForwardContext make_context(const at::Tensor& positions, const at::Tensor& key_valid, int64_t batch, int64_t t,
                              KVCache* cache, const at::Tensor& attend);
  void ensure_rope_table(int64_t n);
  ModelConfig config_;
  ModelOptions options_;
  int64_t attention_chunk_bytes_ = kDefaultAttentionChunkBytes;
  bool one_pass_softmax_ = true;
  bool fused_attention_ = true;
  bool one_pass_swiglu_ = true;
  at::Tensor inv_freq_;  // [head_dim / 2] fp32, on the model's device
  at::Tensor rope_cos_;  // [n, head_dim] compute dtype: cos of positions 0..n-1 (grown on demand)
  at::Tensor rope_sin_;  // [n, head_dim] sin with the first half negated
};
TORCH_MODULE(LlamaForCausalLM);

// The rotary inverse frequencies of a config (HF's default, linear or llama3 rope init), fp32.
at::Tensor rope_inv_freq(const ModelConfig& config);

}  // namespace rlrf::llm
