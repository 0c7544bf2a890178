// GGUF v3 writing (llama architecture, tokenizer embedded) and reading back.
#include "llm/gguf.h"

#include <ATen/ATen.h>
#include <cstdint>
#include <torch/csrc/autograd/grad_mode.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <regex>
#include <set>

#include "llm/model_config.h"
#include "util/byte_reader.h"
#include "util/error.h"
#include "util/files.h"
#include "util/log.h"
#include "util/strings.h"

namespace rlrf::llm {

namespace {

using json = nlohmann::json;

// gguf_type
enum : uint32_t {
  kU8 = 0, kI8 = 1, kU16 = 2, kI16 = 3, kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7, kString = 8, kArray = 9,
  kU64 = 10, kI64 = 11, kF64 = 12,
};
// ggml_type
enum : uint32_t { kGgmlF32 = 0, kGgmlF16 = 1 };
// llama.cpp's token types (llama_token_type)
enum : int32_t { kTokNormal = 1, kTokUnknown = 2, kTokControl = 3, kTokUserDefined = 4, kTokUnused = 5, kTokByte = 6 };

uint64_t align_up(uint64_t n, uint64_t a) { return (n + a - 1) / a * a; }

// ---------------------------------------------------------------------------------------------
// Writer

class GgufWriter {
 public:
  void add_u32(const std::string& key, uint32_t v) { scalar(key, kU32, &v, 4); }
  void add_i32(const std::string& key, int32_t v) { scalar(key, kI32, &v, 4); }
  void add_f32(const std::string& key, float v) { scalar(key, kF32, &v, 4); }
  void add_bool(const std::string& key, bool v) {
    int8_t b = v ? 1 : 0;
    scalar(key, kBool, &b, 1);
  }
  void add_string(const std::string& key, const std::string& v) {
    begin(key, kString);
    str(v);
  }
  void add_strings(const std::string& key, const std::vector<std::string>& v) {
    begin(key, kArray);
    pod(uint32_t{kString});
    pod(static_cast<uint64_t>(v.size()));
    for (const std::string& s : v) str(s);
  }
  void add_f32s(const std::string& key, const std::vector<float>& v) {
    begin(key, kArray);
    pod(uint32_t{kF32});
    pod(static_cast<uint64_t>(v.size()));
    kv_.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
  }
  void add_i32s(const std::string& key, const std::vector<int32_t>& v) {
    begin(key, kArray);
    pod(uint32_t{kI32});
    pod(static_cast<uint64_t>(v.size()));
    kv_.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(int32_t));
  }
  // `t`: HF layout [out, in] (or [n]); stored as f32 or f16 as given.
  void add_tensor(const std::string& name, const at::Tensor& t) {
    RLRF_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kHalf, "gguf: tensor '{}' has dtype {} (f32 or f16 only)",
               name, c10::toString(t.scalar_type()));
    RLRF_CHECK(!names_.count(name), "gguf: tensor '{}' written twice", name);
    names_.insert(name);
    tensors_.push_back({name, t.detach().to(at::kCPU).contiguous()});
  }

