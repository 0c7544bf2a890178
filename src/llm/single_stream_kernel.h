// The single-stream decoding step's arithmetic, in plain C++ with no libtorch: the model's fp32
// weights by pointer, the KV cache rows by pointer, OpenMP threads (see llm/single_stream.h, which
// binds it to LlamaForCausalLM and KVCache). Its own file because it compiles with -fopenmp, which
// the torch precompiled header does not allow.
#pragma once
#include <cstdint>
#include <vector>

#include "llm/model_config.h"

namespace rlrf::llm {

// Pointers into one model's fp32 parameters (the model must outlive it and keep its storage), and
// the scratch buffers of a step.
struct SingleStreamModel {
  struct Layer {
    const float* input_norm = nullptr;  // [hidden]
    const float* post_norm = nullptr;   // [hidden]
    const float *q = nullptr, *k = nullptr, *v = nullptr, *o = nullptr;  // [out, in] row-major
    const float *q_bias = nullptr, *k_bias = nullptr, *v_bias = nullptr, *o_bias = nullptr;
    const float *gate = nullptr, *up = nullptr, *down = nullptr;
    const float *gate_bias = nullptr, *up_bias = nullptr, *down_bias = nullptr;
  };
  ModelConfig config;
  const float* embed = nullptr;       // [vocab, hidden]
  const float* final_norm = nullptr;  // [hidden]
  const float* lm_head = nullptr;     // [vocab, hidden] (the embedding when tied)
  std::vector<Layer> layers;
  std::vector<float> inv_freq;  // [head_dim / 2], as rope_inv_freq
  // Scratch: hidden state, normed input and scores (one per thread), q/k/v, attention output, MLP.
  std::vector<float> x, xn, q, k, v, attn, scores, gate, up;
  std::vector<float*> key_rows, value_rows;  // this step's cache rows per layer
};

// One token through the model. keys[l] / values[l]: layer l's cache of this sequence, keys
// transposed [kv_heads, head_dim, capacity], values [kv_heads, capacity, head_dim]; the new key
// and value go to `slot`, attention covers slots [first, slot]. Writes logits [vocab].
void single_stream_kernel(SingleStreamModel& m, int32_t token, int64_t position, float* const* keys,
                          float* const* values, int64_t capacity, int64_t slot, int64_t first, float* logits,
                          int threads);

}  // namespace rlrf::llm
