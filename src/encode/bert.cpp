// BERT-family encoder: config.json, the model, and loading it from safetensors by name.
#include "encode/bert.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <cstdint>
#include <torch/csrc/autograd/grad_mode.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <set>

#include "llm/safetensors.h"
#include "util/error.h"
#include "util/json_reader.h"
#include "util/files.h"
#include "util/log.h"

namespace rlrf::bert {

namespace {

using json = nlohmann::json;

at::Tensor activation(const at::Tensor& x, const std::string& act) {
  if (act == "gelu") return at::gelu(x);
  if (act == "relu") return at::relu(x);
  return at::gelu(x, "tanh");  // gelu_new, gelu_pytorch_tanh, gelu_fast (checked at load)
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// config.json

BertConfig BertConfig::load(const fs::path& path) {
  std::error_code ec;
  fs::path file = fs::is_directory(path, ec) ? path / "config.json" : path;
  RLRF_CHECK(fs::exists(file, ec), "no config.json at '{}' (a BERT model directory holds config.json and "
             "model.safetensors, as Hugging Face writes them)", path.string());
  return parse(read_file(file), file.string());
}

BertConfig BertConfig::parse(const std::string& text, const std::string& where) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::parse_error& e) {
    fail("{}: not valid JSON: {}", where, e.what());
  }
  RLRF_CHECK(j.is_object(), "{}: expected a JSON object", where);
  JsonReader r{j, where};
  BertConfig c;
  c.model_type = r.get_string("model_type", "");
  if (c.model_type.empty() && j.contains("architectures") && j["architectures"].is_array() && !j["architectures"].empty()) {
    std::string arch = j["architectures"][0].get<std::string>();
    if (arch.rfind("Bert", 0) == 0) c.model_type = "bert";
    if (arch.rfind("DistilBert", 0) == 0) c.model_type = "distilbert";
  }
  if (c.model_type == "bert") {
    c.vocab_size = r.get_int("vocab_size", 0, true);
    c.hidden_size = r.get_int("hidden_size", 0, true);
    c.num_hidden_layers = r.get_int("num_hidden_layers", 0, true);
    c.num_attention_heads = r.get_int("num_attention_heads", 0, true);
    c.intermediate_size = r.get_int("intermediate_size", 0, true);
    c.max_position_embeddings = r.get_int("max_position_embeddings", 512);
    c.type_vocab_size = r.get_int("type_vocab_size", 2);
    c.layer_norm_eps = r.get_double("layer_norm_eps", 1e-12);
    c.hidden_act = r.get_string("hidden_act", "gelu");
    c.pad_token_id = r.get_int("pad_token_id", 0);
    std::string pos = r.get_string("position_embedding_type", "absolute");
    RLRF_CHECK(pos == "absolute", "{}: position_embedding_type \"{}\" is not supported (absolute)", where, pos);
  } else if (c.model_type == "distilbert") {
    c.vocab_size = r.get_int("vocab_size", 0, true);
    c.hidden_size = r.get_int("dim", 0, true);
    c.num_hidden_layers = r.get_int("n_layers", 0, true);
    c.num_attention_heads = r.get_int("n_heads", 0, true);
    c.intermediate_size = r.get_int("hidden_dim", 0, true);
    c.max_position_embeddings = r.get_int("max_position_embeddings", 512);
    c.type_vocab_size = 0;
    c.layer_norm_eps = 1e-12;
    c.hidden_act = r.get_string("activation", "gelu");
    c.pad_token_id = r.get_int("pad_token_id", 0);
    RLRF_CHECK(!(j.contains("sinusoidal_pos_embds") && j["sinusoidal_pos_embds"].is_boolean() &&
                 j["sinusoidal_pos_embds"].get<bool>()),
               "{}: sinusoidal_pos_embds = true is not supported (learned positions only)", where);
  } else {
    fail("{}: model_type \"{}\" is not a supported encoder (bert, distilbert: BertModel and the BERT-architecture "
         "models such as bge, e5, all-MiniLM; RoBERTa/XLM-R are not implemented)",
         where, c.model_type.empty() ? "(none)" : c.model_type);
  }
  RLRF_CHECK(c.vocab_size > 0 && c.hidden_size > 0 && c.num_hidden_layers > 0 && c.num_attention_heads > 0 &&
                 c.intermediate_size > 0 && c.max_position_embeddings > 0,
             "{}: sizes must be positive (vocab {}, hidden {}, layers {}, heads {}, intermediate {}, positions {})", where,
             c.vocab_size, c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.intermediate_size,
             c.max_position_embeddings);
  RLRF_CHECK(c.hidden_size % c.num_attention_heads == 0, "{}: hidden size {} is not a multiple of {} heads", where,
             c.hidden_size, c.num_attention_heads);
  const std::set<std::string> acts = {"gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "relu"};
  RLRF_CHECK(acts.count(c.hidden_act), "{}: hidden_act \"{}\" is not supported (gelu, gelu_new, gelu_pytorch_tanh, "
             "gelu_fast, relu)", where, c.hidden_act);
  return c;
}

// ---------------------------------------------------------------------------------------------
// Modules

DenseImpl::DenseImpl(int64_t in, int64_t out) {
  weight = register_parameter("weight", at::zeros({out, in}), false);
  bias = register_parameter("bias", at::zeros({out}), false);
}
at::Tensor DenseImpl::forward(const at::Tensor& x) { return at::linear(x, weight, bias); }

LayerNormImpl::LayerNormImpl(int64_t dim, double eps_) : eps(eps_) {
  weight = register_parameter("weight", at::ones({dim}), false);
  bias = register_parameter("bias", at::zeros({dim}), false);
}
at::Tensor LayerNormImpl::forward(const at::Tensor& x) {
  return at::layer_norm(x, {weight.size(0)}, weight, bias, eps);
}

TableImpl::TableImpl(int64_t num, int64_t dim) { weight = register_parameter("weight", at::zeros({num, dim}), false); }

BertEmbeddingsImpl::BertEmbeddingsImpl(const BertConfig& c) {
  word_embeddings = register_module("word_embeddings", Table(c.vocab_size, c.hidden_size));
  position_embeddings = register_module("position_embeddings", Table(c.max_position_embeddings, c.hidden_size));
  if (c.type_vocab_size > 0)
    token_type_embeddings = register_module("token_type_embeddings", Table(c.type_vocab_size, c.hidden_size));
  LayerNorm_ = register_module("LayerNorm", LayerNorm(c.hidden_size, c.layer_norm_eps));
}

at::Tensor BertEmbeddingsImpl::forward(const at::Tensor& ids, const at::Tensor& type_ids) {
  const int64_t T = ids.size(1);
  at::Tensor x = at::embedding(word_embeddings->weight, ids);                          // [B, T, H]
  x = x + position_embeddings->weight.narrow(0, 0, T).unsqueeze(0);                    // positions 0..T-1
  if (token_type_embeddings) {
    if (type_ids.defined())
      x = x + at::embedding(token_type_embeddings->weight, type_ids);
    else
      x = x + token_type_embeddings->weight[0];
  }
  return LayerNorm_->forward(x);
}

BertSelfAttentionImpl::BertSelfAttentionImpl(const BertConfig& c) {
  query = register_module("query", Dense(c.hidden_size, c.hidden_size));
  key = register_module("key", Dense(c.hidden_size, c.hidden_size));
  value = register_module("value", Dense(c.hidden_size, c.hidden_size));
}

BertOutputImpl::BertOutputImpl(int64_t in, int64_t hidden, double eps) {
  dense = register_module("dense", Dense(in, hidden));
  LayerNorm_ = register_module("LayerNorm", LayerNorm(hidden, eps));
}
at::Tensor BertOutputImpl::forward(const at::Tensor& x, const at::Tensor& residual) {
  return LayerNorm_->forward(dense->forward(x) + residual);
}

BertAttentionImpl::BertAttentionImpl(const BertConfig& c) {
  self = register_module("self", BertSelfAttention(c));
  output = register_module("output", BertOutput(c.hidden_size, c.hidden_size, c.layer_norm_eps));
}

BertIntermediateImpl::BertIntermediateImpl(const BertConfig& c) {
  dense = register_module("dense", Dense(c.hidden_size, c.intermediate_size));
}

BertLayerImpl::BertLayerImpl(const BertConfig& c)
    : heads_(c.num_attention_heads), head_dim_(c.head_dim()), act_(c.hidden_act) {
  attention = register_module("attention", BertAttention(c));
  intermediate = register_module("intermediate", BertIntermediate(c));
  output = register_module("output", BertOutput(c.intermediate_size, c.hidden_size, c.layer_norm_eps));
}

void BertLayerImpl::fuse() {
  const BertSelfAttentionImpl& s = *attention->self;
  qkv_weight_ = at::cat({s.query->weight, s.key->weight, s.value->weight}, 0).contiguous();
  qkv_bias_ = at::cat({s.query->bias, s.key->bias, s.value->bias}, 0).contiguous();
}

at::Tensor BertLayerImpl::forward(const at::Tensor& x, const at::Tensor& mask_add) {
  const int64_t B = x.size(0), T = x.size(1), H = heads_ * head_dim_;
  if (!qkv_weight_.defined() || qkv_weight_.scalar_type() != x.scalar_type()) fuse();
  at::Tensor qkv = at::linear(x, qkv_weight_, qkv_bias_).view({B, T, 3, heads_, head_dim_});  // [B, T, 3, nh, hd]
  qkv = qkv.permute({2, 0, 3, 1, 4});                                                          // [3, B, nh, T, hd]
  at::Tensor q = qkv[0], k = qkv[1], v = qkv[2];
  const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim_));
  at::Tensor scores = at::matmul(q, k.transpose(-1, -2));                // [B, nh, T, T]
  scores = scores.to(at::kFloat).mul_(scale).add_(mask_add);             // fp32 statistics
  at::Tensor probs = at::softmax(scores, -1).to(x.scalar_type());
  at::Tensor ctx = at::matmul(probs, v).transpose(1, 2).reshape({B, T, H});  // [B, T, H]
  at::Tensor h = attention->output->forward(ctx, x);
  at::Tensor inner = activation(intermediate->dense->forward(h), act_);    // [B, T, I]
  return output->forward(inner, h);
}

