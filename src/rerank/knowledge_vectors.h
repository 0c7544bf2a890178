// Knowledge vectors for the rerankers: the knowledge texts of every user and item (knowledge/)
// encoded by a text encoder (encode/) through the on-disk cache. These are the frozen inputs of the
// hybrid-expert adapter; reward candidates (LLM responses) are encoded the same way.
#pragma once
#include <ATen/core/Tensor.h>
#include <cstdint>

#include <filesystem>
#include <string>
#include <vector>

#include "data/prepare.h"
#include "rerank/reranker.h"

namespace rlrf {

class ConfigSection;
class TextEncoder;

struct KnowledgeSource {
  std::string user = "profile";    // none | profile | file:PATH (knowledge/knowledge.h user_knowledge)
  std::string item = "metadata";   // none | metadata | file:PATH (a KAR item-knowledge JSON)
  std::string encoder = "glove";   // encode/encoder.h make_encoder
  std::filesystem::path cache_dir; // encode_cached's cache directory (required)
  bool user_history = true;        // user text = history + ". " + knowledge (KAR) or knowledge alone
};

// [knowledge]: how knowledge texts become the rerankers' vectors (`rlrf run`, `rlrf rerank`,
// `rlrf reward` read it alike).
struct KnowledgeConfig {
  // glove | hash | bert (or any make_encoder name). With "bert", read() turns the keys below into
  // the full encoder name "bert:PATH?..." (encode/bert_encoder.h), which every stage passes on.
  std::string encoder = "glove";
  std::string encoder_model;   // bert: a Hugging Face / sentence-transformers directory ({shared} allowed)
  std::string pooling = "auto";  // bert: auto (sentence-transformers folder's, else mean) | mean | cls | max
  bool normalize = false;        // bert: L2-normalise the pooled vectors
  int max_length = 0;            // bert: tokens per text; 0: the model's limit (512 for BERT-base)
  std::string dtype = "fp32";    // bert: fp32 | bf16
  int batch_size = 64;           // bert: texts per forward pass
  std::string device = "auto";   // bert: where the model runs: auto (CUDA when visible) | cpu | cuda | cuda:N
  std::string item = "metadata";  // metadata | file:PATH (KAR item knowledge)
  bool user_history = true;       // encode history + ". " + knowledge (KAR); false: knowledge alone
  void read(const ConfigSection& s);
  // The source of `user` knowledge (none | profile | file:PATH) with this encoder and item
  // knowledge (none with user = "none"), encoded with or without the history.
  KnowledgeSource source(const std::string& user, bool history, const std::filesystem::path& cache_dir) const;
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
