// Tests of the BERT knowledge encoder against the plain-PyTorch reference
// (tools/ref/encode_bert_ref.py make -> tests/data/encode/): token ids, hidden states and pooled
// vectors in fp32 (1e-5) and bf16 (stated tolerance), a sentence-transformers folder, key-name
// variants (prefix, gamma/beta, DistilBERT), batching, the cache, and errors for bad checkpoints,
// configs and settings, each naming what is wrong.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <ATen/ATen.h>

#include <cstdio>
#include <fstream>
#include <functional>

#include "error_of.h"
#include "encode/bert.h"
#include "encode/bert_encoder.h"
#include "encode/bert_golden.h"
#include "encode/encode_cache.h"
#include "encode/encoder.h"
#include "llm/safetensors.h"
#include "text/wordpiece.h"
#include "util/error.h"
#include "util/files.h"

using namespace rlrf;
using json = nlohmann::json;

using rlrf::test::error_of;

namespace {

// The stated bf16 tolerance: max |bf16 encoder - fp32 reference| over the tiny model's pooled
// vectors (values of order 1 after LayerNorm; bf16 keeps 8 bits of mantissa).
constexpr double kBf16Tolerance = 0.03;

fs::path data_dir_encode() { return source_dir() / "tests" / "data" / "encode"; }
fs::path tiny_dir() { return data_dir_encode() / "bert-tiny"; }
fs::path st_dir() { return data_dir_encode() / "bert-tiny-st"; }

const json& golden() {
  static const json g = json::parse(read_file(data_dir_encode() / "bert_golden.json"));
  return g;
}

std::vector<std::string> texts() { return golden().at("texts").get<std::vector<std::string>>(); }

at::Tensor tensor_of(const json& j) { return test::bert_golden_rows(j); }

double max_diff(const at::Tensor& a, const at::Tensor& b) {
  EXPECT_EQ(a.sizes(), b.sizes());
  if (a.sizes() != b.sizes()) return 1e9;
  return (a.to(at::kFloat) - b.to(at::kFloat)).abs().max().item<double>();
}

BertEncoderOptions tiny_options(const std::string& pooling = "mean") {
  BertEncoderOptions o;
  o.model = tiny_dir();
  o.pooling = pooling;
  o.batch_size = 4;
  return o;
}

// A copy of bert-tiny with its tensors renamed (and possibly changed) by `rename`; entries mapped to
// "" are dropped. Config and tokenizer are copied; `config` edits config.json.
fs::path rewrite_tiny(const std::string& name,
                      const std::function<std::string(const std::string&, at::Tensor&)>& rename,
                      const std::function<void(json&)>& config = {}) {
  fs::path dir = fresh_temp_dir(name);
  llm::TensorStore store = llm::TensorStore::open(tiny_dir());
  std::vector<llm::NamedTensor> out;
  for (const std::string& n : store.names()) {
    at::Tensor t = store.tensor(n).clone();
    std::string to = rename(n, t);
    if (!to.empty()) out.push_back({to, t});
  }
  llm::save_safetensors(dir / "model.safetensors", out);
  json cfg = json::parse(read_file(tiny_dir() / "config.json"));
  if (config) config(cfg);
  write_file_atomic(dir / "config.json", cfg.dump(2));
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) write_file_atomic(dir / f, read_file(tiny_dir() / f));
  return dir;
}

std::string replace(std::string s, const std::string& from, const std::string& to) {
  size_t pos = s.find(from);
  if (pos != std::string::npos) s.replace(pos, from.size(), to);
  return s;
}

}  // namespace

TEST(BertReference, TokenIdsMatch) {
  for (const char* model : {"bert-tiny", "bert-tiny-st"}) {
    BertEncoderOptions o;
    o.model = data_dir_encode() / model;
    BertTextEncoder enc(o);
    const json& g = golden().at("models").at(model);
    EXPECT_EQ(enc.max_length(), g.at("max_length").get<int>()) << model;
    std::vector<std::string> t = texts();
    for (size_t i = 0; i < t.size(); ++i)
      EXPECT_EQ(enc.tokenize(t[i]).ids, g.at("ids")[i].get<std::vector<int32_t>>()) << model << " text " << i;
  }
}

