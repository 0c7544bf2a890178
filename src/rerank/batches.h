// Batches of rerank lists for the reranker: which lists go together (lists of one length, at most
// `batch` of them, shuffled for training) and the tensors of one batch; plus the row chunks in
// which many knowledge vectors go through an adapter tower.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <random>
#include <vector>

#include "data/prepare.h"

namespace rlrf {

// The tensors of lists data.lists[lists[i]] (all of one length L; A item attributes).
struct Batch {
  at::Tensor items;   // [B, L] int64
  at::Tensor attrs;   // [B, L, A] int64
  at::Tensor labels;  // [B, L] float, 1 where the label is positive
  at::Tensor users;   // [B] int64
};
Batch make_batch(const PreparedData& data, const std::vector<int64_t>& lists);

// Groups positions 0..lists.size()-1 of `lists` (indices into data.lists; a list may appear more
// than once) into batches of at most `batch` positions whose lists have one length. Every position
// is in exactly one batch. Without `rng`: by length, then in order. With `rng` (training): positions
// are shuffled within each length, a final batch of one is merged into the batch before it (DLCM's
// batch-norm needs two lists), and the batches are shuffled.
std::vector<std::vector<int64_t>> length_batches(const PreparedData& data, const std::vector<int64_t>& lists, int batch,
                                                 std::mt19937_64* rng = nullptr);

// f over consecutive row ranges of `rows` (at most `chunk` rows each, in order), the outputs
// concatenated along dim 0: bounds the memory of one pass over many vectors. Undefined when `rows`
// has no rows.
at::Tensor in_row_chunks(const at::Tensor& rows, int64_t chunk, const std::function<at::Tensor(const at::Tensor&)>& f);

}  // namespace rlrf