  void write(const fs::path& path) const {
    std::string head;
    head += "GGUF";
    append_pod(head, kGgufVersion);
    append_pod(head, static_cast<int64_t>(tensors_.size()));
    append_pod(head, n_kv_);
    head += kv_;
    uint64_t offset = 0;
    std::vector<uint64_t> offsets;
    for (const Pending& p : tensors_) {
      append_str(head, p.name);
      append_pod(head, static_cast<uint32_t>(p.data.dim()));
      for (int64_t d = p.data.dim() - 1; d >= 0; --d) append_pod(head, static_cast<int64_t>(p.data.size(d)));
      append_pod(head, p.data.scalar_type() == at::kHalf ? kGgmlF16 : kGgmlF32);
      append_pod(head, offset);
      offsets.push_back(offset);
      offset = align_up(offset + p.data.nbytes(), kGgufAlignment);
    }
    head.resize(align_up(head.size(), kGgufAlignment), '\0');
    const fs::path tmp = path.string() + ".tmp";
    if (!path.parent_path().empty()) ensure_dir(path.parent_path());
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      RLRF_CHECK(out.good(), "cannot open '{}' for writing", tmp.string());
      out.write(head.data(), static_cast<std::streamsize>(head.size()));
      uint64_t at = 0;
      static const char zeros[kGgufAlignment] = {};
      for (size_t i = 0; i < tensors_.size(); ++i) {
        out.write(zeros, static_cast<std::streamsize>(offsets[i] - at));
        const at::Tensor& d = tensors_[i].data;
        out.write(static_cast<const char*>(d.data_ptr()), static_cast<std::streamsize>(d.nbytes()));
        at = offsets[i] + d.nbytes();
      }
      out.write(zeros, static_cast<std::streamsize>(align_up(at, kGgufAlignment) - at));
      out.flush();
      RLRF_CHECK(out.good(), "writing '{}' failed (disk full?)", tmp.string());
    }
    fs::rename(tmp, path);
  }

 private:
  struct Pending {
    std::string name;
    at::Tensor data;
  };
  template <typename T>
  static void append_pod(std::string& s, T v) {
    s.append(reinterpret_cast<const char*>(&v), sizeof(T));
  }
  static void append_str(std::string& s, const std::string& v) {
    append_pod(s, static_cast<uint64_t>(v.size()));
    s += v;
  }
  template <typename T>
  void pod(T v) { append_pod(kv_, v); }
  void str(const std::string& v) { append_str(kv_, v); }
  void begin(const std::string& key, uint32_t type) {
    RLRF_CHECK(!keys_.count(key), "gguf: metadata key '{}' written twice", key);
    keys_.insert(key);
    str(key);
    pod(type);
    ++n_kv_;
  }
  void scalar(const std::string& key, uint32_t type, const void* v, size_t n) {
    begin(key, type);
    kv_.append(static_cast<const char*>(v), n);
  }

  std::string kv_;
  int64_t n_kv_ = 0;
  std::set<std::string> keys_, names_;
  std::vector<Pending> tensors_;
};

// ---------------------------------------------------------------------------------------------
// Tokenizer

bool contains_type(const json& node, const std::string& type) {
  if (node.is_object()) {
    if (node.contains("type") && node["type"].is_string() && node["type"].get<std::string>() == type) return true;
    for (auto& [k, v] : node.items())
      if (contains_type(v, type)) return true;
  } else if (node.is_array()) {
    for (const json& v : node)
      if (contains_type(v, type)) return true;
  }
  return false;
}

// The Split regex of a byte-level pre-tokenizer ("" when none).
std::string split_regex(const json& node) {
  if (node.is_object()) {
    if (node.value("type", "") == "Split" && node.contains("pattern") && node["pattern"].contains("Regex"))
      return node["pattern"]["Regex"].get<std::string>();
    for (auto& [k, v] : node.items())
      if (std::string r = split_regex(v); !r.empty()) return r;
  } else if (node.is_array()) {
    for (const json& v : node)
      if (std::string r = split_regex(v); !r.empty()) return r;
  }
  return "";
}

// llama.cpp's name of a byte-level BPE pre-tokenizer, recognised by its Split regex.
std::string bpe_pre_name(const std::string& regex, const std::string& where) {
  static const std::string kLlama3 =
      "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
  static const std::string kQwen2 =
      "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
  if (regex == kLlama3) return "llama-bpe";
  if (regex == kQwen2) return "qwen2";
  if (regex.empty()) return "gpt-2";  // ByteLevel with its own (GPT-2) regex
  fail("'{}': the byte-level pre-tokenizer's regex {} is not one this writer knows for llama.cpp (Llama 3, Qwen2, GPT-2)",
       where, json(regex).dump());
}

struct TokenizerMeta {
  std::string model, pre;
  std::vector<std::string> tokens;
  std::vector<float> scores;  // "llama" only
  std::vector<int32_t> types;
  std::vector<std::string> merges;  // "gpt2" only
  int32_t bos = -1, eos = -1;
  int add_bos = -1;  // -1: llama.cpp's default for the vocabulary
  std::string chat_template;
};