TEST(BertReference, HiddenStatesAndPoolingFp32) {
  const json& g = golden().at("models").at("bert-tiny");
  std::vector<std::string> t = texts();
  BertTextEncoder enc(tiny_options("mean"));
  for (size_t i = 0; i < g.at("hidden").size(); ++i) {
    double d = max_diff(enc.hidden_states(t[i]), tensor_of(g.at("hidden")[i]));
    std::printf("bert-tiny hidden state of text %zu: max abs diff %.3g\n", i, d);
    EXPECT_LT(d, 1e-5);
  }
  struct Case {
    const char* golden;
    const char* pooling;
    bool normalize;
  };
  for (const Case& c : {Case{"mean", "mean", false}, Case{"cls", "cls", false}, Case{"mean_l2", "mean", true},
                        Case{"max", "max", false}}) {
    BertEncoderOptions o = tiny_options(c.pooling);
    o.normalize = c.normalize;
    BertTextEncoder e(o);
    EXPECT_EQ(e.dim(), 16);
    double d = max_diff(e.encode(t), tensor_of(g.at("pooled").at(c.golden)));
    std::printf("bert-tiny pooled %-8s fp32: max abs diff %.3g\n", c.golden, d);
    EXPECT_LT(d, 1e-5) << c.golden;
  }
}

TEST(BertReference, Bf16WithinStatedTolerance) {
  const json& g = golden().at("models").at("bert-tiny");
  BertEncoderOptions o = tiny_options("mean");
  o.dtype = "bf16";
  BertTextEncoder enc(o);
  at::Tensor v = enc.encode(texts());
  double vs_fp32 = max_diff(v, tensor_of(g.at("pooled").at("mean")));
  double vs_bf16 = max_diff(v, tensor_of(g.at("pooled_bf16_ref").at("mean")));
  std::printf("bert-tiny pooled mean bf16: max abs diff %.3g vs the fp32 reference, %.3g vs the bf16 reference "
              "(tolerance %.2g)\n", vs_fp32, vs_bf16, kBf16Tolerance);
  EXPECT_LT(vs_fp32, kBf16Tolerance);
  EXPECT_LT(vs_bf16, kBf16Tolerance);
  EXPECT_NE(enc.name(), BertTextEncoder(tiny_options("mean")).name()) << "dtype must be part of the cache key";
}

TEST(BertReference, SentenceTransformersFolder) {
  const json& g = golden().at("models").at("bert-tiny-st");
  BertEncoderOptions o;
  o.model = st_dir();
  BertTextEncoder enc(o);  // auto: modules.json -> cls + mean, Normalize; max_seq_length 16
  EXPECT_EQ(enc.pooling_modes(), (std::vector<std::string>{"cls", "mean"}));
  EXPECT_TRUE(enc.normalized());
  EXPECT_EQ(enc.max_length(), 16);
  EXPECT_EQ(enc.dim(), 16);
  double d = max_diff(enc.encode(texts()), tensor_of(g.at("pooled").at("auto")));
  std::printf("bert-tiny-st pooled auto (cls+mean, normalize) fp32: max abs diff %.3g\n", d);
  EXPECT_LT(d, 1e-5);
  EXPECT_LT(max_diff(enc.hidden_states(texts()[0]), tensor_of(g.at("hidden")[0])), 1e-5);
  o.pooling = "mean";  // overrides the folder's pooling and its Normalize
  BertTextEncoder mean(o);
  EXPECT_FALSE(mean.normalized());
  EXPECT_LT(max_diff(mean.encode(texts()), tensor_of(g.at("pooled").at("mean"))), 1e-5);
}

