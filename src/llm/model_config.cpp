// config.json of the Llama family (Llama, Mistral, Qwen2): parse, check, write back.
#include "llm/model_config.h"

#include <cstdint>
#include <nlohmann/json.hpp>

#include "util/error.h"
#include "util/json_reader.h"
#include "util/files.h"

namespace rlrf::llm {

namespace {

using json = nlohmann::json;

const char* kSupported = "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM";

std::string model_type_of_architecture(const std::string& arch) {
  if (arch == "LlamaForCausalLM") return "llama";
  if (arch == "MistralForCausalLM") return "mistral";
  if (arch == "Qwen2ForCausalLM") return "qwen2";
  return "";
}

}  // namespace

ModelConfig ModelConfig::load(const fs::path& path) {
  fs::path file = fs::is_directory(path) ? path / "config.json" : path;
  return parse(read_file(file), file.string());
}

ModelConfig ModelConfig::parse(const std::string& text, const std::string& where) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    fail("{}: not valid JSON: {}", where, e.what());
  }
  RLRF_CHECK(j.is_object(), "{}: config.json should hold a JSON object", where);
  JsonReader r{j, where};
  ModelConfig c;
  c.source_json = text;

  std::string model_type = r.get_string("model_type", "");
  std::string arch;
  if (r.has("architectures")) {
    RLRF_CHECK(j["architectures"].is_array() && !j["architectures"].empty() && j["architectures"][0].is_string(),
               "{}: \"architectures\" should be a list of names", where);
    arch = j["architectures"][0].get<std::string>();
  }
  if (!arch.empty()) {
    std::string t = model_type_of_architecture(arch);
    RLRF_CHECK(!t.empty(), "{}: architecture '{}' (model_type '{}') is not supported; supported: {}", where, arch,
               model_type, kSupported);
    RLRF_CHECK(model_type.empty() || model_type == t, "{}: architecture '{}' does not match model_type '{}'", where,
               arch, model_type);
    model_type = t;
  } else {
    RLRF_CHECK(model_type == "llama" || model_type == "mistral" || model_type == "qwen2",
               "{}: model_type '{}' is not supported (no \"architectures\" given); supported: {}", where, model_type,
               kSupported);
    arch = model_type == "llama" ? "LlamaForCausalLM" : model_type == "mistral" ? "MistralForCausalLM" : "Qwen2ForCausalLM";
  }
  c.architecture = arch;
  c.model_type = model_type;

  std::string act = r.get_string("hidden_act", "silu");
  RLRF_CHECK(act == "silu", "{}: hidden_act '{}' is not supported (the Llama family uses silu)", where, act);

  c.vocab_size = r.get_int("vocab_size", 0, true);
  c.hidden_size = r.get_int("hidden_size", 0, true);
  c.num_hidden_layers = r.get_int("num_hidden_layers", 0, true);
  c.num_attention_heads = r.get_int("num_attention_heads", 0, true);
  c.num_key_value_heads = r.get_int("num_key_value_heads", c.num_attention_heads);
  c.intermediate_size = r.get_int("intermediate_size", 0, true);
  RLRF_CHECK(c.vocab_size > 0 && c.hidden_size > 0 && c.num_hidden_layers > 0 && c.num_attention_heads > 0 &&
                 c.num_key_value_heads > 0 && c.intermediate_size > 0,
             "{}: sizes must be positive (vocab_size {}, hidden_size {}, num_hidden_layers {}, num_attention_heads {}, "
             "num_key_value_heads {}, intermediate_size {})",
             where, c.vocab_size, c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads,
             c.intermediate_size);
  RLRF_CHECK(c.num_attention_heads % c.num_key_value_heads == 0,
             "{}: num_attention_heads {} is not a multiple of num_key_value_heads {}", where, c.num_attention_heads,
             c.num_key_value_heads);
  RLRF_CHECK(r.has("head_dim") || c.hidden_size % c.num_attention_heads == 0,
             "{}: hidden_size {} is not a multiple of num_attention_heads {} and no head_dim is given", where,
             c.hidden_size, c.num_attention_heads);
  c.head_dim = r.get_int("head_dim", c.hidden_size / c.num_attention_heads);
  RLRF_CHECK(c.head_dim > 0 && c.head_dim % 2 == 0, "{}: head_dim {} must be positive and even", where, c.head_dim);
  c.max_position_embeddings = r.get_int("max_position_embeddings", 2048);
  c.rope_theta = r.get_double("rope_theta", 10000.0);
  c.rms_norm_eps = r.get_double("rms_norm_eps", 1e-6);
  c.tie_word_embeddings = r.get_bool("tie_word_embeddings", false);
  c.torch_dtype = r.get_string("torch_dtype", "float32");

  if (model_type == "qwen2") {
    c.qkv_bias = true;
    RLRF_CHECK(!r.get_bool("use_sliding_window", false),
               "{}: Qwen2 with use_sliding_window = true is not supported", where);
  } else {
    bool attention_bias = r.get_bool("attention_bias", false);
    c.qkv_bias = c.o_bias = attention_bias;
    c.mlp_bias = r.get_bool("mlp_bias", false);
  }
  if (model_type == "mistral") c.sliding_window = r.get_int("sliding_window", 0);

  if (r.has("rope_scaling")) {
    const json& s = j["rope_scaling"];
    RLRF_CHECK(s.is_object(), "{}: \"rope_scaling\" should be an object or null", where);
    JsonReader rs{s, where};
    std::string type = rs.get_string("rope_type", rs.get_string("type", "default"));
    if (type == "default") {
      c.rope_scaling.type = "none";
    } else if (type == "linear") {
      c.rope_scaling.type = "linear";
      c.rope_scaling.factor = rs.get_double("factor", 1.0);
    } else if (type == "llama3") {
      c.rope_scaling.type = "llama3";
      RLRF_CHECK(s.contains("factor"), "{}: rope_scaling of type llama3 needs \"factor\"", where);
      c.rope_scaling.factor = rs.get_double("factor", 8.0);
      c.rope_scaling.low_freq_factor = rs.get_double("low_freq_factor", 1.0);
      c.rope_scaling.high_freq_factor = rs.get_double("high_freq_factor", 4.0);
      c.rope_scaling.original_max_position_embeddings = rs.get_int("original_max_position_embeddings", 8192);
      RLRF_CHECK(c.rope_scaling.high_freq_factor > c.rope_scaling.low_freq_factor,
                 "{}: rope_scaling high_freq_factor must exceed low_freq_factor", where);
    } else {
      fail("{}: rope_scaling type '{}' is not supported (supported: default, linear, llama3)", where, type);
    }
    RLRF_CHECK(c.rope_scaling.factor > 0, "{}: rope_scaling factor must be positive", where);
  }

  c.bos_token_id = static_cast<int32_t>(r.get_int("bos_token_id", -1));
  if (r.has("eos_token_id")) {
    const json& e = j["eos_token_id"];
    if (e.is_array()) {
      for (const json& x : e) {
        RLRF_CHECK(x.is_number_integer(), "{}: eos_token_id list holds {}", where, x.dump());
        c.eos_token_ids.push_back(x.get<int32_t>());
      }
    } else {
      RLRF_CHECK(e.is_number_integer(), "{}: eos_token_id should be an integer or a list", where);
      c.eos_token_ids.push_back(e.get<int32_t>());
    }
  }
  return c;
}

