// Encoder factories: by name, and the GloVe encoder from its binary.
#include "encode/encoder.h"

#include "encode/bert_encoder.h"
#include "encode/field_encoder.h"
#include "encode/glove_encoder.h"
#include "encode/hash_encoder.h"
#include "util/error.h"
#include "util/strings.h"

namespace rlrf {

std::unique_ptr<TextEncoder> make_glove_encoder(const std::filesystem::path& path) {
  std::filesystem::path p = path.empty() ? default_glove_bin_path() : path;
  return std::make_unique<GloveSifEncoder>(GloveVectors::load(p));
}

std::unique_ptr<TextEncoder> make_encoder(const std::string& name) {
  if (name.empty() || name == "glove") return make_glove_encoder();
  if (starts_with(name, "glove:")) return make_glove_encoder(name.substr(6));
  if (starts_with(name, "fields")) return make_field_encoder(name);
  if (name == "hash") return std::make_unique<HashingEncoder>();
  if (starts_with(name, "hash:")) {
    auto dim = parse_int(name.substr(5));
    RLRF_CHECK(dim && *dim > 0 && *dim <= 65536, "encoder '{}': the dimension after 'hash:' must be 1..65536", name);
    return std::make_unique<HashingEncoder>(static_cast<int>(*dim));
  }
  if (starts_with(name, "bert:")) return std::make_unique<BertTextEncoder>(BertEncoderOptions::parse_spec(name));
  if (name == "bert")
    fail("encoder 'bert' needs a model directory: set [knowledge] encoder_model = PATH, or name it bert:PATH "
         "(known encoders: glove, glove:<path>, hash, hash:<dim>, bert:<model dir>[?settings], fields:<encoder>)");
  fail("unknown text encoder '{}'; known: glove (GloVe 100-d + SIF, default), glove:<path to .bin>, "
       "hash (feature hashing, 256-d, needs no files), hash:<dim>, "
       "bert:<model dir>[?pooling=mean&max_length=512&dtype=bf16&batch_size=64&normalize=true], "
       "fields:<encoder> (one slot per knowledge-card field: Likes, Dislikes, Era, Rater, Favourite), "
       "fields(a,b,c):<encoder>", name);
}

}  // namespace rlrf