BertLayersImpl::BertLayersImpl(const BertConfig& c) {
  layer = register_module("layer", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) layer->push_back(BertLayer(c));
}

BertModelImpl::BertModelImpl(BertConfig c) : config_(std::move(c)) {
  embeddings = register_module("embeddings", BertEmbeddings(config_));
  encoder = register_module("encoder", BertLayers(config_));
}

void BertModelImpl::fuse() {
  for (const auto& m : *encoder->layer) m->as<BertLayerImpl>()->fuse();
}

at::Tensor BertModelImpl::forward(const at::Tensor& ids, const at::Tensor& mask, const at::Tensor& type_ids) {
  RLRF_CHECK(ids.dim() == 2, "bert: ids should be [batch, time], got {}", llm::shape_string(ids.sizes()));
  RLRF_CHECK(ids.size(1) <= config_.max_position_embeddings, "bert: {} tokens exceed the model's {} positions",
             ids.size(1), config_.max_position_embeddings);
  RLRF_CHECK(mask.sizes() == ids.sizes(), "bert: mask {} does not match ids {}", llm::shape_string(mask.sizes()),
             llm::shape_string(ids.sizes()));
  at::Tensor x = embeddings->forward(ids, type_ids);
  // Additive mask over keys: 0 for tokens, the lowest float for padding (as transformers does).
  at::Tensor mask_add = (1.0 - mask.to(at::kFloat)).mul_(std::numeric_limits<float>::lowest()).view(
      {ids.size(0), 1, 1, ids.size(1)});
  for (const auto& m : *encoder->layer) x = m->as<BertLayerImpl>()->forward(x, mask_add);
  return x;
}

