// Preallocated key/value cache of incremental decoding.
#include "llm/kv_cache.h"

#include <ATen/ATen.h>
#include <cstdint>

namespace rlrf::llm {

KVCache KVCache::allocate(const ModelConfig& config, int64_t batch, int64_t capacity, const at::TensorOptions& options) {
  KVCache c;
  for (int64_t l = 0; l < config.num_hidden_layers; ++l) {
    c.keys.push_back(at::empty({batch, config.num_key_value_heads, config.head_dim, capacity}, options));
    c.values.push_back(at::empty({batch, config.num_key_value_heads, capacity, config.head_dim}, options));
  }
  return c;
}

void KVCache::keep_rows(const at::Tensor& rows) {
  for (auto& k : keys) k = k.index_select(0, rows);
  for (auto& v : values) v = v.index_select(0, rows);
}

}  // namespace rlrf::llm