std::string ModelConfig::to_json() const {
  json j = json::object();
  if (!source_json.empty()) {
    try {
      j = json::parse(source_json);
    } catch (const json::exception&) {
      j = json::object();
    }
  }
  j["architectures"] = {architecture};
  j["model_type"] = model_type;
  j["vocab_size"] = vocab_size;
  j["hidden_size"] = hidden_size;
  j["num_hidden_layers"] = num_hidden_layers;
  j["num_attention_heads"] = num_attention_heads;
  j["num_key_value_heads"] = num_key_value_heads;
  j["head_dim"] = head_dim;
  j["intermediate_size"] = intermediate_size;
  j["max_position_embeddings"] = max_position_embeddings;
  j["rope_theta"] = rope_theta;
  if (rope_scaling.type == "none") {
    j["rope_scaling"] = nullptr;
  } else if (rope_scaling.type == "linear") {
    j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", rope_scaling.factor}};
  } else {
    j["rope_scaling"] = {{"rope_type", "llama3"},
                         {"factor", rope_scaling.factor},
                         {"low_freq_factor", rope_scaling.low_freq_factor},
                         {"high_freq_factor", rope_scaling.high_freq_factor},
                         {"original_max_position_embeddings", rope_scaling.original_max_position_embeddings}};
  }
  j["rms_norm_eps"] = rms_norm_eps;
  j["tie_word_embeddings"] = tie_word_embeddings;
  j["hidden_act"] = "silu";
  if (model_type != "qwen2") {
    j["attention_bias"] = qkv_bias;
    j["mlp_bias"] = mlp_bias;
  }
  if (model_type == "mistral") {
    if (sliding_window > 0) j["sliding_window"] = sliding_window;
    else j["sliding_window"] = nullptr;
  }
  if (bos_token_id >= 0) j["bos_token_id"] = bos_token_id;
  if (eos_token_ids.size() == 1) j["eos_token_id"] = eos_token_ids[0];
  else if (!eos_token_ids.empty()) j["eos_token_id"] = eos_token_ids;
  j["torch_dtype"] = torch_dtype;
  return j.dump(2) + "\n";
}

int64_t ModelConfig::num_parameters() const {
  const int64_t h = hidden_size;
  int64_t attn = h * q_dim() + 2 * h * kv_dim() + q_dim() * h;
  if (qkv_bias) attn += q_dim() + 2 * kv_dim();
  if (o_bias) attn += h;
  int64_t mlp = 3 * h * intermediate_size + (mlp_bias ? 2 * intermediate_size + h : 0);
  int64_t layer = attn + mlp + 2 * h;
  int64_t emb = vocab_size * h * (tie_word_embeddings ? 1 : 2);
  return emb + num_hidden_layers * layer + h;
}

}  // namespace rlrf::llm
