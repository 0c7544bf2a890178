// Choosing the next token: greedy (temperature 0) or sampling with temperature, top-k and top-p
// (HF's order: temperature, then top-k, then top-p on the renormalised rest). Every sequence draws
// from its own random stream, seeded from (seed, prompt ids, sample index), so a sequence's text
// depends on its seed and prompt, not on the batch it ran in.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace rlrf::llm {

struct SamplingOptions {
  double temperature = 1.0;  // <= 0: greedy (argmax)
  int64_t top_k = 0;         // 0: off
  double top_p = 1.0;        // >= 1: off
  uint64_t seed = 0;
  bool greedy() const { return temperature <= 0; }
};

// A small deterministic random stream (splitmix64): the same seed gives the same draws on every
// platform and build.
class Rng {
 public:
  explicit Rng(uint64_t seed = 0) : state_(seed) {}
  uint64_t next_u64();
  double uniform();  // [0, 1) with 53 random bits

 private:
  uint64_t state_;
};

// The seed of one sequence: mixes the run's seed, the prompt ids and the sample index.
uint64_t sequence_seed(uint64_t seed, const std::vector<int32_t>& prompt, int64_t sample_index);

// Picks one token per row. logits [B, V] fp32 (any device): the model's raw next-token logits.
// rngs[b] is row b's stream (unused when greedy). Writes tokens[b] and logprobs[b], the log-softmax
// of the raw logits at the chosen token (the model's own probability, before temperature/top-k/top-p).
void sample_tokens(const at::Tensor& logits, const SamplingOptions& options, std::vector<Rng>& rngs,
                   std::vector<int32_t>& tokens, std::vector<float>& logprobs);

}  // namespace rlrf::llm