TEST(BertEncoder, BatchingAndOrderDoNotChangeVectors) {
  std::vector<std::string> t = texts();
  for (int i = 0; i < 3; ++i) t.push_back(t[static_cast<size_t>(i)] + " and again " + std::to_string(i));
  BertEncoderOptions one = tiny_options("mean");
  one.batch_size = 1;
  BertEncoderOptions many = tiny_options("mean");
  many.batch_size = 5;
  at::Tensor a = BertTextEncoder(one).encode(t);
  at::Tensor b = BertTextEncoder(many).encode(t);
  EXPECT_LT(max_diff(a, b), 1e-5);
  std::vector<std::string> reversed(t.rbegin(), t.rend());
  at::Tensor r = BertTextEncoder(many).encode(reversed);
  EXPECT_LT(max_diff(r.flip({0}), a), 1e-5);
  EXPECT_EQ(BertTextEncoder(many).encode({}).size(0), 0);
}

TEST(BertEncoder, KeyNamesWithoutPrefixAndDistilBert) {
  at::Tensor expected = BertTextEncoder(tiny_options("mean")).encode(texts());
  // BertModel names: no "bert." prefix, LayerNorm.weight/bias.
  fs::path plain = rewrite_tiny("bert_plain_names", [](const std::string& n, at::Tensor&) -> std::string {
    if (n.rfind("bert.", 0) != 0) return "";
    std::string s = n.substr(5);
    s = replace(s, "LayerNorm.gamma", "LayerNorm.weight");
    return replace(s, "LayerNorm.beta", "LayerNorm.bias");
  });
  BertEncoderOptions o = tiny_options("mean");
  o.model = plain;
  EXPECT_LT(max_diff(BertTextEncoder(o).encode(texts()), expected), 1e-6);

  // DistilBERT names and config; no token types, so type 0's row is folded into the positions.
  llm::TensorStore store = llm::TensorStore::open(tiny_dir());
  at::Tensor type0 = store.tensor("bert.embeddings.token_type_embeddings.weight")[0].clone();
  fs::path distil = rewrite_tiny(
      "bert_distil_names",
      [&](const std::string& n, at::Tensor& t) -> std::string {
        if (n.rfind("bert.", 0) != 0 || n.find("token_type") != std::string::npos) return "";
        std::string s = replace(replace(n.substr(5), "LayerNorm.gamma", "LayerNorm.weight"), "LayerNorm.beta",
                                "LayerNorm.bias");
        if (s == "embeddings.position_embeddings.weight") t += type0;
        s = replace(s, "encoder.layer.", "transformer.layer.");
        for (const auto& [from, to] : std::vector<std::pair<std::string, std::string>>{
                 {".attention.self.query.", ".attention.q_lin."}, {".attention.self.key.", ".attention.k_lin."},
                 {".attention.self.value.", ".attention.v_lin."}, {".attention.output.dense.", ".attention.out_lin."},
                 {".attention.output.LayerNorm.", ".sa_layer_norm."}, {".intermediate.dense.", ".ffn.lin1."},
                 {".output.dense.", ".ffn.lin2."}, {".output.LayerNorm.", ".output_layer_norm."}})
          s = replace(s, from, to);
        return "distilbert." + s;
      },
      [](json& c) {
        c = json{{"model_type", "distilbert"}, {"architectures", {"DistilBertModel"}}, {"vocab_size", c["vocab_size"]},
                 {"dim", 16}, {"n_layers", 2}, {"n_heads", 2}, {"hidden_dim", 32}, {"activation", "gelu"},
                 {"max_position_embeddings", 40}, {"pad_token_id", 0}};
      });
  o.model = distil;
  EXPECT_LT(max_diff(BertTextEncoder(o).encode(texts()), expected), 1e-5);
}