TokenizerMeta tokenizer_meta(const fs::path& dir, const ModelConfig& config) {
  const fs::path file = dir / "tokenizer.json";
  RLRF_CHECK(fs::exists(file), "'{}' does not exist: GGUF embeds the tokenizer from a Hugging Face tokenizer.json", file.string());
  json tj;
  try {
    tj = json::parse(read_file(file));
  } catch (const json::exception& e) {
    fail("'{}' is not valid JSON: {}", file.string(), e.what());
  }
  const std::string where = file.string();
  RLRF_CHECK(tj.contains("model") && tj["model"].is_object() && tj["model"].contains("vocab"), "'{}': no model.vocab", where);
  const json& model = tj["model"];
  const std::string type = model.value("type", "");
  RLRF_CHECK(type == "BPE", "'{}': tokenizer model {} is not supported for GGUF (BPE only: SentencePiece-style or byte-level)",
             where, json(type).dump());
  const json& pre = tj.contains("pre_tokenizer") ? tj["pre_tokenizer"] : json();
  const json& dec = tj.contains("decoder") ? tj["decoder"] : json();
  const bool byte_level = contains_type(pre, "ByteLevel") || contains_type(dec, "ByteLevel");
  const bool metaspace = contains_type(pre, "Metaspace") || contains_type(dec, "Metaspace") ||
                         tj.value("normalizer", json()).dump().find("\xe2\x96\x81") != std::string::npos ||
                         dec.dump().find("\xe2\x96\x81") != std::string::npos;
  RLRF_CHECK(byte_level || metaspace, "'{}': a BPE tokenizer neither byte-level nor SentencePiece-style (\u2581 for spaces); "
             "llama.cpp has no vocabulary for it", where);

  // Ids: the vocabulary plus added tokens; holes and rows past the tokenizer get [PADn].
  std::map<int64_t, std::string> by_id;
  for (auto& [tok, id] : model["vocab"].items()) by_id[id.get<int64_t>()] = tok;
  std::map<int64_t, bool> added;  // id -> special
  for (const json& a : tj.value("added_tokens", json::array())) {
    const int64_t id = a.at("id").get<int64_t>();
    by_id[id] = a.at("content").get<std::string>();
    added[id] = a.value("special", false);
  }
  const int64_t n = config.vocab_size;
  RLRF_CHECK(!by_id.empty() && by_id.rbegin()->first < n, "'{}': token id {} is past the model's vocab_size {}", where,
             by_id.empty() ? 0 : by_id.rbegin()->first, n);
  TokenizerMeta m;
  m.model = byte_level ? "gpt2" : "llama";
  m.pre = byte_level ? bpe_pre_name(split_regex(pre), where) : "default";
  static const std::regex byte_token("<0x[0-9A-Fa-f]{2}>");
  for (int64_t id = 0; id < n; ++id) {
    auto it = by_id.find(id);
    if (it == by_id.end()) {
      m.tokens.push_back(fmt::format("[PAD{}]", id));
      m.types.push_back(kTokUnused);
    } else {
      m.tokens.push_back(it->second);
      auto a = added.find(id);
      if (a != added.end()) m.types.push_back(a->second ? kTokControl : kTokUserDefined);
      else if (!byte_level && std::regex_match(it->second, byte_token)) m.types.push_back(kTokByte);
      else m.types.push_back(kTokNormal);
    }
    // SentencePiece-style: llama.cpp merges the pair whose result scores highest; -id ranks the
    // merged tokens in the order BPE learnt them (what llama.cpp's converter writes here).
    if (!byte_level) m.scores.push_back(-static_cast<float>(id));
  }
  if (byte_level) {
    for (const json& mg : model.value("merges", json::array())) {
      if (mg.is_string()) m.merges.push_back(mg.get<std::string>());
      else m.merges.push_back(mg.at(0).get<std::string>() + " " + mg.at(1).get<std::string>());
    }
  }

  // Special ids: tokenizer_config.json's tokens first (as llama.cpp's converter), then config.json.
  json tc;
  if (fs::exists(dir / "tokenizer_config.json")) tc = json::parse(read_file(dir / "tokenizer_config.json"), nullptr, false);
  auto id_of = [&](const char* key) -> int32_t {
    if (!tc.is_object() || !tc.contains(key)) return -1;
    const json& v = tc[key];
    std::string text = v.is_string() ? v.get<std::string>() : v.is_object() ? v.value("content", "") : "";
    for (auto& [id, tok] : by_id)
      if (tok == text && !text.empty()) return static_cast<int32_t>(id);
    return -1;
  };
  m.bos = id_of("bos_token");
  if (m.bos < 0) m.bos = config.bos_token_id;
  m.eos = id_of("eos_token");
  if (m.eos < 0 && !config.eos_token_ids.empty()) m.eos = config.eos_token_ids.front();
  if (tc.is_object() && tc.contains("add_bos_token") && tc["add_bos_token"].is_boolean() && !tc["add_bos_token"].get<bool>())
    m.add_bos = 0;
  if (tc.is_object() && tc.contains("chat_template") && tc["chat_template"].is_string())
    m.chat_template = tc["chat_template"].get<std::string>();
  return m;
}

