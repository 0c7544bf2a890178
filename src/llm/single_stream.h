// Decoding one sequence on the CPU in plain C++: one token through an fp32 Llama-family model
// with no tensor dispatch. A decoding step of a small model is a hundred tiny operations; through
// ATen each costs microseconds of dispatch, allocation and threading, which is most of the step
// (tinystories-656k: ~0.5 ms per token through ATen, 1.3 MFLOP of work). Here the step reads the
// model's own weights and the KV cache's own storage and does the same math as LlamaForCausalLM
// (RMSNorm, HF rotary embedding, grouped-query attention, sliding window, SwiGLU, tied head) in
// one pass, with matrix-vector products vectorised for the CPU it runs on.
//
// generate() uses it for every decoding step of a batch that holds one row, when the model
// qualifies (single_stream_model says why not otherwise); the prefill stays on ATen. Results equal
// the ATen path's up to fp32 summation order (tests/llm/single_stream_test.cpp).
#pragma once
#include <cstdint>
#include <optional>
#include <string>

#include "llm/kv_cache.h"
#include "llm/single_stream_kernel.h"

namespace rlrf::llm {

class LlamaForCausalLMImpl;

// The single-stream view of `model`, or nullopt with the reason in `why` (not fp32, not on the
// CPU, an active LoRA adapter, a parameter that is not contiguous).
std::optional<SingleStreamModel> single_stream_model(LlamaForCausalLMImpl& model, std::string* why = nullptr);

// One decoding step of row `row` of `cache`: `token` at position `position` goes into slot
// cache.length (keys and values of every layer), attends to slots [first_slot, cache.length]
// (first_slot skips the row's left padding; a sliding window narrows it further), and the fp32
// logits [vocab] are written to `logits`. The caller advances cache.length once every row of the
// batch is done (a one-row batch: after this call). The cache must be fp32, contiguous, on the CPU.
// `threads` > 1 splits every matrix's rows and the key/value heads among that many OpenMP threads
// (libtorch's own pool), with a barrier between the phases of a layer (gcc builds; others run on one).
void single_stream_step(SingleStreamModel& m, int32_t token, int64_t position, KVCache& cache, int64_t row,
                        int64_t first_slot, float* logits, int threads = 1);

}  // namespace rlrf::llm
