// Batched generation: many prompts at once, left-padded into one batch with per-sequence positions
// and a key mask (so each sequence gets the same tokens as alone), a preallocated KV cache,
// per-sequence stop tokens and random streams, finished sequences dropped from the batch.
//
//   std::vector<GenerateRequest> reqs = {{prompt_ids, /*sample_index=*/0}, ...};
//   GenerateOptions opt;  opt.max_new_tokens = 128;  opt.sampling.temperature = 0.7;
//   opt.stop_ids = tokenizer.eos_ids();
//   std::vector<Completion> out = generate(model, reqs, opt);
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "llm/llama.h"
#include "llm/sampler.h"

namespace rlrf::llm {

struct GenerateRequest {
  std::vector<int32_t> prompt;    // token ids (BOS included when the model wants it); not empty
  int64_t sample_index = 0;       // distinguishes the samples of one prompt (seeds its stream)
  std::vector<int32_t> stop_ids;  // extra stop tokens of this sequence (beside GenerateOptions's)
};

struct GenerateOptions {
  int64_t max_new_tokens = 128;
  SamplingOptions sampling;
  std::vector<int32_t> stop_ids;  // tokens that end every sequence (kept as its last id)
  int64_t batch_size = 16;        // sequences decoded together
  bool sort_by_length = true;     // batch prompts of similar length (results do not change)
  bool progress = false;          // a Progress line on stderr
  // Intra-op threads while decoding. 0: automatic, one thread when an fp32 step of the batch is
  // below ~100 MFLOP (tiny models: threads cost more in synchronisation than they bring; bf16 goes
  // to oneDNN, which splits them well), otherwise the process's setting. Restored afterwards.
  int threads = 0;
  // Batches of one row (and the last row of a batch) decode through llm/single_stream.h's plain
  // C++ step when the model is fp32 on the CPU without an active adapter (a batch of one with a
  // prompt of at most 32 tokens is prefilled through it too), on `threads` threads or, when 0, the
  // process's setting; false: always ATen.
  bool single_stream = true;
};

struct Completion {
  std::vector<int32_t> ids;       // generated ids (the stop token, if any, last)
  std::vector<float> logprobs;    // log p(ids[i] | prompt, ids[<i]) under the model (raw logits)
  std::string finish_reason;      // "stop" or "length"
};

// Called for every generated token as soon as it is chosen: (request index, token).
using TokenCallback = std::function<void(size_t request, int32_t token)>;

// Runs in eval mode under InferenceMode (the model's train/eval mode is restored). Completions are
// returned in the order of `requests`.
std::vector<Completion> generate(LlamaForCausalLM& model, const std::vector<GenerateRequest>& requests,
                                 const GenerateOptions& options, const TokenCallback& on_token = {});

}  // namespace rlrf::llm
