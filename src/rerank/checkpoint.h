// Reranker checkpoints: one file holding the model shape, the training summary and every parameter
// and buffer, so a model can be rebuilt and loaded without the config that trained it.
//
// Layout (little-endian): magic "RLRFRRK1" (8 bytes), uint32 version (= 1), uint64 header length and
// the header as JSON ({"shape": {...}, "best_epoch", "best_valid_map5", "history": [...]}), uint32
// tensor count, then per tensor: uint32 name length, the name (the module's parameter/buffer name,
// e.g. "scorer.gru.weight_ih_l0"), uint8 dtype (0 float32, 1 int64), uint32 ndim, int64 dims[ndim],
// the raw contiguous data. Loading checks the magic, the version and every tensor's name and shape.
#pragma once
#include <filesystem>
#include <string>

#include "rerank/reranker.h"

namespace rlrf {

void save_reranker(const Reranker& r, const std::filesystem::path& path);
// device: "cpu", "cuda", "auto", ... (util/runtime.h resolve_device).
Reranker load_reranker(const std::filesystem::path& path, const std::string& device = "cpu");

}  // namespace rlrf
