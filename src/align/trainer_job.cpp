// LLaMA-Factory job files: the ranking dataset, dataset_info.json, and the training YAML both ways.
#include "align/trainer_job.h"

#include <cstdint>
#include <fmt/format.h>

#include <cmath>
#include <map>
#include <type_traits>
#include <nlohmann/json.hpp>

#include "util/error.h"
#include "util/files.h"
#include "util/log.h"
#include "util/strings.h"

namespace rlrf {

namespace {

// A float as PyYAML (YAML 1.1, which LLaMA-Factory reads with) takes it for a float: a dot in the
// mantissa and a signed exponent ("1e-05" would be read as a string).
std::string yaml_float(double v) {
  std::string s = fmt::format("{}", v);
  if (s.find_first_of("ni") != std::string::npos) fail("trainer YAML: {} is not a finite number", s);
  size_t e = s.find('e');
  std::string mantissa = e == std::string::npos ? s : s.substr(0, e);
  std::string exponent = e == std::string::npos ? "" : s.substr(e + 1);
  if (mantissa.find('.') == std::string::npos) mantissa += ".0";
  if (!exponent.empty() && exponent[0] != '-' && exponent[0] != '+') exponent = "+" + exponent;
  return exponent.empty() ? mantissa : mantissa + "e" + exponent;
}

std::string yaml_string(const std::string& s) { return nlohmann::json(s).dump(); }  // a JSON string is YAML

std::string yaml_bool(bool b) { return b ? "true" : "false"; }

// LLaMA-Factory's lora_target: "all" for every linear layer but the output layer, else names
// joined by commas.
std::string lora_target_value(const llm::LoraConfig& lora) {
  RLRF_CHECK(lora.target_regex.empty(), "trainer YAML: LLaMA-Factory's lora_target takes module names, not a regex ('{}')",
             lora.target_regex);
  for (const std::string& t : lora.target_modules)
    if (t == "all-linear") return "all";
  return join(lora.target_modules, ",");
}

std::string schedule_value(const DpoConfig& d) {
  // Hugging Face's "constant" ignores warmup; rlrf's warms up, as HF's constant_with_warmup does.
  if (d.schedule == "constant" && d.warmup_ratio > 0) return "constant_with_warmup";
  return d.schedule;
}

struct YamlLine {
  int line = 0;
  std::string value;
};

// The value of a "key: value" line: a double-quoted (JSON-escaped) string, a single-quoted string,
// or a bare word up to a comment.
std::string yaml_value(std::string_view raw, const std::string& where) {
  std::string_view v = trim(raw);
  if (!v.empty() && v.front() == '"') {
    size_t end = 1;
    while (end < v.size() && v[end] != '"') end += v[end] == '\\' ? 2 : 1;
    RLRF_CHECK(end < v.size(), "{}: unterminated string", where);
    try {
      return nlohmann::json::parse(v.substr(0, end + 1)).get<std::string>();
    } catch (const nlohmann::json::exception& e) {
      fail("{}: bad string {}: {}", where, v.substr(0, end + 1), e.what());
    }
  }
  if (!v.empty() && v.front() == '\'') {
    size_t end = v.find('\'', 1);
    RLRF_CHECK(end != std::string_view::npos, "{}: unterminated string", where);
    return std::string(v.substr(1, end - 1));
  }
  size_t hash = v.find(" #");
  if (hash != std::string_view::npos) v = v.substr(0, hash);
  return std::string(trim(v));
}

}  // namespace

std::string llamafactory_template(const std::string& chat_template) {
  if (chat_template == "llama3" || chat_template == "llama3.1") return "llama3";
  if (chat_template == "chatml") return "qwen";
  if (chat_template == "none") return "empty";
  fail("no LLaMA-Factory template for chat template '{}' (llama3, llama3.1, chatml, none)", chat_template);
}

std::string chat_template_of_llamafactory(const std::string& name, const std::string& where) {
  if (name == "llama3") return "llama3";
  if (name == "qwen" || name == "chatml") return "chatml";
  if (name == "empty" || name == "default") return "none";
  fail("{}: template '{}' is not one rlrf renders (llama3, qwen, chatml, empty); add a line \"#rlrf chat_template: "
       "llama3|llama3.1|chatml|none\" to say which rendering it is", where, name);
}

void write_llamafactory_dataset(const std::vector<PairText>& pairs, const fs::path& dir, const std::string& name) {
  ensure_dir(dir);
  if (fs::exists(dir / "dataset_info.json")) fs::remove(dir / "dataset_info.json");  // this dataset only
  export_llamafactory(pairs, dir, name);
}

std::string trainer_yaml(const TrainerJob& job) {
  const DpoConfig& d = job.dpo;
  const std::string tmpl = job.trainer_template.empty() ? llamafactory_template(job.chat_template) : job.trainer_template;
  std::string y;
  auto line = [&](const std::string& key, const std::string& value) { y += key + ": " + value + "\n"; };
  y += "# A DPO round of rlrf for LLaMA-Factory (llamafactory-cli train THIS_FILE) or `rlrf dpo --config THIS_FILE`.\n";
  y += "### model\n";
  line("model_name_or_path", yaml_string(job.model_name_or_path));
  y += "### method\n";
  line("stage", "dpo");
  line("do_train", "true");
  line("finetuning_type", yaml_string(d.finetune));
  if (d.finetune == "lora") {
    line("lora_rank", std::to_string(d.lora.r));
    line("lora_alpha", std::to_string(static_cast<int64_t>(std::lround(d.lora.alpha))));
    RLRF_CHECK(d.lora.alpha == std::round(d.lora.alpha), "trainer YAML: LLaMA-Factory's lora_alpha is an integer, got {}",
               d.lora.alpha);
    line("lora_dropout", yaml_float(d.lora.dropout));
    line("lora_target", yaml_string(lora_target_value(d.lora)));
    if (d.lora.use_rslora) line("use_rslora", "true");
  }
  line("pref_beta", yaml_float(d.beta));
  line("pref_loss", "sigmoid");
  line("pref_ftx", "0.0");
  y += "### dataset\n";
  line("dataset_dir", yaml_string(job.dataset_dir.string()));
  line("dataset", yaml_string(job.dataset));
  line("template", yaml_string(tmpl));
  line("cutoff_len", std::to_string(job.cutoff_len));
  line("overwrite_cache", "true");
  line("preprocessing_num_workers", "1");
  y += "### output\n";
  line("output_dir", yaml_string(job.output_dir.string()));
  line("overwrite_output_dir", "true");
  line("logging_steps", "1");
  line("save_strategy", "\"no\"");
  line("plot_loss", "false");
  line("report_to", "none");
  y += "### train\n";
  line("per_device_train_batch_size", std::to_string(d.batch_size));
  line("gradient_accumulation_steps", std::to_string(d.grad_accum));
  line("learning_rate", yaml_float(d.lr));
  line("num_train_epochs", yaml_float(d.epochs));
  line("lr_scheduler_type", schedule_value(d));
  line("warmup_ratio", yaml_float(d.warmup_ratio));
  line("weight_decay", yaml_float(d.weight_decay));
  line("max_grad_norm", yaml_float(d.max_grad_norm));
  line("seed", std::to_string(d.seed));
  line("bf16", yaml_bool(d.dtype == "bf16"));
  y += "### rlrf: settings LLaMA-Factory has no key for (it skips comments; `rlrf dpo` reads them)\n";
  y += "#rlrf chat_template: " + job.chat_template + "\n";
  y += "#rlrf lora_seed: " + std::to_string(d.lora.seed) + "\n";
  y += "#rlrf pack_pairs: " + yaml_bool(d.pack_pairs) + "\n";
  y += "#rlrf shuffle: " + yaml_bool(d.shuffle) + "\n";
  y += "#rlrf dtype: " + (d.dtype.empty() ? std::string("fp32") : d.dtype) + "\n";
  y += "#rlrf max_response_tokens: " + std::to_string(job.max_response_tokens) + "\n";
  return y;
}

void write_trainer_yaml(const TrainerJob& job, const fs::path& path) { write_file_atomic(path, trainer_yaml(job)); }

TrainerJob read_trainer_yaml(const fs::path& path) {
  std::map<std::string, YamlLine> keys, rlrf_keys;
  int line_no = 0;
  for (const std::string& raw : read_lines(path)) {
    ++line_no;
    std::string_view l = trim(raw);
    const std::string where = fmt::format("{}:{}", path.string(), line_no);
    std::map<std::string, YamlLine>* into = &keys;
    if (l.rfind("#rlrf ", 0) == 0) {
      l = trim(l.substr(6));
      into = &rlrf_keys;
    } else if (l.empty() || l.front() == '#') {
      continue;
    }
    RLRF_CHECK(raw.empty() || (raw.front() != ' ' && raw.front() != '\t') || into == &rlrf_keys,
               "{}: nested YAML is not read here (flat \"key: value\" lines only)", where);
    size_t colon = l.find(':');
    RLRF_CHECK(colon != std::string_view::npos, "{}: expected \"key: value\", got '{}'", where, l);
    std::string key(trim(l.substr(0, colon)));
    RLRF_CHECK(!into->count(key), "{}: key '{}' given twice (first on line {})", where, key, (*into)[key].line);
    (*into)[key] = {line_no, yaml_value(l.substr(colon + 1), where)};
  }
  auto where = [&](const std::map<std::string, YamlLine>& m, const std::string& key) {
    return fmt::format("{}:{}: key '{}'", path.string(), m.at(key).line, key);
  };
  auto take = [&](std::map<std::string, YamlLine>& m, const std::string& key, auto& out) -> bool {
    auto it = m.find(key);
    if (it == m.end()) return false;
    const std::string& v = it->second.value;
    const std::string w = where(m, key);
    using T = std::decay_t<decltype(out)>;
    try {
      if constexpr (std::is_same_v<T, std::string>) {
        out = v;
      } else if constexpr (std::is_same_v<T, bool>) {
        RLRF_CHECK(v == "true" || v == "false", "{}: expected true or false, got '{}'", w, v);
        out = v == "true";
      } else if constexpr (std::is_floating_point_v<T>) {
        size_t used = 0;
        out = std::stod(v, &used);
        RLRF_CHECK(used == v.size(), "{}: expected a number, got '{}'", w, v);
      } else if constexpr (std::is_unsigned_v<T>) {
        size_t used = 0;
        RLRF_CHECK(!v.empty() && v[0] != '-', "{}: expected an integer >= 0, got '{}'", w, v);
        unsigned long long x = std::stoull(v, &used);
        RLRF_CHECK(used == v.size(), "{}: expected an integer, got '{}'", w, v);
        out = static_cast<T>(x);
      } else {
        size_t used = 0;
        long long x = std::stoll(v, &used);
        RLRF_CHECK(used == v.size(), "{}: expected an integer, got '{}'", w, v);
        out = static_cast<T>(x);
      }
    } catch (const std::logic_error&) {  // stod/stoll: not a number at all
      fail("{}: expected a number, got '{}'", w, v);
    }
    m.erase(it);
    return true;
  };

  TrainerJob job;
  DpoConfig& d = job.dpo;
  std::string stage = "dpo";
  take(keys, "stage", stage);
  RLRF_CHECK(stage == "dpo", "{}: stage is '{}'; rlrf dpo trains stage: dpo only", path.string(), stage);
  RLRF_CHECK(keys.count("model_name_or_path"), "{}: model_name_or_path is missing", path.string());
  take(keys, "model_name_or_path", job.model_name_or_path);
  std::string s;
  if (take(keys, "dataset_dir", s)) job.dataset_dir = s;
  take(keys, "dataset", job.dataset);
  RLRF_CHECK(job.dataset.find(',') == std::string::npos, "{}:{}: one dataset only, got '{}'", path.string(), line_no,
             job.dataset);
  if (take(keys, "output_dir", s)) job.output_dir = s;
  take(keys, "cutoff_len", job.cutoff_len);
  if (keys.count("finetuning_type")) {
    const std::string w = where(keys, "finetuning_type");
    take(keys, "finetuning_type", d.finetune);
    RLRF_CHECK(d.finetune == "lora" || d.finetune == "full", "{}: '{}' (lora or full)", w, d.finetune);
  }
  if (keys.count("pref_loss")) {
    const std::string w = where(keys, "pref_loss");
    take(keys, "pref_loss", s);
    RLRF_CHECK(s == "sigmoid", "{}: '{}'; rlrf dpo trains the sigmoid (DPO) loss only", w, s);
  }
  if (keys.count("pref_ftx")) {
    const std::string w = where(keys, "pref_ftx");
    double ftx = 0;
    take(keys, "pref_ftx", ftx);
    RLRF_CHECK(ftx == 0, "{}: {}; rlrf dpo adds no SFT loss (pref_ftx must be 0)", w, ftx);
  }
  take(keys, "pref_beta", d.beta);
  take(keys, "lora_rank", d.lora.r);
  take(keys, "lora_alpha", d.lora.alpha);
  take(keys, "lora_dropout", d.lora.dropout);
  take(keys, "use_rslora", d.lora.use_rslora);
  if (take(keys, "lora_target", s)) {
    if (s == "all") {
      d.lora.target_modules = {"all-linear"};
    } else {
      d.lora.target_modules.clear();
      for (std::string_view t : split(s, ",")) d.lora.target_modules.push_back(std::string(trim(t)));
    }
  }
  take(keys, "per_device_train_batch_size", d.batch_size);
  take(keys, "gradient_accumulation_steps", d.grad_accum);
  take(keys, "learning_rate", d.lr);
  if (keys.count("num_train_epochs")) {
    const std::string w = where(keys, "num_train_epochs");
    double epochs = 0;
    take(keys, "num_train_epochs", epochs);
    RLRF_CHECK(epochs >= 0 && epochs == std::floor(epochs), "{}: {}; rlrf dpo trains whole epochs", w, epochs);
    d.epochs = static_cast<int>(epochs);
  }
  if (keys.count("lr_scheduler_type")) {
    const std::string w = where(keys, "lr_scheduler_type");
    take(keys, "lr_scheduler_type", d.schedule);
    if (d.schedule == "constant_with_warmup") d.schedule = "constant";
    RLRF_CHECK(d.schedule == "cosine" || d.schedule == "linear" || d.schedule == "constant",
               "{}: '{}' (cosine, linear, constant, constant_with_warmup)", w, d.schedule);
  }
  take(keys, "warmup_ratio", d.warmup_ratio);
  take(keys, "weight_decay", d.weight_decay);
  take(keys, "max_grad_norm", d.max_grad_norm);
  take(keys, "seed", d.seed);
  bool bf16 = false;
  if (take(keys, "bf16", bf16) && bf16) d.dtype = "bf16";
  std::string tmpl;
  const std::string tmpl_where = keys.count("template") ? where(keys, "template") : path.string();
  take(keys, "template", tmpl);
  job.trainer_template = tmpl;

  // rlrf's own comments.
  if (!take(rlrf_keys, "chat_template", job.chat_template))
    job.chat_template = chat_template_of_llamafactory(tmpl.empty() ? "empty" : tmpl, tmpl_where);
  take(rlrf_keys, "lora_seed", d.lora.seed);
  take(rlrf_keys, "pack_pairs", d.pack_pairs);
  take(rlrf_keys, "shuffle", d.shuffle);
  if (take(rlrf_keys, "dtype", s)) d.dtype = s == "fp32" ? "" : s;
  take(rlrf_keys, "max_response_tokens", job.max_response_tokens);
  for (const auto& [key, v] : rlrf_keys)
    fail("{}:{}: unknown rlrf setting '{}' (chat_template, lora_seed, pack_pairs, shuffle, dtype, max_response_tokens)",
         path.string(), v.line, key);

  // What does not change the training rlrf does; anything else is said once.
  static const char* kHarmless[] = {"do_train", "trust_remote_code", "overwrite_cache", "preprocessing_num_workers",
                                    "overwrite_output_dir", "logging_steps", "save_steps", "save_strategy", "plot_loss",
                                    "report_to", "ddp_timeout", "fp16", "save_only_model", "dataloader_num_workers",
                                    "resume_from_checkpoint", "max_samples", "val_size", "eval_strategy", "eval_steps",
                                    "per_device_eval_batch_size", "tokenized_path", "flash_attn", "run_name"};
  for (const auto& [key, v] : keys) {
    bool harmless = false;
    for (const char* h : kHarmless) harmless = harmless || key == h;
    if (!harmless) log_warn("{}:{}: key '{}' is not used by rlrf dpo", path.string(), v.line, key);
  }
  RLRF_CHECK(d.beta > 0 && d.batch_size > 0 && d.grad_accum > 0 && d.lora.r > 0,
             "{}: pref_beta, per_device_train_batch_size, gradient_accumulation_steps and lora_rank must be > 0", path.string());
  return job;
}

}  // namespace rlrf
