// The BERT encoder (Hugging Face BertModel) in libtorch, inference only: word + position +
// token-type embeddings and LayerNorm, then post-LN transformer layers (self-attention with a
// padding mask, GELU feed-forward). Parameters carry BertModel's names
// ("encoder.layer.0.attention.self.query.weight", ...) so a checkpoint loads by name.
//
// Checkpoints: config.json + model.safetensors (or shards with an index). Key names are read as
// Hugging Face writes them: with the "bert." prefix (BertForMaskedLM, BertForPreTraining) or
// without (BertModel, sentence-transformers), LayerNorm as weight/bias or as the old gamma/beta.
// DistilBERT ("distilbert." names, no token types) loads into the same model. Heads and pooler
// tensors are ignored. A missing or mis-shaped tensor is an error naming the file and tensor.
//
// Speed: query/key/value run as one matmul (their weights are concatenated after loading); the
// attention softmax runs in fp32 whatever the compute dtype.
#pragma once
#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <filesystem>
#include <string>

namespace rlrf::llm {
class TensorStore;
}

namespace rlrf::bert {

// config.json of a BERT-family encoder.
struct BertConfig {
  std::string model_type = "bert";  // bert | distilbert
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t intermediate_size = 0;
  int64_t max_position_embeddings = 512;
  int64_t type_vocab_size = 2;  // 0: no token-type embeddings (DistilBERT)
  double layer_norm_eps = 1e-12;
  std::string hidden_act = "gelu";  // gelu (erf) | gelu_new | gelu_pytorch_tanh | relu
  int64_t pad_token_id = 0;

  // Reads config.json (a file or the directory holding it). Errors name the file and key;
  // architectures other than BERT and DistilBERT are refused by name.
  static BertConfig load(const std::filesystem::path& path);
  static BertConfig parse(const std::string& text, const std::string& where);
  int64_t head_dim() const { return hidden_size / num_attention_heads; }
};

// weight [out, in], bias [out]: y = x W^T + b.
class DenseImpl : public torch::nn::Module {
 public:
  DenseImpl(int64_t in, int64_t out);
  at::Tensor forward(const at::Tensor& x);  // [..., in] -> [..., out]
  at::Tensor weight, bias;
};
TORCH_MODULE(Dense);

class LayerNormImpl : public torch::nn::Module {
 public:
  LayerNormImpl(int64_t dim, double eps);
  at::Tensor forward(const at::Tensor& x);  // [..., dim] -> [..., dim]
  at::Tensor weight, bias;
  double eps;
};
TORCH_MODULE(LayerNorm);

// A lookup table: weight [num, dim].
class TableImpl : public torch::nn::Module {
 public:
  TableImpl(int64_t num, int64_t dim);
  at::Tensor weight;
};
TORCH_MODULE(Table);

class BertEmbeddingsImpl : public torch::nn::Module {
 public:
  explicit BertEmbeddingsImpl(const BertConfig& c);
  // ids, type_ids [B, T] int64 (type_ids may be undefined: all 0) -> [B, T, H]
  at::Tensor forward(const at::Tensor& ids, const at::Tensor& type_ids);
  Table word_embeddings{nullptr}, position_embeddings{nullptr}, token_type_embeddings{nullptr};
  LayerNorm LayerNorm_{nullptr};  // registered as "LayerNorm"
};
TORCH_MODULE(BertEmbeddings);

class BertSelfAttentionImpl : public torch::nn::Module {
 public:
  explicit BertSelfAttentionImpl(const BertConfig& c);
  Dense query{nullptr}, key{nullptr}, value{nullptr};
};
TORCH_MODULE(BertSelfAttention);

// Dense + residual + LayerNorm ("attention.output" and "output" of a layer).
class BertOutputImpl : public torch::nn::Module {
 public:
  BertOutputImpl(int64_t in, int64_t hidden, double eps);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& residual);
  Dense dense{nullptr};
  LayerNorm LayerNorm_{nullptr};
};
TORCH_MODULE(BertOutput);

class BertAttentionImpl : public torch::nn::Module {
 public:
  explicit BertAttentionImpl(const BertConfig& c);
  BertSelfAttention self{nullptr};
  BertOutput output{nullptr};
};
TORCH_MODULE(BertAttention);

class BertIntermediateImpl : public torch::nn::Module {
 public:
  explicit BertIntermediateImpl(const BertConfig& c);
  Dense dense{nullptr};
};
TORCH_MODULE(BertIntermediate);

class BertLayerImpl : public torch::nn::Module {
 public:
  explicit BertLayerImpl(const BertConfig& c);
  // x [B, T, H], mask_add [B, 1, 1, T] fp32 (0 or lowest) -> [B, T, H]
  at::Tensor forward(const at::Tensor& x, const at::Tensor& mask_add);
  // Concatenates query/key/value into one [3H, H] matmul; call after the weights change.
  void fuse();
  BertAttention attention{nullptr};
  BertIntermediate intermediate{nullptr};
  BertOutput output{nullptr};

 private:
  int64_t heads_, head_dim_;
  std::string act_;
  at::Tensor qkv_weight_, qkv_bias_;  // [3H, H], [3H]
};
TORCH_MODULE(BertLayer);

// The layer stack, registered as "encoder" (its list as "layer").
class BertLayersImpl : public torch::nn::Module {
 public:
  explicit BertLayersImpl(const BertConfig& c);
  torch::nn::ModuleList layer{nullptr};
};
TORCH_MODULE(BertLayers);

class BertModelImpl : public torch::nn::Module {
 public:
  explicit BertModelImpl(BertConfig c);
  // ids [B, T] int64, mask [B, T] (1 = token, 0 = padding), type_ids [B, T] int64 or undefined
  // -> last hidden state [B, T, H] in the parameters' dtype. Run under InferenceMode/NoGradGuard.
  at::Tensor forward(const at::Tensor& ids, const at::Tensor& mask, const at::Tensor& type_ids = {});
  void fuse();  // after loading or converting the weights
  const BertConfig& config() const { return config_; }

  BertEmbeddings embeddings{nullptr};
  BertLayers encoder{nullptr};

 private:
  BertConfig config_;
};
TORCH_MODULE(BertModel);

// The checkpoint name of a BertModel parameter, or "" when the checkpoint has none of its
// spellings. `prefix` is the checkpoint's ("bert.", "distilbert.", "").
std::string checkpoint_name(const llm::TensorStore& store, const BertConfig& c, const std::string& prefix,
                            const std::string& param);

// Fills every parameter from `store`; errors name the checkpoint file and tensor.
void load_weights(BertModel& model, const llm::TensorStore& store);

// config.json + weights of `dir` -> a model in `dtype` (kFloat or kBFloat16) on `device` ("cpu",
// "cuda", "cuda:N"), eval mode, fused.
BertModel load_model(const std::filesystem::path& dir, at::ScalarType dtype = at::kFloat, const std::string& device = "cpu");

// A model of config `c` with random weights (N(0, 0.02), LayerNorm 1/0), for benchmarks.
BertModel random_model(const BertConfig& c, at::ScalarType dtype, uint64_t seed = 1);

}  // namespace rlrf::bert
