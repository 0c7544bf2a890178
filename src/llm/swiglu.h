// The Llama MLP's gate, silu(gate) * up, in one pass for CPU inference. Through ATen's operators a
// prefill's gate is two passes over [rows, intermediate] (silu, then the product), each rounded to
// the compute dtype; at the demo's shape (64 prompts of 304 tokens) they were a tenth of a bf16
// generation. Here each element is read once, computed in fp32 and rounded once.
#pragma once
#include <ATen/core/Tensor.h>
#include <cstdint>

namespace rlrf::llm {

// Whether swiglu takes y: a CPU tensor of fp32 or bf16 whose last dimension is contiguous, with
// gradients off (the model uses ATen's operators otherwise).
bool swiglu_applies(const at::Tensor& y);

// y [..., 2 I] (the gate's I columns, then up's) -> [..., I] = silu(gate) * up, in y's dtype.
at::Tensor swiglu(const at::Tensor& y, int64_t intermediate);

}  // namespace rlrf::llm