// ---------------------------------------------------------------------------------------------
// Loading

namespace {

// A DistilBERT checkpoint's name for a BertModel parameter name.
std::string distilbert_name(std::string name) {
  static const std::pair<const char*, const char*> kMap[] = {
      {"encoder.layer.", "transformer.layer."},
      {".attention.self.query.", ".attention.q_lin."},
      {".attention.self.key.", ".attention.k_lin."},
      {".attention.self.value.", ".attention.v_lin."},
      {".attention.output.dense.", ".attention.out_lin."},
      {".attention.output.LayerNorm.", ".sa_layer_norm."},
      {".intermediate.dense.", ".ffn.lin1."},
      {".output.dense.", ".ffn.lin2."},
      {".output.LayerNorm.", ".output_layer_norm."},
  };
  for (const auto& [from, to] : kMap) {
    size_t pos = name.find(from);
    if (pos != std::string::npos) name.replace(pos, std::string_view(from).size(), to);
  }
  return name;
}

std::string detect_prefix(const llm::TensorStore& store, const BertConfig& c) {
  const std::string word = "embeddings.word_embeddings.weight";
  for (const char* p : {"", "bert.", "distilbert.", "model."})
    if (store.contains(p + word)) return p;
  fail("checkpoint '{}' has no tensor '{}' (with or without a 'bert.' or 'distilbert.' prefix): is it a {} "
       "checkpoint?",
       store.path().string(), word, c.model_type);
}

}  // namespace

