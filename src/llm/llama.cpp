// The Llama-family decoder (Llama, Mistral, Qwen2) with Hugging Face math and parameter names.
#include "llm/llama.h"

#include "llm/attention_softmax.h"
#include "llm/cpu_attention.h"
#include "llm/swiglu.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <c10/core/InferenceMode.h>
#include <cstdint>

#include <cmath>
#include <limits>

#include "util/error.h"

namespace rlrf::llm {

at::TensorOptions ModelOptions::tensor_options() const {
  return at::TensorOptions().dtype(dtype).device(at::Device(device));
}

at::ScalarType parse_dtype(const std::string& name) {
  if (name == "fp32" || name == "float32" || name == "float") return at::kFloat;
  if (name == "bf16" || name == "bfloat16") return at::kBFloat16;
  if (name == "fp16" || name == "float16" || name == "half") return at::kHalf;
  fail("unknown dtype '{}' (use fp32 or bf16)", name);
}

std::string dtype_name(at::ScalarType dtype) {
  switch (dtype) {
    case at::kFloat: return "fp32";
    case at::kBFloat16: return "bf16";
    case at::kHalf: return "fp16";
    default: return c10::toString(dtype);
  }
}

int training_threads(const LlamaForCausalLMImpl& model, at::ScalarType compute) {
  const bool full_precision = compute == at::kFloat || compute == at::kDouble;
  return model.device().is_cpu() && full_precision && model.config().num_parameters() < 50'000'000 ? 1 : 0;
}

namespace {
// Statistics (norms, softmax, logits) run in fp32, as HF does; fp64 models keep fp64.
at::ScalarType stat_type(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }
}  // namespace

at::Tensor rope_inv_freq(const ModelConfig& c) {
  // HF: 1 / base ** (arange(0, dim, 2) / dim), all in fp32.
  const int64_t dim = c.head_dim;
  at::Tensor exponent = at::arange(0, dim, 2, at::kLong).to(at::kFloat) / static_cast<double>(dim);
  at::Tensor inv_freq = at::reciprocal(at::pow(c.rope_theta, exponent));
  const RopeScaling& s = c.rope_scaling;
  if (s.type == "linear") {
    inv_freq = inv_freq / s.factor;
  } else if (s.type == "llama3") {
    const double old_len = static_cast<double>(s.original_max_position_embeddings);
    const double low_freq_wavelen = old_len / s.low_freq_factor;
    const double high_freq_wavelen = old_len / s.high_freq_factor;
    at::Tensor wavelen = at::reciprocal(inv_freq) * (2 * M_PI);
    at::Tensor llama = at::where(wavelen > low_freq_wavelen, inv_freq / s.factor, inv_freq);
    at::Tensor smooth = (at::reciprocal(wavelen) * old_len - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
    at::Tensor smoothed = (1 - smooth) * llama / s.factor + smooth * llama;
    at::Tensor medium = at::logical_not(wavelen < high_freq_wavelen).logical_and(at::logical_not(wavelen > low_freq_wavelen));
    inv_freq = at::where(medium, smoothed, llama);
  }
  return inv_freq.contiguous();
}

// ---------------------------------------------------------------------------------------------

RMSNormImpl::RMSNormImpl(int64_t dim, double eps_, const at::TensorOptions& options) : eps(eps_) {
  weight = register_parameter("weight", at::ones({dim}, options));
}

namespace {

// RMSNorm of each row in one pass, for inference on the CPU (fp32 or bf16 rows and weight): the
// same arithmetic as the ATen expression below (sum of squares in fp32, x * rsqrt(mean + eps)
// rounded to the input's dtype, then times the weight), one loop instead of eight tensor ops.
template <typename T>
void rms_norm_rows(const T* x, const T* w, T* out, int64_t rows, int64_t dim, float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* row = x + r * dim;
    float part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t j = 0;
    for (; j + 8 <= dim; j += 8)
      for (int k = 0; k < 8; ++k) {
        const float v = static_cast<float>(row[j + k]);
        part[k] += v * v;
      }
    float ss = ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
    for (; j < dim; ++j) ss += static_cast<float>(row[j]) * static_cast<float>(row[j]);
    const float scale = 1.0f / std::sqrt(ss / static_cast<float>(dim) + eps);
    T* o = out + r * dim;
    for (j = 0; j < dim; ++j) o[j] = static_cast<T>(static_cast<float>(w[j]) * static_cast<float>(static_cast<T>(static_cast<float>(row[j]) * scale)));
  }
}

}  // namespace

at::Tensor RMSNormImpl::forward(const at::Tensor& x) {
  const at::ScalarType dt = x.scalar_type();
  if (!at::GradMode::is_enabled() && x.device().is_cpu() && weight.device().is_cpu() && x.is_contiguous() &&
      weight.is_contiguous() && weight.scalar_type() == dt && (dt == at::kFloat || dt == at::kBFloat16) &&
      x.dim() >= 1 && x.size(-1) == weight.numel()) {
    at::Tensor out = at::empty_like(x);
    const int64_t dim = weight.numel(), rows = dim > 0 ? x.numel() / dim : 0;
    if (dt == at::kFloat)
      rms_norm_rows(x.data_ptr<float>(), weight.data_ptr<float>(), out.data_ptr<float>(), rows, dim, static_cast<float>(eps));
    else
      rms_norm_rows(x.data_ptr<at::BFloat16>(), weight.data_ptr<at::BFloat16>(), out.data_ptr<at::BFloat16>(), rows, dim,
                    static_cast<float>(eps));
    return out;
  }
  const at::ScalarType st = stat_type(x.scalar_type());
  at::Tensor h = x.scalar_type() == st ? x : x.to(st);
  at::Tensor var = h.pow(2).mean(-1, /*keepdim=*/true);
  h = h * at::rsqrt(var + eps);
  return weight * (h.scalar_type() == x.scalar_type() ? h : h.to(x.scalar_type()));
}

EmbeddingImpl::EmbeddingImpl(int64_t num, int64_t dim, const at::TensorOptions& options) {
  weight = register_parameter("weight", at::empty({num, dim}, options));
}

at::Tensor EmbeddingImpl::forward(const at::Tensor& ids) { return at::embedding(weight, ids); }

LlamaAttentionImpl::LlamaAttentionImpl(const ModelConfig& c, const at::TensorOptions& o)
    : n_heads_(c.num_attention_heads), n_kv_heads_(c.num_key_value_heads), head_dim_(c.head_dim) {
  const int64_t q = c.q_dim(), kv = c.kv_dim();
  qkv_weight_ = at::empty({q + 2 * kv, c.hidden_size}, o);
  if (c.qkv_bias) qkv_bias_ = at::zeros({q + 2 * kv}, o);
  auto rows = [&](const at::Tensor& t, int64_t start, int64_t n) { return t.defined() ? t.narrow(0, start, n) : at::Tensor(); };
  q_proj = register_module("q_proj", Linear(c.hidden_size, q, c.qkv_bias, o, rows(qkv_weight_, 0, q), rows(qkv_bias_, 0, q)));
  k_proj = register_module("k_proj", Linear(c.hidden_size, kv, c.qkv_bias, o, rows(qkv_weight_, q, kv), rows(qkv_bias_, q, kv)));
  v_proj = register_module("v_proj",
                           Linear(c.hidden_size, kv, c.qkv_bias, o, rows(qkv_weight_, q + kv, kv), rows(qkv_bias_, q + kv, kv)));
  o_proj = register_module("o_proj", Linear(c.q_dim(), c.hidden_size, c.o_bias, o));
}

namespace {
// True when `parts` still are consecutive row blocks of `buffer` (nobody replaced their storage).
bool views_of(const at::Tensor& buffer, std::initializer_list<at::Tensor> parts) {
  if (!buffer.defined()) return true;
  const char* p = static_cast<const char*>(buffer.data_ptr());
  for (const at::Tensor& t : parts) {
    if (!t.defined() || t.data_ptr() != p || t.scalar_type() != buffer.scalar_type()) return false;
    p += t.numel() * t.element_size();
  }
  return true;
}
}  // namespace

bool LlamaAttentionImpl::can_fuse() const {
  return !at::GradMode::is_enabled() && !q_proj->lora_active() && !k_proj->lora_active() && !v_proj->lora_active() &&
         views_of(qkv_weight_, {q_proj->weight, k_proj->weight, v_proj->weight}) &&
         views_of(qkv_bias_, {q_proj->bias, k_proj->bias, v_proj->bias});
}

at::Tensor LlamaAttentionImpl::forward(const at::Tensor& x, const ForwardContext& ctx, int64_t layer) {
  const int64_t B = x.size(0), T = x.size(1), H = n_heads_, KV = n_kv_heads_, D = head_dim_, G = H / KV;
  // Rotary embedding, HF convention: x * cos + rotate_half(x) * sin, rotate_half(x) = [-x2, x1]
  // = roll(x, D/2) with the first half negated (folded into sin_signed).
  auto rope = [&](const at::Tensor& t) { return t * ctx.cos + at::roll(t, {D / 2}, {-1}) * ctx.sin_signed; };
  at::Tensor q, k, v;  // q [B, T, H, D] (any strides); k, v [B, KV, T, D]
  if (can_fuse()) {
    at::Tensor y = at::linear(x, qkv_weight_, qkv_bias_);                 // [B, T, (H + 2 KV) * D]
    at::Tensor qk = rope(y.narrow(-1, 0, (H + KV) * D).view({B, T, H + KV, D}));  // one rope for q and k
    q = qk.narrow(2, 0, H);
    k = qk.narrow(2, H, KV).transpose(1, 2);
    v = y.narrow(-1, (H + KV) * D, KV * D).view({B, T, KV, D}).transpose(1, 2);
  } else {
    q = rope(q_proj(x).view({B, T, H, D}));
    k = rope(k_proj(x).view({B, T, KV, D})).transpose(1, 2);
    v = v_proj(x).view({B, T, KV, D}).transpose(1, 2);
  }

  at::Tensor keys_t = k.transpose(2, 3), values = v;  // keys_t [B, KV, D, S], values [B, KV, S, D]
  if (ctx.cache) {
    const int64_t past = ctx.cache->length;
    at::Tensor& kc = ctx.cache->keys[layer];    // [B, KV, D, capacity]
    at::Tensor& vc = ctx.cache->values[layer];  // [B, KV, capacity, D]
    kc.narrow(3, past, T).copy_(keys_t);
    vc.narrow(2, past, T).copy_(v);
    keys_t = kc.narrow(3, 0, past + T);
    values = vc.narrow(2, 0, past + T);
  }
  const int64_t S = values.size(2);
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  // Inference on the CPU: one pass over the keys and values (cpu_attention.h) for fp32 prefills
  // and decoding steps, and bf16 decoding steps. A bf16 prefill stays with oneDNN's bf16 batched
  // matmuls, whose dot products outrun the kernel's fp32 arithmetic on many queries (bench_generate
  // --new-tokens 1 --attention-peer 1: the kernel 0.87-0.90x there).
  if (ctx.fused_attention && x.device().is_cpu() && !at::GradMode::is_enabled() &&
      (x.scalar_type() == at::kFloat || (x.scalar_type() == at::kBFloat16 && T == 1)) &&
      keys_t.scalar_type() == x.scalar_type() &&
      (!ctx.mask.defined() || ctx.mask.scalar_type() == x.scalar_type()) && (S == 1 || keys_t.stride(3) == 1) &&
      values.stride(3) == 1) {
    const at::Tensor mask = ctx.mask.defined() ? ctx.mask.reshape({ctx.mask.size(0), T, S}) : at::Tensor();
    return o_proj(cpu_attention(q * scale, keys_t, values, mask, ctx.causal).reshape({B, T, H * D}));
  }
  // Grouped-query attention without copying keys: query head h = kv * G + j reads kv head kv.
  // The softmax scale multiplies the queries (D numbers a query) rather than the scores (S a query).
  at::Tensor qg = (T == 1 ? q.reshape({B, KV, G, D}) : q.reshape({B, T, KV, G, D}).permute({0, 2, 3, 1, 4}).reshape({B, KV, G * T, D})) * scale;
  // One decoding step of a small fp32 problem: products and sums beat CPU bmm, which loops over
  // the B * KV small matrices one at a time (bf16 bmm has a fast oneDNN path; bf16 elementwise
  // ops do not).
  const bool elementwise = T == 1 && x.device().is_cpu() && stat_type(x.scalar_type()) == x.scalar_type() &&
                           B * H * S * D <= (int64_t{1} << 22);
  // bf16 CPU inference: the mask add and the softmax in one pass (attention_softmax.h).
  const bool one_pass_softmax = !elementwise && x.device().is_cpu() && x.scalar_type() == at::kBFloat16 &&
                                !at::GradMode::is_enabled() && ctx.one_pass_softmax;
  // Rows [b0, b0 + n): scores, mask, softmax, weighted values.
  auto attend_rows = [&](int64_t b0, int64_t n) {
    const at::Tensor qr = qg.narrow(0, b0, n), kr = keys_t.narrow(0, b0, n), vr = values.narrow(0, b0, n);
    at::Tensor scores = elementwise ? (qr.unsqueeze(-1) * kr.unsqueeze(2)).sum(3)  // [n, KV, G, S]
                                    : at::matmul(qr, kr);                          // [n, KV, G*T, S]
    if (one_pass_softmax) {
      at::Tensor mask;
      if (ctx.mask.defined()) {
        mask = ctx.mask.size(0) == 1 ? ctx.mask : ctx.mask.narrow(0, b0, n);
        mask = mask.reshape({mask.size(0), T, S}).contiguous();
      }
      at::Tensor probs = attention_softmax_bf16(scores.view({-1, S}), mask, T).view({n, KV, G * T, S});
      return at::matmul(probs, vr);
    }
    if (ctx.mask.defined())
      scores = scores.view({n, KV, G, T, S}) + (ctx.mask.size(0) == 1 ? ctx.mask : ctx.mask.narrow(0, b0, n));
    at::Tensor probs = at::softmax(scores, -1, stat_type(x.scalar_type())).to(x.scalar_type()).view({n, KV, G * T, S});
    return elementwise ? (probs.unsqueeze(-1) * vr.unsqueeze(2)).sum(3)  // [n, KV, G, D]
                       : at::matmul(probs, vr);                          // [n, KV, G*T, D]
  };
  at::Tensor out;
  const int64_t rows = ctx.attention_rows > 0 ? ctx.attention_rows : B;
  if (rows >= B) {
    out = attend_rows(0, B);
  } else {
    out = at::empty({B, KV, G * T, D}, x.options());
    for (int64_t b0 = 0; b0 < B; b0 += rows) {
      const int64_t n = std::min(rows, B - b0);
      out.narrow(0, b0, n).copy_(attend_rows(b0, n));
    }
  }
  out = T == 1 ? out.reshape({B, 1, H * D}) : out.view({B, KV, G, T, D}).permute({0, 3, 1, 2, 4}).reshape({B, T, H * D});
  return o_proj(out);
}

LlamaMLPImpl::LlamaMLPImpl(const ModelConfig& c, const at::TensorOptions& o) : intermediate_(c.intermediate_size) {
  const int64_t I = c.intermediate_size;
  gate_up_weight_ = at::empty({2 * I, c.hidden_size}, o);
  if (c.mlp_bias) gate_up_bias_ = at::zeros({2 * I}, o);
  auto rows = [&](const at::Tensor& t, int64_t start) { return t.defined() ? t.narrow(0, start, I) : at::Tensor(); };
  gate_proj = register_module("gate_proj", Linear(c.hidden_size, I, c.mlp_bias, o, rows(gate_up_weight_, 0), rows(gate_up_bias_, 0)));
  up_proj = register_module("up_proj", Linear(c.hidden_size, I, c.mlp_bias, o, rows(gate_up_weight_, I), rows(gate_up_bias_, I)));
  down_proj = register_module("down_proj", Linear(I, c.hidden_size, c.mlp_bias, o));
}

bool LlamaMLPImpl::can_fuse() const {
  return !at::GradMode::is_enabled() && !gate_proj->lora_active() && !up_proj->lora_active() &&
         views_of(gate_up_weight_, {gate_proj->weight, up_proj->weight}) &&
         views_of(gate_up_bias_, {gate_proj->bias, up_proj->bias});
}

at::Tensor LlamaMLPImpl::forward(const at::Tensor& x, bool one_pass) {
  if (can_fuse()) {
    at::Tensor y = at::linear(x, gate_up_weight_, gate_up_bias_);  // [B, T, 2 I]
    if (one_pass && swiglu_applies(y)) return down_proj(swiglu(y, intermediate_));
    return down_proj(at::silu(y.narrow(-1, 0, intermediate_)) * y.narrow(-1, intermediate_, intermediate_));
  }
  return down_proj(at::silu(gate_proj(x)) * up_proj(x));
}

LlamaDecoderLayerImpl::LlamaDecoderLayerImpl(const ModelConfig& c, const at::TensorOptions& o) {
  self_attn = register_module("self_attn", LlamaAttention(c, o));
  mlp = register_module("mlp", LlamaMLP(c, o));
  input_layernorm = register_module("input_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps, o));
  post_attention_layernorm = register_module("post_attention_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps, o));
}

at::Tensor LlamaDecoderLayerImpl::forward(const at::Tensor& x, const ForwardContext& ctx, int64_t layer) {
  at::Tensor h = x + self_attn(input_layernorm(x), ctx, layer);
  return h + mlp->forward(post_attention_layernorm(h), ctx.one_pass_swiglu);
}

LlamaModelImpl::LlamaModelImpl(const ModelConfig& c, const at::TensorOptions& o) {
  embed_tokens = register_module("embed_tokens", Embedding(c.vocab_size, c.hidden_size, o));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    layer_list.push_back(LlamaDecoderLayer(c, o));
    layers->push_back(layer_list.back());
  }
  norm = register_module("norm", RMSNorm(c.hidden_size, c.rms_norm_eps, o));
}

// ---------------------------------------------------------------------------------------------

LlamaForCausalLMImpl::LlamaForCausalLMImpl(const ModelConfig& config, const ModelOptions& options)
    : config_(config), options_(options) {
  RLRF_CHECK(options.dtype == at::kFloat || options.dtype == at::kBFloat16 || options.dtype == at::kHalf || options.dtype == at::kDouble,
             "model dtype {} is not supported (fp32, bf16; fp16 and fp64 for tests)", c10::toString(options.dtype));
  const at::TensorOptions o = options.tensor_options();
  model = register_module("model", LlamaModel(config, o));
  if (!config.tie_word_embeddings) lm_head = register_module("lm_head", Linear(config.hidden_size, config.vocab_size, false, o));
  inv_freq_ = rope_inv_freq(config).to(o.device());
}

at::Device LlamaForCausalLMImpl::device() const { return at::Device(options_.device); }

at::Tensor LlamaForCausalLMImpl::lm_head_weight() const {
  return lm_head ? lm_head->weight : model->embed_tokens->weight;
}

std::vector<std::pair<std::string, Linear>> LlamaForCausalLMImpl::named_linears() {
  std::vector<std::pair<std::string, Linear>> out;
  for (size_t i = 0; i < model->layer_list.size(); ++i) {
    auto& l = model->layer_list[i];
    const std::string p = "model.layers." + std::to_string(i) + ".";
    out.emplace_back(p + "self_attn.q_proj", l->self_attn->q_proj);
    out.emplace_back(p + "self_attn.k_proj", l->self_attn->k_proj);
    out.emplace_back(p + "self_attn.v_proj", l->self_attn->v_proj);
    out.emplace_back(p + "self_attn.o_proj", l->self_attn->o_proj);
    out.emplace_back(p + "mlp.gate_proj", l->mlp->gate_proj);
    out.emplace_back(p + "mlp.up_proj", l->mlp->up_proj);
    out.emplace_back(p + "mlp.down_proj", l->mlp->down_proj);
  }
  if (lm_head) out.emplace_back("lm_head", lm_head);
  return out;
}

void LlamaForCausalLMImpl::ensure_rope_table(int64_t n) {
  if (rope_cos_.defined() && rope_cos_.size(0) >= n) return;
  n = std::max<int64_t>({n, 256, rope_cos_.defined() ? 2 * rope_cos_.size(0) : 0});
  // Built outside InferenceMode and without grad: usable by inference and training alike.
  c10::InferenceMode normal(false);
  at::NoGradGuard no_grad;
  at::Tensor pos = at::arange(n, at::TensorOptions().dtype(at::kLong).device(device())).to(at::kFloat);
  at::Tensor freqs = pos.unsqueeze(-1) * inv_freq_;  // [n, D/2] fp32, as HF: position x inv_freq
  at::Tensor c = at::cos(freqs), s = at::sin(freqs);
  rope_cos_ = at::cat({c, c}, -1).to(options_.dtype);
  rope_sin_ = at::cat({at::neg(s), s}, -1).to(options_.dtype);
}

ForwardContext LlamaForCausalLMImpl::make_context(const at::Tensor& positions_in, const at::Tensor& key_valid,
                                                  int64_t B, int64_t T, KVCache* cache, const at::Tensor& attend) {
  ForwardContext ctx;
  ctx.cache = cache;
  const at::Device dev = device();
  const int64_t past = cache ? cache->length : 0;
  const int64_t S = past + T;
  // Reduced-precision CPU prefills take attention a few rows at a time (see set_attention_chunk_bytes;
  // measured in bench_generate, 304-token prompts x 64: bf16 prefill 1.23-1.35x faster; fp32 was not
  // faster, its batched matmuls prefer the whole batch).
  if (T > 1 && dev.is_cpu() && !at::GradMode::is_enabled() && attention_chunk_bytes_ > 0 &&
      options_.dtype != at::kFloat && options_.dtype != at::kDouble) {
    const int64_t row_bytes = config_.num_attention_heads * T * S * int64_t{4};  // one row's fp32 scores
    ctx.attention_rows = std::max<int64_t>(1, attention_chunk_bytes_ / row_bytes);
  }
  ctx.one_pass_softmax = one_pass_softmax_;
  ctx.one_pass_swiglu = one_pass_swiglu_;
  ctx.fused_attention = fused_attention_;
  ctx.causal = !attend.defined();
  at::Tensor positions;
  int64_t max_pos = S - 1;
  if (positions_in.defined()) {
    RLRF_CHECK(positions_in.dim() == 2 && positions_in.size(0) == B && positions_in.size(1) == T,
               "positions should be [{}, {}], got {}", B, T, c10::str(positions_in.sizes()));
    positions = positions_in.to(dev, at::kLong);
    int64_t min_pos = 0;
    if (positions.is_cpu()) {  // a few ints: read them rather than launch two reductions
      at::Tensor c = positions.contiguous();
      const int64_t* p = c.data_ptr<int64_t>();
      max_pos = min_pos = p[0];
      for (int64_t i = 1; i < c.numel(); ++i) {
        max_pos = std::max(max_pos, p[i]);
        min_pos = std::min(min_pos, p[i]);
      }
    } else {
      max_pos = positions.max().item<int64_t>();
      min_pos = positions.min().item<int64_t>();
    }
    RLRF_CHECK(min_pos >= 0, "positions must be >= 0, got {}", min_pos);
  } else {
    positions = at::arange(past, past + T, at::TensorOptions().dtype(at::kLong).device(dev)).expand({B, T});
  }
  ensure_rope_table(max_pos + 1);
  at::Tensor flat = positions.reshape({-1});
  ctx.cos = rope_cos_.index_select(0, flat).view({B, T, 1, config_.head_dim});         // [B, T, 1, D]
  ctx.sin_signed = rope_sin_.index_select(0, flat).view({B, T, 1, config_.head_dim});  // [B, T, 1, D]

  const bool window = config_.sliding_window > 0 && S > config_.sliding_window;
  if (T == 1 && !key_valid.defined() && !window && !attend.defined()) return ctx;  // one query sees every key
  if (key_valid.defined()) {
    RLRF_CHECK(key_valid.dim() == 2 && key_valid.size(0) == B && key_valid.size(1) == S,
               "key_valid should be [{}, {}], got {}", B, S, c10::str(key_valid.sizes()));
  }
  at::Tensor allowed;  // [1 or B, T, S]
  if (attend.defined()) {
    RLRF_CHECK(attend.dim() == 3 && attend.size(0) == B && attend.size(1) == T && attend.size(2) == S,
               "attend should be [{}, {}, {}], got {}", B, T, S, c10::str(attend.sizes()));
    RLRF_CHECK(!window, "attend masks with a sliding window are not supported");
    allowed = attend.to(dev, at::kBool);
    if (key_valid.defined()) allowed = allowed.logical_and(key_valid.to(dev, at::kBool).unsqueeze(1));
  } else if (T == 1 && !window) {
    allowed = key_valid.to(dev, at::kBool).unsqueeze(1);  // the newest slot sees every earlier one
  } else {
    auto lopt = at::TensorOptions().dtype(at::kLong).device(dev);
    at::Tensor qslot = at::arange(past, S, lopt).unsqueeze(1);  // [T, 1]
    at::Tensor kslot = at::arange(0, S, lopt).unsqueeze(0);     // [1, S]
    allowed = kslot <= qslot;                                   // [T, S] causal by slot
    if (window) allowed = allowed.logical_and(qslot - kslot < config_.sliding_window);
    allowed = allowed.unsqueeze(0);
    if (key_valid.defined()) allowed = allowed.logical_and(key_valid.to(dev, at::kBool).unsqueeze(1));
  }
  // The dtype's lowest finite value, as HF's finfo(dtype).min.
  const double lowest = options_.dtype == at::kDouble  ? std::numeric_limits<double>::lowest()
                        : options_.dtype == at::kHalf ? -65504.0
                        : options_.dtype == at::kBFloat16 ? -3.3895313892515355e38
                                                          : static_cast<double>(std::numeric_limits<float>::lowest());
  at::Tensor mask = at::zeros(allowed.sizes(), at::TensorOptions().dtype(options_.dtype).device(dev));
  mask.masked_fill_(allowed.logical_not(), lowest);
  ctx.mask = mask.view({allowed.size(0), 1, 1, T, S});  // broadcasts over [B, KV, G, T, S]
  return ctx;
}

at::Tensor LlamaForCausalLMImpl::hidden_states(const at::Tensor& ids, const at::Tensor& positions,
                                               const at::Tensor& key_valid, KVCache* cache, const at::Tensor& attend) {
  RLRF_CHECK(ids.dim() == 2, "ids should be [batch, time], got {}", c10::str(ids.sizes()));
  const int64_t B = ids.size(0), T = ids.size(1);
  if (cache) {
    RLRF_CHECK(cache->batch() == B && cache->length + T <= cache->capacity(),
               "KV cache of {} rows and {} slots ({} used) cannot take a [{}, {}] step", cache->batch(),
               cache->capacity(), cache->length, B, T);
  }
  ForwardContext ctx = make_context(positions, key_valid, B, T, cache, attend);
  at::Tensor x = model->embed_tokens(ids.to(device()));  // [B, T, hidden]
  for (size_t l = 0; l < model->layer_list.size(); ++l) x = model->layer_list[l](x, ctx, static_cast<int64_t>(l));
  if (cache) cache->length += T;
  return model->norm(x);
}

at::Tensor LlamaForCausalLMImpl::logits(const at::Tensor& hidden) {
  const at::ScalarType t = stat_type(hidden.scalar_type());
  if (lm_head) return lm_head(hidden).to(t);
  return at::linear(hidden, model->embed_tokens->weight).to(t);
}

at::Tensor LlamaForCausalLMImpl::forward(const at::Tensor& ids, const at::Tensor& positions, const at::Tensor& key_valid,
                                         KVCache* cache) {
  return logits(hidden_states(ids, positions, key_valid, cache));
}

}  // namespace rlrf::llm
