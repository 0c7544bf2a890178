// One decoding step's attention on the CPU in one pass (fp32 or bf16 caches, no gradients). For
// each batch row and key/value head, the G query heads that read that head are scored against the
// cached keys, masked, softmaxed and averaged over the cached values in fp32, and the result is
// rounded once to the cache's dtype. ATen takes the same step as a batched matmul, a mask add, a
// softmax and a second batched matmul over B x KV tiny matrices, rounding scores and probabilities
// to bf16 in between (bench_generate --profile: bmm was 43% of the demo shape's time, most of it
// in the decoding steps).
//
//   at::Tensor out = decode_attention(q_scaled, cache.keys[l].narrow(3, 0, S),
//                                     cache.values[l].narrow(2, 0, S), mask);  // [B, KV, G, D]
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>

namespace rlrf::llm {

// q [B, KV, G, D]: the step's queries (query head kv * G + j reads key/value head kv), the softmax
// scale already applied. keys_t [B, KV, D, S]: the keys transposed, as KVCache stores them (any
// strides, slots contiguous). values [B, KV, S, D] (any strides, head dims contiguous). mask:
// undefined (every slot counts) or [M, S] additive (0, or the dtype's lowest for a slot not
// attended), M = 1 (every row) or B. All of one dtype, fp32 or bf16, on the CPU. Returns
// [B, KV, G, D] in that dtype. Records no autograd history.
at::Tensor decode_attention(const at::Tensor& q, const at::Tensor& keys_t, const at::Tensor& values,
                            const at::Tensor& mask);

// The core for one key/value head in fp32 (the single-stream step calls it directly): q [G, D]
// scaled; key row i (head dim i) holds n slots and starts at keys_t + i * key_stride; slot t's
// value starts at values + t * value_stride; mask null or [n] additive; scores holds G * n floats
// (overwritten); out [G, D].
void attend_group_fp32(const float* q, int64_t G, int64_t D, const float* keys_t, int64_t key_stride,
                       const float* values, int64_t value_stride, const float* mask, int64_t n, float* scores,
                       float* out);

}  // namespace rlrf::llm