std::string checkpoint_name(const llm::TensorStore& store, const BertConfig& c, const std::string& prefix,
                            const std::string& param) {
  std::string name = c.model_type == "distilbert" ? distilbert_name(param) : param;
  std::string full = prefix + name;
  if (store.contains(full)) return full;
  auto swap_suffix = [&](const char* from, const char* to) {
    std::string_view f(from);
    if (full.size() >= f.size() && full.compare(full.size() - f.size(), f.size(), f) == 0)
      return full.substr(0, full.size() - f.size()) + to;
    return std::string();
  };
  for (const std::string& alt : {swap_suffix("LayerNorm.weight", "LayerNorm.gamma"),
                                 swap_suffix("LayerNorm.bias", "LayerNorm.beta")})
    if (!alt.empty() && store.contains(alt)) return alt;
  return "";
}

void load_weights(BertModel& model, const llm::TensorStore& store) {
  torch::NoGradGuard no_grad;
  const BertConfig& c = model->config();
  const std::string prefix = detect_prefix(store, c);
  std::set<std::string> used;
  for (auto& item : model->named_parameters(/*recurse=*/true)) {
    const std::string& name = item.key();
    at::Tensor& param = item.value();
    std::string source = checkpoint_name(store, c, prefix, name);
    if (source.empty()) {
      fail("checkpoint '{}' has no tensor '{}{}' (a missing tensor: is config.json right for these weights?)",
           store.path().string(), prefix, c.model_type == "distilbert" ? distilbert_name(name) : name);
    }
    const llm::TensorInfo& info = store.info(source);
    if (info.shape != param.sizes().vec()) {
      fail("'{}': tensor '{}' has wrong shape; expected {}, got {} (config.json and weights disagree?)",
           store.file_of(source).string(), source, llm::shape_string(param.sizes()), llm::shape_string(info.shape));
    }
    param.copy_(store.tensor(source));
    used.insert(info.name);
  }
  int64_t unused = 0;
  for (const std::string& n : store.names())
    if (!used.count(n)) {
      ++unused;
      log_debug("checkpoint '{}': tensor '{}' is not used by the encoder", store.path().string(), n);
    }
  if (unused > 0) log_debug("checkpoint '{}': {} tensors unused (heads, pooler)", store.path().string(), unused);
}

BertModel load_model(const fs::path& dir, at::ScalarType dtype, const std::string& device) {
  BertConfig config = BertConfig::load(dir);
  llm::TensorStore store = llm::TensorStore::open(dir);
  BertModel model(config);
  load_weights(model, store);
  if (dtype != at::kFloat) model->to(dtype);
  if (device != "cpu") model->to(at::Device(device));
  model->eval();
  model->fuse();
  return model;
}

BertModel random_model(const BertConfig& c, at::ScalarType dtype, uint64_t seed) {
  torch::NoGradGuard no_grad;
  BertModel model(c);
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  for (auto& item : model->named_parameters(true)) {
    at::Tensor& p = item.value();
    const std::string& name = item.key();
    if (name.find("LayerNorm") != std::string::npos) continue;  // 1 and 0 as initialised
    if (name.size() >= 5 && name.compare(name.size() - 5, 5, ".bias") == 0) continue;
    p.normal_(0.0, 0.02, gen);
  }
  if (dtype != at::kFloat) model->to(dtype);
  model->eval();
  model->fuse();
  return model;
}

}  // namespace rlrf::bert