TEST(BertEncoder, BadCheckpointsNameTheTensor) {
  // A missing tensor.
  fs::path missing = rewrite_tiny("bert_missing", [](const std::string& n, at::Tensor&) -> std::string {
    return n == "bert.encoder.layer.1.output.dense.weight" ? "" : n;
  });
  std::string msg = error_of([&] { bert::load_model(missing); });
  EXPECT_NE(msg.find("has no tensor 'bert.encoder.layer.1.output.dense.weight'"), std::string::npos) << msg;
  EXPECT_NE(msg.find(missing.string()), std::string::npos) << msg;
  // A mis-shaped tensor.
  fs::path shaped = rewrite_tiny("bert_shape", [](const std::string& n, at::Tensor& t) -> std::string {
    if (n == "bert.encoder.layer.0.attention.self.key.weight") t = at::zeros({16, 8});
    return n;
  });
  msg = error_of([&] { bert::load_model(shaped); });
  EXPECT_NE(msg.find("tensor 'bert.encoder.layer.0.attention.self.key.weight' has wrong shape; expected [16, 16], "
                     "got [16, 8]"),
            std::string::npos)
      << msg;
  // config.json that disagrees with the weights.
  fs::path wide = rewrite_tiny("bert_wide", [](const std::string& n, at::Tensor&) { return n; },
                               [](json& c) { c["intermediate_size"] = 48; });
  msg = error_of([&] { bert::load_model(wide); });
  EXPECT_NE(msg.find("intermediate.dense.weight' has wrong shape; expected [48, 16], got [32, 16]"), std::string::npos)
      << msg;
  // Not a BERT checkpoint at all.
  fs::path other = rewrite_tiny("bert_other", [](const std::string& n, at::Tensor&) {
    return replace(n, "bert.embeddings.word_embeddings", "model.embed_tokens");
  });
  msg = error_of([&] { bert::load_model(other); });
  EXPECT_NE(msg.find("has no tensor 'embeddings.word_embeddings.weight' (with or without a 'bert.'"), std::string::npos)
      << msg;
}

TEST(BertEncoder, BadConfigsAreRefusedByName) {
  auto config_error = [](const std::string& name, const std::function<void(json&)>& edit) {
    fs::path dir = rewrite_tiny(name, [](const std::string& n, at::Tensor&) { return n; }, edit);
    return error_of([&] { bert::load_model(dir); });
  };
  std::string msg = config_error("bert_cfg_roberta", [](json& c) { c["model_type"] = "roberta"; });
  EXPECT_NE(msg.find("model_type \"roberta\" is not a supported encoder"), std::string::npos) << msg;
  EXPECT_NE(msg.find("config.json"), std::string::npos) << msg;
  msg = config_error("bert_cfg_hidden", [](json& c) { c.erase("hidden_size"); });
  EXPECT_NE(msg.find("required key \"hidden_size\" is missing"), std::string::npos) << msg;
  msg = config_error("bert_cfg_heads", [](json& c) { c["num_attention_heads"] = 3; });
  EXPECT_NE(msg.find("hidden size 16 is not a multiple of 3 heads"), std::string::npos) << msg;
  msg = config_error("bert_cfg_act", [](json& c) { c["hidden_act"] = "swish"; });
  EXPECT_NE(msg.find("hidden_act \"swish\" is not supported"), std::string::npos) << msg;
  msg = config_error("bert_cfg_pos", [](json& c) { c["position_embedding_type"] = "relative_key"; });
  EXPECT_NE(msg.find("position_embedding_type \"relative_key\""), std::string::npos) << msg;
  msg = error_of([] { bert::load_model(fresh_temp_dir("bert_empty_dir")); });
  EXPECT_NE(msg.find("no config.json at"), std::string::npos) << msg;
}

