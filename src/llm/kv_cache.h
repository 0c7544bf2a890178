// The key/value cache of incremental decoding: per layer, preallocated tensors filled slot by slot.
// Keys are stored transposed ([.., head_dim, capacity]) so scores are q @ keys without a transpose
// copy; values as [.., capacity, head_dim]. All rows share the slot index (prompts are
// left-padded), so one decoding step writes one slot for the whole batch and attends to slots
// [0, length).
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/core/TensorOptions.h>

#include <cstdint>
#include <vector>

#include "llm/model_config.h"

namespace rlrf::llm {

struct KVCache {
  std::vector<at::Tensor> keys;    // per layer [B, n_kv_heads, head_dim, capacity] (transposed)
  std::vector<at::Tensor> values;  // per layer [B, n_kv_heads, capacity, head_dim]
  int64_t length = 0;              // slots filled so far (the same for every row)

  // Allocates (uninitialised) for `batch` rows and `capacity` slots in the model's dtype/device.
  static KVCache allocate(const ModelConfig& config, int64_t batch, int64_t capacity,
                          const at::TensorOptions& options);

  int64_t batch() const { return keys.empty() ? 0 : keys[0].size(0); }
  int64_t capacity() const { return values.empty() ? 0 : values[0].size(2); }
  // Keeps the rows `rows` ([B'] int64, in that order): finished sequences leave the batch.
  void keep_rows(const at::Tensor& rows);
};

}  // namespace rlrf::llm