// ---------------------------------------------------------------------------------------------
// Tensor names: Hugging Face -> llama.cpp.

std::string gguf_name(const std::string& hf) {
  static const std::map<std::string, std::string> top = {
      {"model.embed_tokens.weight", "token_embd.weight"}, {"model.norm.weight", "output_norm.weight"}, {"lm_head.weight", "output.weight"}};
  if (auto it = top.find(hf); it != top.end()) return it->second;
  static const std::regex layer(R"(model\.layers\.(\d+)\.(.+)\.(weight|bias))");
  static const std::map<std::string, std::string> parts = {
      {"input_layernorm", "attn_norm"},   {"self_attn.q_proj", "attn_q"},      {"self_attn.k_proj", "attn_k"},
      {"self_attn.v_proj", "attn_v"},     {"self_attn.o_proj", "attn_output"}, {"post_attention_layernorm", "ffn_norm"},
      {"mlp.gate_proj", "ffn_gate"},      {"mlp.up_proj", "ffn_up"},           {"mlp.down_proj", "ffn_down"}};
  std::smatch m;
  if (std::regex_match(hf, m, layer)) {
    auto it = parts.find(m[2].str());
    if (it != parts.end()) return "blk." + m[1].str() + "." + it->second + "." + m[3].str();
  }
  return "";
}

// The order llama.cpp's converter writes a block's tensors in.
int part_rank(const std::string& name) {
  static const std::vector<std::string> order = {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
                                                 "ffn_norm",  "ffn_gate", "ffn_up", "ffn_down"};
  for (size_t i = 0; i < order.size(); ++i)
    if (name.find("." + order[i] + ".") != std::string::npos) return static_cast<int>(i);
  return 99;
}

// Rope frequency factors of rope_scaling type llama3 (llama.cpp reads them as rope_freqs.weight).
std::vector<float> llama3_rope_factors(const ModelConfig& c) {
  const RopeScaling& s = c.rope_scaling;
  const double old_ctx = static_cast<double>(s.original_max_position_embeddings);
  const double low_wavelen = old_ctx / s.low_freq_factor, high_wavelen = old_ctx / s.high_freq_factor;
  std::vector<float> out;
  for (int64_t i = 0; i < c.head_dim; i += 2) {
    const double freq = 1.0 / std::pow(c.rope_theta, static_cast<double>(i) / static_cast<double>(c.head_dim));
    const double wavelen = 2 * M_PI / freq;
    if (wavelen < high_wavelen) {
      out.push_back(1.0f);
    } else if (wavelen > low_wavelen) {
      out.push_back(static_cast<float>(s.factor));
    } else {
      const double smooth = (old_ctx / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
      out.push_back(static_cast<float>(1.0 / ((1 - smooth) / s.factor + smooth)));
    }
  }
  return out;
}

}  // namespace

at::Tensor permute_rope_rows(const at::Tensor& w, int64_t n_heads) {
  const int64_t rows = w.size(0);
  RLRF_CHECK(n_heads > 0 && rows % (2 * n_heads) == 0, "permute_rope_rows: {} rows do not split into {} heads of even size", rows,
             n_heads);
  std::vector<int64_t> shape = {n_heads, 2, rows / n_heads / 2};
  for (int64_t d = 1; d < w.dim(); ++d) shape.push_back(w.size(d));
  return w.reshape(shape).transpose(1, 2).reshape(w.sizes()).contiguous();
}