TEST(BertEncoder, BadSettingsAndFolders) {
  BertEncoderOptions o = tiny_options("mean");
  o.max_length = 100;  // the model has 40 positions
  std::string msg = error_of([&] { BertTextEncoder e(o); });
  EXPECT_NE(msg.find("max_length 100 exceeds the 40 positions"), std::string::npos) << msg;
  o = tiny_options("weighted");
  msg = error_of([&] { BertTextEncoder e(o); });
  EXPECT_NE(msg.find("pooling 'weighted'"), std::string::npos) << msg;
  // No tokenizer.json.
  fs::path no_tok = fresh_temp_dir("bert_no_tokenizer");
  for (const char* f : {"config.json", "model.safetensors"}) fs::copy_file(tiny_dir() / f, no_tok / f);
  o = tiny_options("mean");
  o.model = no_tok;
  msg = error_of([&] { BertTextEncoder e(o); });
  EXPECT_NE(msg.find("no tokenizer.json"), std::string::npos) << msg;
  // A sentence-transformers Dense module is refused by name.
  fs::path dense = fresh_temp_dir("bert_st_dense");
  fs::copy(st_dir(), dense, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  json modules = json::parse(read_file(dense / "modules.json"));
  modules.push_back({{"idx", 3}, {"name", "3"}, {"path", "3_Dense"}, {"type", "sentence_transformers.models.Dense"}});
  write_file_atomic(dense / "modules.json", modules.dump());
  o.model = dense;
  o.pooling = "auto";
  msg = error_of([&] { BertTextEncoder e(o); });
  EXPECT_NE(msg.find("module type \"sentence_transformers.models.Dense\" is not supported"), std::string::npos) << msg;
  EXPECT_NE(msg.find("modules.json"), std::string::npos) << msg;
}

TEST(BertEncoder, SpecsFactoryAndCache) {
  BertEncoderOptions o;
  o.model = tiny_dir();
  o.pooling = "cls";
  o.dtype = "bf16";
  o.max_length = 20;
  o.batch_size = 8;
  o.normalize = true;
  std::string spec = o.to_spec();
  EXPECT_EQ(spec, "bert:" + tiny_dir().string() + "?pooling=cls&normalize=true&max_length=20&dtype=bf16&batch_size=8");
  BertEncoderOptions back = BertEncoderOptions::parse_spec(spec);
  EXPECT_EQ(back.to_spec(), spec);
  EXPECT_EQ(BertEncoderOptions::parse_spec("bert:/x").model, fs::path("/x"));
  EXPECT_NE(error_of([] { BertEncoderOptions::parse_spec("bert:/x?colour=red"); }).find("unknown setting 'colour'"),
            std::string::npos);
  EXPECT_EQ(BertEncoderOptions::parse_spec("bert:/x").device, "auto");
  EXPECT_EQ(BertEncoderOptions::parse_spec("bert:/x?device=cuda:1").device, "cuda:1");
  EXPECT_EQ(BertEncoderOptions::parse_spec("bert:/x?device=cpu").to_spec(), "bert:/x?device=cpu");
  EXPECT_NE(error_of([] { BertEncoderOptions::parse_spec("bert:/x?device=tpu"); }).find("device 'tpu' (auto, cpu, cuda, cuda:N)"),
            std::string::npos);
  EXPECT_NE(error_of([] { make_encoder("bert"); }).find("encoder_model"), std::string::npos);

  auto enc = make_encoder("bert:" + tiny_dir().string() + "?pooling=mean&batch_size=2");
  EXPECT_EQ(enc->dim(), 16);
  const std::string name = enc->name();
  EXPECT_EQ(name.rfind("bert-bert-tiny-", 0), 0u) << name;
  EXPECT_NE(name.find("-mean-L24-fp32"), std::string::npos) << name;

  fs::path cache = fresh_temp_dir("bert_cache");
  EncodeCacheStats st;
  at::Tensor first = encode_cached(*enc, texts(), cache, &st);
  EXPECT_EQ(st.hits, 0);
  EXPECT_EQ(st.misses, static_cast<int64_t>(texts().size()));
  at::Tensor again = encode_cached(*enc, texts(), cache, &st);
  EXPECT_EQ(st.hits, static_cast<int64_t>(texts().size()));
  EXPECT_EQ(st.misses, 0);
  EXPECT_LT(max_diff(first, again), 1e-7);
  EXPECT_TRUE(fs::exists(encode_cache_path(cache, name)));
}
