// Knowledge vectors for the rerankers: the knowledge texts of every user and item (knowledge/)
// encoded by a text encoder (encode/) through the on-disk cache. These are the frozen inputs of the
// hybrid-expert adapter; reward candidates (LLM responses) are encoded the same way.
#pragma once
#include <ATen/core/Tensor.h>

#include <filesystem>
#include <string>
#include <vector>

#include "data/prepare.h"
#include "rerank/reranker.h"

namespace rlrf {

class TextEncoder;

struct KnowledgeSource {
  std::string user = "profile";    // none | profile | file:PATH (knowledge/knowledge.h user_knowledge)
  std::string item = "metadata";   // none | metadata | file:PATH (a KAR item-knowledge JSON)
  std::string encoder = "glove";   // encode/encoder.h make_encoder
  std::filesystem::path cache_dir; // encode_cached's cache directory (required)
  bool user_history = true;        // user text = history + ". " + knowledge (KAR) or knowledge alone
};

// User vectors [n_users, d] (undefined for user = "none") and item vectors [n_items, d] (undefined
// for item = "none"). Makes its own encoder.
KnowledgeVectors build_knowledge_vectors(const PreparedData& data, const KnowledgeSource& source);
// The same with a given encoder.
KnowledgeVectors build_knowledge_vectors(const PreparedData& data, const KnowledgeSource& source, TextEncoder& encoder);

// Vectors of candidate knowledge texts (e.g. LLM responses) for users[i], encoded exactly like the
// user knowledge the reranker was trained with: [texts.size(), d].
at::Tensor encode_user_knowledge(const PreparedData& data, const std::vector<int32_t>& users,
                                 const std::vector<std::string>& texts, TextEncoder& encoder,
                                 const std::filesystem::path& cache_dir, bool user_history = true);

}  // namespace rlrf