void save_gguf(LlamaForCausalLM& model, const fs::path& tokenizer_dir, const fs::path& path, const GgufOptions& options) {
  const ModelConfig& c = model->config();
  RLRF_CHECK(options.dtype == at::kFloat || options.dtype == at::kHalf, "gguf: dtype {} is not written (f32 or f16)",
             dtype_name(options.dtype));
  RLRF_CHECK(c.model_type == "llama" || c.model_type == "mistral",
             "gguf: model_type '{}' is not written as llama.cpp's llama architecture (its rotary layout differs); "
             "llama and mistral only", c.model_type);
  RLRF_CHECK(c.rope_scaling.type == "none" || c.rope_scaling.type == "linear" || c.rope_scaling.type == "llama3",
             "gguf: rope_scaling '{}' is not supported", c.rope_scaling.type);
  if (c.sliding_window > 0 && c.sliding_window < c.max_position_embeddings)
    log_warn("gguf: llama.cpp's llama architecture attends to the whole context; this model's sliding window of {} is "
             "not kept (prompts longer than it will differ)", c.sliding_window);
  TokenizerMeta tok = tokenizer_meta(tokenizer_dir, c);
  const std::string arch = "llama";
  const uint32_t file_type = options.dtype == at::kHalf ? 1 : 0;  // LLAMA_FTYPE_ALL_F32 / MOSTLY_F16

  GgufWriter w;
  w.add_string("general.architecture", arch);
  w.add_string("general.name", options.name.empty() ? path.stem().string() : options.name);
  w.add_u32(arch + ".context_length", static_cast<uint32_t>(c.max_position_embeddings));
  w.add_u32(arch + ".embedding_length", static_cast<uint32_t>(c.hidden_size));
  w.add_u32(arch + ".block_count", static_cast<uint32_t>(c.num_hidden_layers));
  w.add_u32(arch + ".feed_forward_length", static_cast<uint32_t>(c.intermediate_size));
  w.add_u32(arch + ".attention.head_count", static_cast<uint32_t>(c.num_attention_heads));
  w.add_u32(arch + ".attention.head_count_kv", static_cast<uint32_t>(c.num_key_value_heads));
  w.add_u32(arch + ".rope.dimension_count", static_cast<uint32_t>(c.head_dim));
  if (c.head_dim * c.num_attention_heads != c.hidden_size) {
    w.add_u32(arch + ".attention.key_length", static_cast<uint32_t>(c.head_dim));
    w.add_u32(arch + ".attention.value_length", static_cast<uint32_t>(c.head_dim));
  }
  w.add_f32(arch + ".attention.layer_norm_rms_epsilon", static_cast<float>(c.rms_norm_eps));
  w.add_f32(arch + ".rope.freq_base", static_cast<float>(c.rope_theta));
  if (c.rope_scaling.type == "linear") {
    w.add_string(arch + ".rope.scaling.type", "linear");
    w.add_f32(arch + ".rope.scaling.factor", static_cast<float>(c.rope_scaling.factor));
  }
  w.add_u32("general.file_type", file_type);
  w.add_u32(arch + ".vocab_size", static_cast<uint32_t>(c.vocab_size));
  w.add_string("tokenizer.ggml.model", tok.model);
  w.add_string("tokenizer.ggml.pre", tok.pre);
  w.add_strings("tokenizer.ggml.tokens", tok.tokens);
  if (!tok.scores.empty()) w.add_f32s("tokenizer.ggml.scores", tok.scores);
  w.add_i32s("tokenizer.ggml.token_type", tok.types);
  if (!tok.merges.empty()) w.add_strings("tokenizer.ggml.merges", tok.merges);
  if (tok.bos >= 0) w.add_u32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(tok.bos));
  if (tok.eos >= 0) w.add_u32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(tok.eos));
  if (tok.add_bos == 0) w.add_bool("tokenizer.ggml.add_bos_token", false);
  if (!tok.chat_template.empty()) w.add_string("tokenizer.chat_template", tok.chat_template);

  // Tensors: top-level ones first, then each block in the converter's order.
  torch::NoGradGuard no_grad;
  struct Item {
    int64_t block;
    int rank;
    std::string name;
    at::Tensor t;
  };
  std::vector<Item> items;
  for (auto& p : model->named_parameters(/*recurse=*/true)) {
    const std::string& hf = p.key();
    RLRF_CHECK(hf.find(".lora_") == std::string::npos, "gguf: tensor '{}' is a LoRA weight: merge the adapters first", hf);
    std::string name = gguf_name(hf);
    RLRF_CHECK(!name.empty(), "gguf: tensor '{}' has no llama.cpp name (not a Llama tensor)", hf);
    at::Tensor t = p.value().detach().to(at::kCPU, at::kFloat);
    if (name.find(".attn_q.") != std::string::npos) t = permute_rope_rows(t, c.num_attention_heads);
    if (name.find(".attn_k.") != std::string::npos) t = permute_rope_rows(t, c.num_key_value_heads);
    if (options.dtype == at::kHalf && t.dim() > 1) t = t.to(at::kHalf);
    int64_t block = -1;
    int rank = name == "token_embd.weight" ? 0 : name == "output_norm.weight" ? 1 : 2;
    if (starts_with(name, "blk.")) {
      block = std::stoll(name.substr(4, name.find('.', 4) - 4));
      rank = part_rank(name) * 2 + (ends_with(name, ".bias") ? 1 : 0);
    }
    items.push_back({block, rank, name, t});
  }
  if (c.rope_scaling.type == "llama3") {
    std::vector<float> f = llama3_rope_factors(c);
    items.push_back({-1, 3, "rope_freqs.weight", at::tensor(f, at::kFloat)});
  }
  std::stable_sort(items.begin(), items.end(), [](const Item& a, const Item& b) {
    return a.block != b.block ? a.block < b.block : a.rank < b.rank;
  });
  for (const Item& it : items) w.add_tensor(it.name, it.t);
  w.write(path);
}

