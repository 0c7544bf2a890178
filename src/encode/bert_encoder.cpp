// BertTextEncoder: a BERT-family model, its WordPiece tokenizer and pooling (see bert_encoder.h).
#include "encode/bert_encoder.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <cstdint>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <set>

#include "encode/bert.h"
#include "llm/safetensors.h"
#include "runtime/runtime.h"
#include "text/wordpiece.h"
#include "util/error.h"
#include "util/files.h"
#include "util/log.h"
#include "util/progress.h"
#include "util/sha256.h"
#include "util/strings.h"

namespace rlrf {

using json = nlohmann::json;

namespace {

const std::set<std::string> kPoolings = {"auto", "mean", "cls", "max", "mean_sqrt_len"};

json read_json(const fs::path& path) {
  try {
    return json::parse(read_file(path));
  } catch (const json::parse_error& e) {
    fail("{}: not valid JSON: {}", path.string(), e.what());
  }
}

bool file_exists(const fs::path& p) {
  std::error_code ec;
  return fs::exists(p, ec);
}

// What a sentence-transformers folder says (modules.json and the files it points to).
struct SentenceTransformers {
  bool present = false;
  fs::path transformer_dir;         // the Hugging Face model inside
  std::vector<std::string> modes;   // pooling modes in ST's concatenation order
  bool normalize = false;
  int max_seq_length = 0;
  std::vector<fs::path> files;      // read, for the fingerprint
};

SentenceTransformers read_sentence_transformers(const fs::path& dir) {
  SentenceTransformers st;
  st.transformer_dir = dir;
  const fs::path modules_file = dir / "modules.json";
  if (!file_exists(modules_file)) return st;
  st.present = true;
  st.files.push_back(modules_file);
  json modules = read_json(modules_file);
  RLRF_CHECK(modules.is_array(), "{}: expected a JSON array of modules", modules_file.string());
  bool seen_transformer = false, seen_pooling = false;
  for (const json& m : modules) {
    RLRF_CHECK(m.is_object() && m.contains("type") && m["type"].is_string(), "{}: a module without a \"type\"",
               modules_file.string());
    const std::string type = m["type"].get<std::string>();
    const std::string path = m.value("path", "");
    const std::string kind = type.substr(type.rfind('.') == std::string::npos ? 0 : type.rfind('.') + 1);
    if (kind == "Transformer") {
      RLRF_CHECK(!seen_transformer, "{}: more than one Transformer module", modules_file.string());
      seen_transformer = true;
      st.transformer_dir = path.empty() ? dir : dir / path;
    } else if (kind == "Pooling") {
      seen_pooling = true;
      const fs::path cfg_file = dir / path / "config.json";
      RLRF_CHECK(file_exists(cfg_file), "{}: the Pooling module's {} is missing", modules_file.string(), cfg_file.string());
      st.files.push_back(cfg_file);
      json cfg = read_json(cfg_file);
      auto on = [&](const char* key) { return cfg.contains(key) && cfg[key].is_boolean() && cfg[key].get<bool>(); };
      for (const char* key : {"pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken"})
        RLRF_CHECK(!on(key), "{}: {} is not supported (cls, mean, max, mean_sqrt_len)", cfg_file.string(), key);
      if (on("pooling_mode_cls_token")) st.modes.push_back("cls");
      if (on("pooling_mode_max_tokens")) st.modes.push_back("max");
      if (on("pooling_mode_mean_tokens")) st.modes.push_back("mean");
      if (on("pooling_mode_mean_sqrt_len_tokens")) st.modes.push_back("mean_sqrt_len");
      if (cfg.contains("pooling_mode") && cfg["pooling_mode"].is_string() && st.modes.empty()) {
        std::string mode = cfg["pooling_mode"].get<std::string>();
        if (mode == "cls" || mode == "mean" || mode == "max") st.modes.push_back(mode);
      }
      RLRF_CHECK(!st.modes.empty(), "{}: no pooling mode is switched on", cfg_file.string());
    } else if (kind == "Normalize") {
      st.normalize = true;
    } else {
      fail("{}: module type \"{}\" is not supported (Transformer, Pooling, Normalize); refusing rather than "
           "encoding differently from sentence-transformers",
           modules_file.string(), type);
    }
  }
  RLRF_CHECK(seen_transformer, "{}: no sentence_transformers.models.Transformer module", modules_file.string());
  RLRF_CHECK(seen_pooling, "{}: no Pooling module", modules_file.string());
  for (const fs::path& f : {st.transformer_dir / "sentence_bert_config.json", dir / "sentence_bert_config.json"}) {
    if (!file_exists(f)) continue;
    st.files.push_back(f);
    json cfg = read_json(f);
    if (cfg.contains("max_seq_length") && cfg["max_seq_length"].is_number_integer())
      st.max_seq_length = cfg["max_seq_length"].get<int>();
    break;
  }
  return st;
}

void hash_file(Sha256& h, const fs::path& p) {
  h.update(p.filename().string());
  h.update(read_file(p));
}

// Header, size and 64 evenly spaced 64 KiB blocks of a weights file.
void hash_weights(Sha256& h, const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  RLRF_CHECK(in, "cannot open '{}'", p.string());
  std::error_code ec;
  const uint64_t size = fs::file_size(p, ec);
  h.update(&size, sizeof size);
  uint64_t header = 0;
  in.read(reinterpret_cast<char*>(&header), 8);
  std::string buf(static_cast<size_t>(std::min<uint64_t>(header, size)), '\0');
  in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
  h.update(buf);
  constexpr uint64_t kBlock = 64 << 10, kBlocks = 64;
  buf.resize(kBlock);
  const uint64_t data = 8 + header;
  for (uint64_t i = 0; i < kBlocks && size > data; ++i) {
    uint64_t off = data + (size - data) * i / kBlocks;
    in.clear();
    in.seekg(static_cast<std::streamoff>(off));
    in.read(buf.data(), static_cast<std::streamsize>(std::min(kBlock, size - off)));
    h.update(buf.data(), static_cast<size_t>(in.gcount()));
  }
}

std::string sanitize(std::string s) {
  for (char& c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') c = '_';
  return s;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Options as an encoder name

std::string BertEncoderOptions::to_spec() const {
  const BertEncoderOptions d;
  std::vector<std::string> kv;
  if (pooling != d.pooling) kv.push_back("pooling=" + pooling);
  if (normalize != d.normalize) kv.push_back(std::string("normalize=") + (normalize ? "true" : "false"));
  if (max_length != d.max_length) kv.push_back("max_length=" + std::to_string(max_length));
  if (dtype != d.dtype) kv.push_back("dtype=" + dtype);
  if (batch_size != d.batch_size) kv.push_back("batch_size=" + std::to_string(batch_size));
  if (device != d.device) kv.push_back("device=" + device);
  std::string spec = "bert:" + model.string();
  if (!kv.empty()) spec += "?" + join(kv, "&");
  return spec;
}

BertEncoderOptions BertEncoderOptions::parse_spec(std::string_view spec) {
  RLRF_CHECK(starts_with(spec, "bert:"), "encoder '{}': a BERT encoder is named bert:PATH[?key=value&...]", spec);
  std::string_view rest = spec.substr(5);
  std::string_view query;
  size_t q = rest.rfind('?');
  if (q != std::string_view::npos && rest.substr(q).find('=') != std::string_view::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  BertEncoderOptions o;
  o.model = std::string(rest);
  RLRF_CHECK(!o.model.empty(), "encoder '{}': no model directory after 'bert:' (set [knowledge] encoder_model)", spec);
  for (std::string_view part : split(query, "&")) {
    if (part.empty()) continue;
    size_t eq = part.find('=');
    RLRF_CHECK(eq != std::string_view::npos, "encoder '{}': setting '{}' is not key=value", spec, part);
    std::string key(part.substr(0, eq)), value(part.substr(eq + 1));
    auto as_int = [&](int lo) {
      auto v = parse_int(value);
      RLRF_CHECK(v && *v >= lo && *v <= 1 << 20, "encoder '{}': {} must be an integer >= {}, got '{}'", spec, key, lo,
                 value);
      return static_cast<int>(*v);
    };
    if (key == "pooling") {
      RLRF_CHECK(kPoolings.count(value), "encoder '{}': pooling '{}' (auto, mean, cls, max, mean_sqrt_len)", spec, value);
      o.pooling = value;
    } else if (key == "normalize") {
      RLRF_CHECK(value == "true" || value == "false", "encoder '{}': normalize must be true or false", spec);
      o.normalize = value == "true";
    } else if (key == "max_length") {
      o.max_length = as_int(0);
    } else if (key == "dtype") {
      RLRF_CHECK(value == "fp32" || value == "bf16", "encoder '{}': dtype '{}' (fp32, bf16)", spec, value);
      o.dtype = value;
    } else if (key == "batch_size") {
      o.batch_size = as_int(1);
    } else if (key == "device") {
      RLRF_CHECK(value == "auto" || value == "cpu" || starts_with(value, "cuda"),
                 "encoder '{}': device '{}' (auto, cpu, cuda, cuda:N)", spec, value);
      o.device = value;
    } else {
      fail("encoder '{}': unknown setting '{}' (pooling, normalize, max_length, dtype, batch_size, device)", spec, key);
    }
  }
  return o;
}

// ---------------------------------------------------------------------------------------------
// The encoder

struct BertTextEncoder::Impl {
  BertEncoderOptions options;
  std::shared_ptr<WordPieceTokenizer> tokenizer;
  mutable bert::BertModel model{nullptr};  // forward() is not const (lazy fusing)
  at::Device device = at::kCPU;             // where the model runs (options.device resolved)
  std::vector<std::string> modes;
  bool normalize = false;
  int max_length = 0;
  std::string fingerprint;
  std::string dir_name;

  // One padded batch of encodings -> pooled [B, dim] float32.
  at::Tensor encode_batch(const std::vector<const WordPieceEncoding*>& batch) const;
  at::Tensor forward(const std::vector<const WordPieceEncoding*>& batch, at::Tensor& mask) const;
};

BertTextEncoder::BertTextEncoder(const BertEncoderOptions& options) : impl_(std::make_unique<Impl>()) {
  Impl& t = *impl_;
  t.options = options;
  const fs::path& dir = options.model;
  RLRF_CHECK(!dir.empty(), "BERT encoder: no model directory (set [knowledge] encoder_model or --model)");
  RLRF_CHECK(fs::is_directory(dir), "BERT encoder: '{}' is not a directory (give a Hugging Face model directory with "
             "config.json, model.safetensors and tokenizer.json, or a sentence-transformers folder)", dir.string());
  RLRF_CHECK(kPoolings.count(options.pooling), "BERT encoder: pooling '{}' (auto, mean, cls, max, mean_sqrt_len)",
             options.pooling);
  RLRF_CHECK(options.dtype == "fp32" || options.dtype == "bf16", "BERT encoder: dtype '{}' (fp32, bf16)", options.dtype);
  RLRF_CHECK(options.batch_size >= 1, "BERT encoder: batch_size must be >= 1, got {}", options.batch_size);
  SentenceTransformers st = read_sentence_transformers(dir);
  const fs::path model_dir = st.transformer_dir;
  const at::ScalarType dtype = options.dtype == "bf16" ? at::kBFloat16 : at::kFloat;
  t.device = at::Device(resolve_device(options.device));
  t.model = bert::load_model(model_dir, dtype, t.device.str());
  const bert::BertConfig& c = t.model->config();

  fs::path tok_dir = file_exists(model_dir / "tokenizer.json") ? model_dir : dir;
  RLRF_CHECK(file_exists(tok_dir / "tokenizer.json"),
             "BERT encoder: no tokenizer.json in '{}' (save the tokenizer with the model: "
             "AutoTokenizer.from_pretrained(...).save_pretrained(dir) writes it)", model_dir.string());
  t.tokenizer = std::make_shared<WordPieceTokenizer>(WordPieceTokenizer::load(tok_dir));
  RLRF_CHECK(t.tokenizer->vocab_size() <= c.vocab_size, "{}: the tokenizer has {} tokens but the model's vocabulary {}",
             t.tokenizer->file().string(), t.tokenizer->vocab_size(), c.vocab_size);

  if (options.pooling == "auto") {
    t.modes = st.present ? st.modes : std::vector<std::string>{"mean"};
    t.normalize = options.normalize || st.normalize;
  } else {
    t.modes = {options.pooling};
    t.normalize = options.normalize;
  }

  int limit = static_cast<int>(c.max_position_embeddings);
  if (options.max_length > 0) {
    RLRF_CHECK(options.max_length <= limit, "BERT encoder: max_length {} exceeds the {} positions of '{}'",
               options.max_length, limit, model_dir.string());
    RLRF_CHECK(options.max_length > t.tokenizer->num_special_tokens(), "BERT encoder: max_length {} leaves no room for text",
               options.max_length);
    t.max_length = options.max_length;
  } else {
    if (t.tokenizer->model_max_length() > 0) limit = std::min(limit, t.tokenizer->model_max_length());
    if (st.max_seq_length > 0) limit = std::min(limit, st.max_seq_length);
    t.max_length = limit;
  }

  Sha256 h;
  for (const char* f : {"config.json", "tokenizer.json", "tokenizer_config.json"})
    if (file_exists((std::string(f) == "config.json" ? model_dir : tok_dir) / f))
      hash_file(h, (std::string(f) == "config.json" ? model_dir : tok_dir) / f);
  for (const fs::path& f : st.files) hash_file(h, f);
  llm::TensorStore store = llm::TensorStore::open(model_dir);
  std::set<std::string> weight_files;
  for (const std::string& n : store.names()) weight_files.insert(store.file_of(n).string());
  for (const std::string& f : weight_files) hash_weights(h, f);
  t.fingerprint = h.hex_digest();
  fs::path canonical = fs::weakly_canonical(dir);
  t.dir_name = sanitize(canonical.filename().empty() ? canonical.parent_path().filename().string()
                                                     : canonical.filename().string());
  log_info("BERT encoder {}: {} layers, hidden {}, pooling {}{}, max_length {}, {}", dir.string(), c.num_hidden_layers,
           c.hidden_size, join(t.modes, "+"), t.normalize ? " + L2" : "", t.max_length, options.dtype);
}

BertTextEncoder::~BertTextEncoder() = default;

std::string BertTextEncoder::name() const {
  const Impl& t = *impl_;
  return fmt::format("bert-{}-{}-{}{}-L{}-{}", t.dir_name, t.fingerprint.substr(0, 12), join(t.modes, "+"),
                     t.normalize ? "-l2" : "", t.max_length, t.options.dtype);
}

int BertTextEncoder::dim() const {
  return static_cast<int>(impl_->model->config().hidden_size * static_cast<int64_t>(impl_->modes.size()));
}

const std::vector<std::string>& BertTextEncoder::pooling_modes() const { return impl_->modes; }
bool BertTextEncoder::normalized() const { return impl_->normalize; }
int BertTextEncoder::max_length() const { return impl_->max_length; }
const std::string& BertTextEncoder::fingerprint() const { return impl_->fingerprint; }

WordPieceEncoding BertTextEncoder::tokenize(std::string_view text) const {
  return impl_->tokenizer->encode(text, std::nullopt, true, impl_->max_length);
}

at::Tensor BertTextEncoder::Impl::forward(const std::vector<const WordPieceEncoding*>& batch, at::Tensor& mask) const {
  const int64_t B = static_cast<int64_t>(batch.size());
  int64_t T = 0;
  for (const WordPieceEncoding* e : batch) T = std::max<int64_t>(T, static_cast<int64_t>(e->ids.size()));
  const int64_t pad = std::max<int32_t>(tokenizer->pad_id(), 0);
  at::Tensor ids = at::full({B, T}, pad, at::kLong);
  at::Tensor types = at::zeros({B, T}, at::kLong);
  mask = at::zeros({B, T}, at::kLong);
  int64_t* pi = ids.data_ptr<int64_t>();
  int64_t* pt = types.data_ptr<int64_t>();
  int64_t* pm = mask.data_ptr<int64_t>();
  for (int64_t b = 0; b < B; ++b) {
    const WordPieceEncoding& e = *batch[static_cast<size_t>(b)];
    for (size_t i = 0; i < e.ids.size(); ++i) {
      pi[b * T + static_cast<int64_t>(i)] = e.ids[i];
      pt[b * T + static_cast<int64_t>(i)] = e.type_ids[i];
      pm[b * T + static_cast<int64_t>(i)] = 1;
    }
  }
  if (!device.is_cpu()) {
    ids = ids.to(device);
    types = types.to(device);
    mask = mask.to(device);
  }
  return model->forward(ids, mask, types);  // [B, T, H]
}

at::Tensor BertTextEncoder::Impl::encode_batch(const std::vector<const WordPieceEncoding*>& batch) const {
  at::Tensor mask;
  at::Tensor h = forward(batch, mask).to(at::kFloat);  // [B, T, H]
  at::Tensor m = mask.unsqueeze(-1).to(at::kFloat);    // [B, T, 1]
  at::Tensor count = m.sum(1);                         // [B, 1]
  std::vector<at::Tensor> parts;
  for (const std::string& mode : modes) {
    if (mode == "cls")
      parts.push_back(h.select(1, 0));
    else if (mode == "mean")
      parts.push_back((h * m).sum(1) / count.clamp_min(1e-9));
    else if (mode == "max")
      parts.push_back(h.masked_fill(m == 0, -1e9).amax(1));
    else  // mean_sqrt_len
      parts.push_back((h * m).sum(1) / count.sqrt());
  }
  at::Tensor out = parts.size() == 1 ? parts[0] : at::cat(parts, -1);  // [B, dim]
  if (normalize) out = out / out.norm(2, {-1}, true).clamp_min(1e-12);
  return out;
}

at::Tensor BertTextEncoder::hidden_states(std::string_view text) const {
  c10::InferenceMode guard;
  WordPieceEncoding e = tokenize(text);
  at::Tensor mask;
  return impl_->forward({&e}, mask)[0].to(at::kCPU, at::kFloat).clone();
}

at::Tensor BertTextEncoder::encode(const std::vector<std::string>& texts) {
  const Impl& t = *impl_;
  const int64_t n = static_cast<int64_t>(texts.size());
  at::Tensor out = at::zeros({n, dim()}, at::kFloat);
  if (n == 0) return out;
  std::vector<WordPieceEncoding> encodings(static_cast<size_t>(n));
  at::parallel_for(0, n, 64, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) encodings[static_cast<size_t>(i)] = tokenize(texts[static_cast<size_t>(i)]);
  });
  // Longest first, so the slowest batches come first and padding within a batch is small.
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return encodings[static_cast<size_t>(a)].ids.size() > encodings[static_cast<size_t>(b)].ids.size();
  });
  const bool show = t.options.progress && n > t.options.batch_size;
  std::unique_ptr<Progress> progress;
  if (show) progress = std::make_unique<Progress>("encode " + name(), n, "texts");
  c10::InferenceMode guard;
  for (int64_t start = 0; start < n; start += t.options.batch_size) {
    const int64_t stop = std::min<int64_t>(n, start + t.options.batch_size);
    std::vector<const WordPieceEncoding*> batch;
    for (int64_t k = start; k < stop; ++k) batch.push_back(&encodings[static_cast<size_t>(order[static_cast<size_t>(k)])]);
    at::Tensor pooled = t.encode_batch(batch).to(at::kCPU);
    at::Tensor index = at::from_blob(order.data() + start, {stop - start}, at::kLong).clone();
    out.index_copy_(0, index, pooled);
    if (progress) progress->advance(stop - start);
  }
  if (progress) progress->finish();
  return out;
}

}  // namespace rlrf
