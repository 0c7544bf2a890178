// Knowledge texts -> frozen vectors through the cached text encoder.
#include "rerank/knowledge_vectors.h"

#include <ATen/ATen.h>
#include <cstdint>

#include "encode/bert_encoder.h"
#include "encode/encoder.h"
#include "knowledge/knowledge.h"
#include "util/config.h"
#include "util/error.h"
#include "util/files.h"
#include "util/log.h"
#include "util/strings.h"

namespace rlrf {

void KnowledgeConfig::read(const ConfigSection& s) {
  s.read("encoder", encoder);
  s.read("item", item);
  s.read("user_history", user_history);
  s.read("encoder_model", encoder_model);
  s.read("pooling", pooling);
  s.read("normalize", normalize);
  s.read("max_length", max_length);
  s.read("dtype", dtype);
  s.read("batch_size", batch_size);
  s.read("device", device);
  const bool bert_keys = s.has("encoder_model") || s.has("pooling") || s.has("normalize") || s.has("max_length") ||
                         s.has("dtype") || s.has("batch_size") || s.has("device");
  if (encoder == "bert") {
    RLRF_CHECK(!encoder_model.empty(), "{}: encoder = \"bert\" needs encoder_model = PATH (a Hugging Face BERT "
               "directory: config.json, model.safetensors, tokenizer.json)", s.where());
    BertEncoderOptions o;
    o.model = expand_path(encoder_model);
    o.pooling = pooling;
    o.normalize = normalize;
    o.max_length = max_length;
    o.dtype = dtype;
    o.batch_size = batch_size;
    o.device = device;
    encoder = o.to_spec();
    BertEncoderOptions::parse_spec(encoder);  // checks the settings now, naming the bad one
  } else {
    RLRF_CHECK(!bert_keys, "{}: encoder_model, pooling, normalize, max_length, dtype, batch_size and device are settings of "
               "encoder = \"bert\" (encoder is \"{}\")", s.where(), encoder);
  }
}

KnowledgeSource KnowledgeConfig::source(const std::string& user, bool history, const std::filesystem::path& cache_dir) const {
  KnowledgeSource s;
  s.user = user;
  s.item = user == "none" ? "none" : item;
  s.encoder = encoder;
  s.cache_dir = cache_dir;
  s.user_history = history;
  return s;
}

at::Tensor encode_user_knowledge(const PreparedData& data, const std::vector<int32_t>& users,
                                 const std::vector<std::string>& texts, TextEncoder& encoder,
                                 const std::filesystem::path& cache_dir, bool user_history) {
  RLRF_CHECK(users.size() == texts.size(), "encode_user_knowledge: {} users but {} texts", users.size(), texts.size());
  std::vector<std::string> full;
  full.reserve(texts.size());
  for (size_t i = 0; i < texts.size(); ++i)
    full.push_back(user_text_for_encoding(data, users[i], texts[i], user_history));
  return encode_cached(encoder, full, cache_dir);
}

KnowledgeVectors build_knowledge_vectors(const PreparedData& data, const KnowledgeSource& source, TextEncoder& encoder) {
  RLRF_CHECK(!source.cache_dir.empty(), "build_knowledge_vectors: no encoding cache directory given");
  KnowledgeVectors kv;
  if (source.user != "none") {
    std::vector<std::string> texts = user_knowledge(data, source.user);
    const size_t n_users = data.dataset.users.size();
    RLRF_CHECK(texts.size() == n_users, "user knowledge '{}' gave {} texts for {} users", source.user, texts.size(),
               n_users);
    std::vector<int32_t> users(n_users);
    for (size_t u = 0; u < n_users; ++u) users[u] = static_cast<int32_t>(u);
    log_info("rerank: encoding user knowledge '{}' for {} users with {}", source.user, n_users, encoder.name());
    kv.user = encode_user_knowledge(data, users, texts, encoder, source.cache_dir, source.user_history);
  }
  if (source.item != "none") {
    std::vector<std::string> texts;
    if (source.item == "metadata") texts = item_knowledge_from_metadata(data.dataset);
    else if (starts_with(source.item, "file:"))
      texts = item_knowledge_from_kar_file(data.dataset, source.item.substr(5));
    else fail("unknown item knowledge '{}' (use none, metadata or file:PATH)", source.item);
    log_info("rerank: encoding item knowledge '{}' for {} items with {}", source.item, texts.size(), encoder.name());
    kv.item = encode_cached(encoder, texts, source.cache_dir);
  }
  return kv;
}

KnowledgeVectors build_knowledge_vectors(const PreparedData& data, const KnowledgeSource& source) {
  if (source.user == "none" && source.item == "none") return {};
  auto encoder = make_encoder(source.encoder);
  return build_knowledge_vectors(data, source, *encoder);
}

}  // namespace rlrf