// ---------------------------------------------------------------------------------------------
// Reader

namespace {


json read_value(ByteReader& c, uint32_t type, const std::string& key, const fs::path& path) {
  switch (type) {
    case kU8: return c.pod<uint8_t>("a u8");
    case kI8: return c.pod<int8_t>("an i8");
    case kU16: return c.pod<uint16_t>("a u16");
    case kI16: return c.pod<int16_t>("an i16");
    case kU32: return c.pod<uint32_t>("a u32");
    case kI32: return c.pod<int32_t>("an i32");
    case kF32: return c.pod<float>("an f32");
    case kBool: return c.pod<int8_t>("a bool") != 0;
    case kString: return c.str("a string");
    case kU64: return c.pod<uint64_t>("a u64");
    case kI64: return c.pod<int64_t>("an i64");
    case kF64: return c.pod<double>("an f64");
    default: fail("'{}': metadata key '{}' has unknown value type {}", path.string(), key, type);
  }
}

}  // namespace

const GgufTensor* GgufFile::find(const std::string& name) const {
  for (const GgufTensor& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

GgufFile read_gguf(const fs::path& path) {
  const std::string data = read_file(path);
  ByteReader c(data, path, "GGUF");
  GgufFile f;
  RLRF_CHECK(data.size() >= 4 && data.compare(0, 4, "GGUF") == 0, "'{}' is not a GGUF file (no \"GGUF\" magic)", path.string());
  c.pod<uint32_t>("the magic");
  f.version = c.pod<uint32_t>("the version");
  RLRF_CHECK(f.version == kGgufVersion, "'{}': GGUF version {} (only {} is read)", path.string(), f.version, kGgufVersion);
  const int64_t n_tensors = c.pod<int64_t>("the tensor count"), n_kv = c.pod<int64_t>("the key count");
  RLRF_CHECK(n_tensors >= 0 && n_kv >= 0, "'{}': negative counts ({} tensors, {} keys)", path.string(), n_tensors, n_kv);
  for (int64_t i = 0; i < n_kv; ++i) {
    std::string key = c.str("a key");
    GgufValue v;
    v.type = c.pod<uint32_t>("a value type");
    if (v.type == kArray) {
      v.array_type = c.pod<uint32_t>("an array type");
      const uint64_t n = c.pod<uint64_t>("an array length");
      RLRF_CHECK(v.array_type != kArray, "'{}': key '{}' is an array of arrays (not read)", path.string(), key);
      RLRF_CHECK(n <= data.size() - c.pos(), "'{}': truncated GGUF: key '{}' claims {} elements, {} bytes remain", path.string(), key,
                 n, data.size() - c.pos());
      v.value = json::array();
      for (uint64_t k = 0; k < n; ++k) v.value.push_back(read_value(c, v.array_type, key, path));
    } else {
      v.value = read_value(c, v.type, key, path);
    }
    RLRF_CHECK(!f.metadata.count(key), "'{}': key '{}' appears twice", path.string(), key);
    f.keys.push_back(key);
    f.metadata[key] = std::move(v);
  }
  uint64_t alignment = kGgufAlignment;
  if (auto it = f.metadata.find("general.alignment"); it != f.metadata.end()) {
    const json& a = it->second.value;
    RLRF_CHECK((a.is_number_unsigned() || a.is_number_integer()) && a.get<int64_t>() > 0 && a.get<int64_t>() <= (1 << 20) &&
                   (a.get<int64_t>() & (a.get<int64_t>() - 1)) == 0,
               "'{}': general.alignment must be a power of two from 1 to 2^20, got {}", path.string(), a.dump());
    alignment = a.get<uint64_t>();
  }
  for (int64_t i = 0; i < n_tensors; ++i) {
    GgufTensor t;
    t.name = c.str("a tensor name");
    const uint32_t nd = c.pod<uint32_t>("a tensor's dimension count");
    RLRF_CHECK(nd >= 1 && nd <= 4, "'{}': tensor '{}' has {} dimensions", path.string(), t.name, nd);
    for (uint32_t d = 0; d < nd; ++d) t.dims.push_back(c.pod<int64_t>("a tensor dimension"));
    t.ggml_type = c.pod<uint32_t>("a tensor type");
    t.offset = c.pod<uint64_t>("a tensor offset");
    RLRF_CHECK(t.ggml_type == kGgmlF32 || t.ggml_type == kGgmlF16, "'{}': tensor '{}' has ggml type {} (F32 = 0 and F16 = 1 are read)",
               path.string(), t.name, t.ggml_type);
    RLRF_CHECK(t.offset % alignment == 0, "'{}': tensor '{}' offset {} is not a multiple of the alignment {}", path.string(), t.name,
               t.offset, alignment);
    f.tensors.push_back(std::move(t));
  }
  const uint64_t start = align_up(c.pos(), alignment);
  RLRF_CHECK(f.tensors.empty() || start <= data.size(), "'{}': truncated GGUF: the tensor data would start at {}, past the end ({} bytes)",
             path.string(), start, data.size());
  for (GgufTensor& t : f.tensors) {
    std::vector<int64_t> shape(t.dims.rbegin(), t.dims.rend());
    const uint64_t elem = t.ggml_type == kGgmlF16 ? 2 : 4, room = data.size() - start;
    // Sizes are checked against the file before anything is allocated (no overflow on the way).
    uint64_t numel = 1;
    for (int64_t d : shape) {
      RLRF_CHECK(d >= 0, "'{}': tensor '{}' has a negative dimension {}", path.string(), t.name, d);
      RLRF_CHECK(d == 0 || numel <= room / elem / static_cast<uint64_t>(d),
                 "'{}': tensor '{}' of shape [{}] is larger than the file's data ({} bytes)", path.string(), t.name,
                 fmt::join(shape, ", "), room);
      numel *= static_cast<uint64_t>(d);
    }
    const uint64_t bytes = numel * elem;
    RLRF_CHECK(t.offset <= room && bytes <= room - t.offset,
               "'{}': tensor '{}' ({} bytes at {}) runs past the end of the file ({} bytes)", path.string(), t.name, bytes,
               t.offset, data.size());
    t.data = at::empty(shape, t.ggml_type == kGgmlF16 ? at::kHalf : at::kFloat);
    if (bytes > 0) std::memcpy(t.data.data_ptr(), data.data() + start + t.offset, bytes);
  }
  return f;
}

}  // namespace rlrf::llm
