// Attention for inference on the CPU in one pass (fp32 or bf16, no gradients): a prefill or a
// decoding step. For each batch row, key/value head and query position, the G query heads that
// read that key/value head are scored against the keys, masked, softmaxed and averaged over the
// values in fp32, and the result is rounded once to the model's dtype; under a causal mask the
// slots past a position are not visited at all. ATen takes the same as a batched matmul writing
// every score, a mask add, a softmax and a second batched matmul over B x KV small matrices,
// rounding scores and probabilities to bf16 in between (bench_generate --profile: bmm was 43% of
// the demo shape's operator time, and 44% of a prefill's).
//
//   at::Tensor out = cpu_attention(q * scale, cache.keys[l].narrow(3, 0, S),
//                                  cache.values[l].narrow(2, 0, S), mask, /*causal=*/true);  // [B, T, H, D]
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>

namespace rlrf::llm {

// q [B, T, H, D]: the queries of T positions (the newest T slots of the cache), the softmax scale
// already applied; query head h = kv * G + j reads key/value head kv (G = H / KV). keys_t
// [B, KV, D, S]: the keys transposed, as KVCache stores them (any strides, slots contiguous).
// values [B, KV, S, D] (any strides, head dims contiguous). mask: undefined (every slot counts) or
// [M, T, S] additive (0, or the dtype's lowest for a slot not attended), M = 1 (every row) or B.
// causal: position t sees slots [0, S - T + t] only, and the work past them is skipped (a mask may
// hide more). All of one dtype, fp32 or bf16, on the CPU. Returns [B, T, H, D] in that dtype.
// Records no autograd history.
at::Tensor cpu_attention(const at::Tensor& q, const at::Tensor& keys_t, const at::Tensor& values,
                         const at::Tensor& mask, bool causal);

// The core for one key/value head in fp32 (the single-stream step calls it directly): q [G, D]
// scaled; key row i (head dim i) holds n slots and starts at keys_t + i * key_stride; slot t's
// value starts at values + t * value_stride; mask null or [n] additive; scores holds G * n floats
// (overwritten); out [G, D].
void attend_group_fp32(const float* q, int64_t G, int64_t D, const float* keys_t, int64_t key_stride,
                       const float* values, int64_t value_stride, const float* mask, int64_t n, float* scores,
                       float* out);

}  // namespace rlrf::llm
