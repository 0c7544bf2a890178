// LoRA adapters on the Llama model: apply, on/off, merge, trainable parameters, PEFT save/load.
#include "llm/lora.h"

#include <algorithm>
#include <cstdint>

#include <ATen/ATen.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>

#include "llm/checkpoint.h"
#include "llm/safetensors.h"
#include "llm/sampler.h"
#include "util/config.h"
#include "util/error.h"
#include "util/json_reader.h"
#include "util/files.h"
#include "util/log.h"
#include "util/strings.h"

namespace rlrf::llm {

namespace {

using json = nlohmann::json;

bool matches(const std::string& path, const LoraConfig& c) {
  if (!c.target_regex.empty()) return std::regex_match(path, std::regex(c.target_regex));
  for (const std::string& t : c.target_modules) {
    if (t == "all-linear") {
      if (path != "lm_head") return true;
      continue;
    }
    if (path == t || ends_with(path, "." + t)) return true;
  }
  return false;
}

std::vector<std::pair<std::string, Linear>> adapted(LlamaForCausalLM& model) {
  std::vector<std::pair<std::string, Linear>> out;
  for (auto& [name, lin] : model->named_linears())
    if (lin->has_lora()) out.emplace_back(name, lin);
  return out;
}

}  // namespace

void LoraConfig::read(const ConfigSection& s) {
  s.read("r", r);
  s.read("alpha", alpha);
  s.read("dropout", dropout);
  s.read("use_rslora", use_rslora);
  s.read("target_modules", target_modules);
  int64_t seed_value = static_cast<int64_t>(seed);
  s.read("seed", seed_value);
  seed = static_cast<uint64_t>(seed_value);
  s.check_no_unknown_keys();  // [dpo.lora] / [sft.lora]: their parents check only their own keys
}

std::vector<std::string> apply_lora(LlamaForCausalLM& model, const LoraConfig& config) {
  RLRF_CHECK(config.r > 0, "LoRA r must be positive, got {}", config.r);
  RLRF_CHECK(!config.target_modules.empty() || !config.target_regex.empty(), "LoRA target_modules is empty");
  for (auto& p : model->parameters()) p.set_requires_grad(false);
  LoraSpec spec{config.r, config.alpha, config.dropout, config.use_rslora};
  std::vector<std::string> names;
  auto linears = model->named_linears();
  for (size_t i = 0; i < linears.size(); ++i) {
    auto& [name, lin] = linears[i];
    if (!matches(name, config)) {
      lin->remove_lora();
      continue;
    }
    Rng mix(config.seed ^ (0x9e3779b97f4a7c15ull * (i + 1)));
    lin->add_lora(spec, mix.next_u64());
    names.push_back(name);
  }
  RLRF_CHECK(!names.empty(), "LoRA target_modules [{}] match no linear layer of the model (names are like q_proj, "
             "k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)", join(config.target_modules, ", "));
  return names;
}

bool has_lora(LlamaForCausalLM& model) { return !adapted(model).empty(); }

void set_lora_enabled(LlamaForCausalLM& model, bool enabled) {
  for (auto& [name, lin] : model->named_linears()) lin->set_lora_enabled(enabled);
}

void merge_lora(LlamaForCausalLM& model) {
  for (auto& [name, lin] : model->named_linears()) lin->merge_lora();
}

LlamaForCausalLM convert_model(LlamaForCausalLM& model, const ModelOptions& options) {
  RLRF_CHECK(!has_lora(model), "convert_model: merge or remove the LoRA adapters first");
  LlamaForCausalLM out(model->config(), options);
  torch::NoGradGuard no_grad;
  auto src = model->named_parameters(true);
  for (auto& item : out->named_parameters(true)) {
    const at::Tensor* from = src.find(item.key());
    RLRF_CHECK(from != nullptr, "convert_model: the source model has no parameter '{}'", item.key());
    item.value().copy_(*from);  // copy_ keeps the fused q/k/v and gate/up views current
  }
  out->eval();
  return out;
}

LlamaForCausalLM load_merged_policy(const fs::path& base, const std::vector<fs::path>& adapters, const ModelOptions& options) {
  ModelOptions fp32 = options;
  fp32.dtype = options.dtype == at::kDouble ? at::kDouble : at::kFloat;
  LlamaForCausalLM model = load_model(base, fp32);
  for (const fs::path& dir : adapters) {
    load_lora(model, dir);
    merge_lora(model);
  }
  if (fp32.dtype == options.dtype) return model;
  return convert_model(model, options);
}

void enable_full_finetune(LlamaForCausalLM& model) {
  RLRF_CHECK(!has_lora(model), "full fine-tuning asked for, but the model has LoRA adapters (merge them first)");
  for (auto& p : model->parameters()) p.set_requires_grad(true);
}

std::vector<std::pair<std::string, at::Tensor>> named_trainable_parameters(LlamaForCausalLM& model) {
  std::vector<std::pair<std::string, at::Tensor>> out;
  const bool lora = has_lora(model);
  for (auto& item : model->named_parameters(true)) {
    const bool is_lora = item.key().find(".lora_") != std::string::npos;
    if (lora ? is_lora : item.value().requires_grad()) out.emplace_back(item.key(), item.value());
  }
  return out;
}

std::vector<at::Tensor> trainable_parameters(LlamaForCausalLM& model) {
  std::vector<at::Tensor> out;
  for (auto& [name, t] : named_trainable_parameters(model)) out.push_back(t);
  return out;
}

std::vector<std::string> adapted_module_names(LlamaForCausalLM& model) {
  // Short names ("q_proj") when every layer of that name carries an adapter, so that PEFT, which
  // matches a name against the ends of module paths, adapts exactly the trained layers; the full
  // paths of the adapted layers otherwise (some layers of a name only, or a target_regex).
  std::map<std::string, std::pair<int, int>> by_short;  // short name -> (adapted, all)
  std::vector<std::string> full;
  for (auto& [name, lin] : model->named_linears()) {
    auto& counts = by_short[name.substr(name.rfind('.') + 1)];
    ++counts.second;
    if (lin->has_lora()) {
      ++counts.first;
      full.push_back(name);
    }
  }
  std::vector<std::string> short_names;
  for (const auto& [short_name, counts] : by_short) {
    if (counts.first == 0) continue;
    if (counts.first != counts.second) return full;
    short_names.push_back(short_name);
  }
  return short_names;
}

namespace {

// adapter_config.json of a LoRA adapter (PEFT's keys and defaults).
json adapter_config_json(const LoraSpec& spec, const json& target_modules, const std::string& base_model) {
  json j;
  j["peft_type"] = "LORA";
  j["task_type"] = "CAUSAL_LM";
  j["base_model_name_or_path"] = base_model;
  j["r"] = spec.r;
  if (spec.alpha == std::floor(spec.alpha)) j["lora_alpha"] = static_cast<int64_t>(spec.alpha);
  else j["lora_alpha"] = spec.alpha;
  j["lora_dropout"] = spec.dropout;
  j["target_modules"] = target_modules;
  j["bias"] = "none";
  j["fan_in_fan_out"] = false;
  j["inference_mode"] = true;
  j["init_lora_weights"] = true;
  j["use_rslora"] = spec.use_rslora;
  j["use_dora"] = false;
  j["modules_to_save"] = nullptr;
  j["layers_to_transform"] = nullptr;
  j["layers_pattern"] = nullptr;
  j["rank_pattern"] = json::object();
  j["alpha_pattern"] = json::object();
  j["revision"] = nullptr;
  return j;
}

}  // namespace

void save_lora(LlamaForCausalLM& model, const LoraConfig& config, const fs::path& dir, at::ScalarType dtype) {
  auto layers = adapted(model);
  RLRF_CHECK(!layers.empty(), "save_lora: the model has no LoRA adapters to save to '{}'", dir.string());
  std::vector<NamedTensor> tensors;
  for (auto& [name, lin] : layers) {
    tensors.push_back({kPeftPrefix + name + ".lora_A.weight", lin->lora_A->weight.detach().to(dtype)});
    tensors.push_back({kPeftPrefix + name + ".lora_B.weight", lin->lora_B->weight.detach().to(dtype)});
  }
  const LoraSpec& spec = layers.front().second->lora_spec();
  const json target = adapted_module_names(model);
  ensure_dir(dir);
  save_safetensors(dir / "adapter_model.safetensors", tensors, {{"format", "pt"}});
  write_file_atomic(dir / "adapter_config.json", adapter_config_json(spec, target, config.base_model_name_or_path).dump(2) + "\n");
}

LoraConfig read_lora_config(const fs::path& dir) {
  const fs::path cfg_path = dir / "adapter_config.json";
  json j;
  try {
    j = json::parse(read_file(cfg_path));
  } catch (const json::exception& e) {
    fail("'{}' is not valid JSON: {}", cfg_path.string(), e.what());
  }
  const std::string where = cfg_path.string();
  RLRF_CHECK(j.is_object(), "'{}' should hold a JSON object", where);
  auto get = [&](const char* key) -> const json* { return j.contains(key) && !j[key].is_null() ? &j[key] : nullptr; };
  const json* pt = get("peft_type");
  RLRF_CHECK(pt && pt->is_string() && pt->get<std::string>() == "LORA", "'{}': peft_type is {}, not \"LORA\"", where,
             pt ? pt->dump() : "missing");
  LoraConfig c;
  const JsonReader in{j, where};
  const json* r = get("r");
  RLRF_CHECK(r && r->is_number_integer() && r->get<int64_t>() > 0 && r->get<int64_t>() <= 65536,
             "'{}': \"r\" should be a whole number from 1 to 65536", where);
  c.r = r->get<int64_t>();
  RLRF_CHECK(in.has("lora_alpha"), "'{}': \"lora_alpha\" is missing", where);
  c.alpha = in.get_double("lora_alpha", 0);
  c.dropout = in.get_double("lora_dropout", c.dropout);
  RLRF_CHECK(c.dropout >= 0 && c.dropout < 1, "'{}': \"lora_dropout\" should be in [0, 1), got {}", where, c.dropout);
  c.use_rslora = in.get_bool("use_rslora", c.use_rslora);
  RLRF_CHECK(!in.get_bool("use_dora", false), "'{}': DoRA adapters (use_dora) are not supported", where);
  if (const json* b = get("bias")) {
    RLRF_CHECK(b->is_string() && b->get<std::string>() == "none", "'{}': bias {} is not supported (only \"none\")", where,
               b->dump());
  }
  RLRF_CHECK(!in.get_bool("fan_in_fan_out", false), "'{}': fan_in_fan_out = true is not supported", where);
  for (const char* key : {"rank_pattern", "alpha_pattern"}) {
    if (const json* p = get(key)) RLRF_CHECK(p->empty(), "'{}': {} is not supported", where, key);
  }
  for (const char* key : {"modules_to_save", "layers_to_transform", "layer_replication"}) {
    if (const json* p = get(key)) RLRF_CHECK(p->empty(), "'{}': {} is not supported", where, key);
  }
  if (const json* t = get("task_type"); t && t->is_string() && t->get<std::string>() != "CAUSAL_LM")
    log_warn("'{}': task_type is {}, expected CAUSAL_LM", where, t->get<std::string>());
  if (const json* b = get("base_model_name_or_path"); b && b->is_string()) c.base_model_name_or_path = b->get<std::string>();
  const json* tm = get("target_modules");
  if (!tm) {
    c.target_modules = {"q_proj", "v_proj"};  // PEFT's default for Llama-family models
  } else if (tm->is_string()) {
    if (tm->get<std::string>() == "all-linear") c.target_modules = {"all-linear"};
    else {
      c.target_regex = tm->get<std::string>();
      // PEFT matches a string target_modules as a regex on the full module path. libstdc++ compiles
      // regexes recursively: a bounded length keeps a hostile pattern from exhausting the stack.
      RLRF_CHECK(c.target_regex.size() <= 512, "'{}': target_modules regex is {} characters long (at most 512)", where,
                 c.target_regex.size());
      try {
        std::regex check(c.target_regex);
      } catch (const std::regex_error& e) {
        fail("'{}': target_modules \"{}\" is not a valid regex: {}", where, c.target_regex, e.what());
      }
    }
  } else {
    RLRF_CHECK(tm->is_array(), "'{}': target_modules should be a list or a string", where);
    c.target_modules.clear();
    for (const json& m : *tm) {
      RLRF_CHECK(m.is_string(), "'{}': target_modules should list module names (strings), got {}", where, m.dump());
      c.target_modules.push_back(m.get<std::string>());
    }
  }

  return c;
}

LoraConfig load_lora(LlamaForCausalLM& model, const fs::path& dir) {
  LoraConfig c = read_lora_config(dir);
  const fs::path weights = dir / "adapter_model.safetensors";
  RLRF_CHECK(fs::exists(weights), "'{}' does not exist (only safetensors adapters are read; adapter_model.bin is not)",
             weights.string());
  SafetensorsFile file = SafetensorsFile::open(weights);
  std::vector<std::string> names = apply_lora(model, c);
  std::set<std::string> expected;
  torch::NoGradGuard no_grad;
  for (auto& [name, lin] : adapted(model)) {
    for (const char* part : {"lora_A", "lora_B"}) {
      std::string key = kPeftPrefix + name + "." + part + ".weight";
      if (!file.contains(key)) {
        std::string alt = kPeftPrefix + name + "." + part + ".default.weight";
        RLRF_CHECK(file.contains(alt), "'{}' has no tensor '{}' (adapter_config.json's target_modules and the weights disagree?)",
                   weights.string(), key);
        key = alt;
      }
      expected.insert(key);
      at::Tensor& dst = std::string(part) == "lora_A" ? lin->lora_A->weight : lin->lora_B->weight;
      const TensorInfo& info = file.info(key);
      RLRF_CHECK(info.shape == dst.sizes().vec(), "'{}': tensor '{}' has wrong shape; expected {}, got {}",
                 weights.string(), key, shape_string(dst.sizes()), shape_string(info.shape));
      dst.copy_(file.tensor(key));
    }
  }
  for (const std::string& n : file.names()) {
    RLRF_CHECK(expected.count(n), "'{}': tensor '{}' belongs to no adapted layer of this model (wrong base model?)",
               weights.string(), n);
  }
  return c;
}


namespace {

// One adapter's weights by module path: A [r, in], B [out, r].
struct AdapterWeights {
  LoraConfig config;
  std::map<std::string, std::pair<at::Tensor, at::Tensor>> modules;
};

AdapterWeights read_adapter_weights(const fs::path& dir) {
  AdapterWeights a;
  a.config = read_lora_config(dir);
  const fs::path weights = dir / "adapter_model.safetensors";
  RLRF_CHECK(fs::exists(weights), "'{}' does not exist (only safetensors adapters are read)", weights.string());
  SafetensorsFile file = SafetensorsFile::open(weights);
  const std::string prefix = kPeftPrefix;
  for (const std::string& n : file.names()) {
    std::string rest = n;
    RLRF_CHECK(starts_with(rest, prefix), "'{}': tensor '{}' does not start with PEFT's prefix '{}'", weights.string(), n, prefix);
    rest = rest.substr(prefix.size());
    bool is_a = false;
    bool found = false;
    for (const char* suffix : {".lora_A.weight", ".lora_A.default.weight", ".lora_B.weight", ".lora_B.default.weight"}) {
      if (ends_with(rest, suffix)) {
        is_a = std::string(suffix).find("lora_A") != std::string::npos;
        rest = rest.substr(0, rest.size() - std::string(suffix).size());
        found = true;
        break;
      }
    }
    RLRF_CHECK(found, "'{}': tensor '{}' is not a lora_A or lora_B weight", weights.string(), n);
    at::Tensor t = file.tensor(n).to(at::kFloat);
    RLRF_CHECK(t.dim() == 2 && (is_a ? t.size(0) : t.size(1)) == a.config.r,
               "'{}': tensor '{}' has shape {}; expected rank {} (adapter_config.json's r) as its {} dimension", weights.string(), n,
               shape_string(t.sizes()), a.config.r, is_a ? "first" : "second");
    (is_a ? a.modules[rest].first : a.modules[rest].second) = t;
  }
  for (auto& [m, ab] : a.modules)
    RLRF_CHECK(ab.first.defined() && ab.second.defined(), "'{}': module '{}' has only one of lora_A and lora_B", weights.string(), m);
  RLRF_CHECK(!a.modules.empty(), "'{}' holds no LoRA weights", weights.string());
  return a;
}

}  // namespace

FoldedLora fold_lora_adapters(const std::vector<fs::path>& adapters, const fs::path& out_dir, const std::string& base_model_name_or_path,
                              at::ScalarType dtype) {
  RLRF_CHECK(!adapters.empty(), "fold_lora_adapters: no adapters to fold into '{}'", out_dir.string());
  std::vector<AdapterWeights> in;
  for (const fs::path& dir : adapters) in.push_back(read_adapter_weights(dir));
  // Every module any adapter adapts, with its [out, in].
  std::map<std::string, std::pair<int64_t, int64_t>> shapes;
  bool by_path = false;
  for (size_t i = 0; i < in.size(); ++i) {
    // An adapter chose its modules by path when it names them by a regex or by full module paths
    // (save_lora lists full paths when only some layers of a name are adapted).
    by_path = by_path || !in[i].config.target_regex.empty() ||
              std::any_of(in[i].config.target_modules.begin(), in[i].config.target_modules.end(),
                          [](const std::string& m) { return m.find('.') != std::string::npos; });
    for (auto& [m, ab] : in[i].modules) {
      std::pair<int64_t, int64_t> s = {ab.second.size(0), ab.first.size(1)};
      auto [it, fresh] = shapes.emplace(m, s);
      RLRF_CHECK(fresh || it->second == s, "'{}': module '{}' is [{}, {}] here but [{}, {}] in an earlier adapter (another base model?)",
                 adapters[i].string(), m, s.first, s.second, it->second.first, it->second.second);
    }
  }
  FoldedLora out;
  for (const AdapterWeights& a : in) out.r += a.config.r;
  std::vector<NamedTensor> tensors;
  std::set<std::string> suffixes;
  torch::NoGradGuard no_grad;
  for (auto& [m, s] : shapes) {
    std::vector<at::Tensor> as, bs;
    for (const AdapterWeights& a : in) {
      LoraSpec spec{a.config.r, a.config.alpha, 0.0, a.config.use_rslora};
      auto it = a.modules.find(m);
      if (it == a.modules.end()) {
        as.push_back(at::zeros({a.config.r, s.second}, at::kFloat));
        bs.push_back(at::zeros({s.first, a.config.r}, at::kFloat));
      } else {
        as.push_back(it->second.first);
        bs.push_back((it->second.second.to(at::kDouble) * spec.scaling()).to(at::kFloat));
      }
    }
    tensors.push_back({kPeftPrefix + m + ".lora_A.weight", at::cat(as, 0).to(dtype)});
    tensors.push_back({kPeftPrefix + m + ".lora_B.weight", at::cat(bs, 1).to(dtype)});
    out.modules.push_back(m);
    suffixes.insert(m.substr(m.rfind('.') + 1));
  }
  // Suffixes reach exactly these modules when every input chose its modules by name; an adapter
  // chosen by a regex or by paths may cover only some layers, so then the full paths are listed.
  json target = by_path ? json(out.modules) : json(std::vector<std::string>(suffixes.begin(), suffixes.end()));
  LoraSpec folded{out.r, static_cast<double>(out.r), 0.0, false};  // scale alpha / r = 1: the scales sit in B
  ensure_dir(out_dir);
  save_safetensors(out_dir / "adapter_model.safetensors", tensors, {{"format", "pt"}});
  write_file_atomic(out_dir / "adapter_config.json", adapter_config_json(folded, target, base_model_name_or_path).dump(2) + "\n");
  return out;
}

}  // namespace rlrf::llm
