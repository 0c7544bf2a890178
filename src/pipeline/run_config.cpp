// The run configuration: every stage's struct read from its [section], with strict key checks.
#include "pipeline/run_config.h"

#include "util/error.h"
#include "util/files.h"

namespace rlrf {

void RunSection::read(const ConfigSection& s) {
  s.read("dir", dir);
  s.read("rounds", rounds);
  s.read("threads", threads);
  s.read("max_users", max_users);
  RLRF_CHECK(rounds >= 0, "{}: rounds must be >= 0", s.where());
  RLRF_CHECK(!dir.empty(), "{}: dir must not be empty", s.where());
}

void ModelSection::read(const ConfigSection& s) {
  s.read("path", path);
  s.read("tokenizer", tokenizer);
  s.read("dtype", dtype);
  s.read("device", device);
  s.read("chat_template", chat_template);
  s.read("max_context", max_context);
}

void GenerateConfig::read(const ConfigSection& s) {
  s.read("n", n);
  s.read("temperature", temperature);
  s.read("top_p", top_p);
  s.read("top_k", top_k);
  s.read("max_new_tokens", max_new_tokens);
  s.read("batch_size", batch_size);
  s.read("seed", seed);
  s.read("chunk", chunk);
  s.read("workers", workers);
  RLRF_CHECK(workers >= 0, "{}: workers must be >= 0 (0: automatic), got {}", s.where(), workers);
  s.read("dtype", dtype);
  s.read("threads", threads);
  RLRF_CHECK(n >= 1, "{}: n must be >= 1 (2 or more to form pairs)", s.where());
  RLRF_CHECK(max_new_tokens >= 1 && batch_size >= 1 && chunk >= 1, "{}: max_new_tokens, batch_size, chunk must be >= 1", s.where());
  s.read("backend", backend);
  s.read("url", url);
  s.read("model", model);
  s.read("api_key_env", api_key_env);
  s.read("concurrency", concurrency);
  s.read("timeout_s", timeout_s);
  s.read("max_retries", max_retries);
  s.read("stop", stop);
  s.read("logprobs", logprobs);
  s.read("extensions", extensions);
  s.read("reload_command", reload_command);
  RLRF_CHECK(backend == "builtin" || backend == "openai", "{}: backend must be \"builtin\" or \"openai\", got \"{}\"",
             s.where(), backend);
  if (backend == "openai") {
    RLRF_CHECK(!url.empty(), "{}: backend = \"openai\" needs url = \"http://HOST:PORT\" (the server's address)", s.where());
    RLRF_CHECK(concurrency >= 1 && timeout_s > 0 && max_retries >= 0,
               "{}: concurrency must be >= 1, timeout_s > 0 and max_retries >= 0", s.where());
  } else {
    for (const char* key : {"url", "model", "api_key_env", "concurrency", "timeout_s", "max_retries", "stop", "logprobs",
                            "extensions", "reload_command"})
      RLRF_CHECK(!s.has(key), "{}: {} is a setting of backend = \"openai\" (backend is \"{}\")", s.where(), key, backend);
  }
}

void EvalConfig::read(const ConfigSection& s) {
  s.read("models", models);
  s.read("seeds", seeds);
  s.read("profile_row", profile_row);
  s.read("card_row", card_row);
  s.read("history_row", history_row);
  s.read("both_encodings", both_encodings);
  s.read("folds", folds);
  RLRF_CHECK(folds >= 1 && folds <= 20, "{}: folds must be in 1..20, got {}", s.where(), folds);
  s.read("also_settings", also_settings);
  s.read("also_models", also_models);
  s.read("decode", decode);
  RLRF_CHECK(decode == "greedy" || decode == "sample0" || decode == "mean",
             "{}: decode must be \"greedy\", \"sample0\" or \"mean\", got \"{}\"", s.where(), decode);
  for (const std::vector<std::string>* list : {&models, &also_models})
    for (const std::string& m : *list)
      RLRF_CHECK(m == "dlcm" || m == "prm", "{}: unknown model \"{}\" (dlcm, prm)", s.where(), m);
  for (const std::string& setting : also_settings)
    RLRF_CHECK(setting == "kar" || setting == "popularity" || setting == "first-stage",
               "{}: also_settings: unknown setting \"{}\" (kar, popularity, first-stage)", s.where(), setting);
  RLRF_CHECK(!seeds.empty(), "{}: seeds must not be empty", s.where());
}

RerankConfig read_rerank_section(const ConfigSection& s, bool rerank_verb) {
  if (!rerank_verb) {
    s.refuse("knowledge", "[eval] profile_row, card_row, history_row (a run evaluates those rows; knowledge is a setting of "
             "`rlrf rerank`)");
    s.refuse("cache_dir", "nothing (a run caches encodings in its directory; cache_dir is a setting of `rlrf rerank`)");
  }
  RerankConfig c;
  c.read(s);  // refuses the keys of other sections, checks the unknown keys
  return c;
}

EvalConfig read_eval_seeds_and_models(const ConfigSection& s) {
  for (const std::string& key : s.keys())
    if (key != "seeds" && key != "models")
      fail("{}: key '{}' is a setting of `rlrf run`; `rlrf rerank` reads seeds and models of [eval] only", s.where(), key);
  EvalConfig c;
  c.read(s);
  s.check_no_unknown_keys();
  return c;
}

RunConfig RunConfig::from_file(const ConfigFile& file) {
  static const char* kSections[] = {"run", "prepare", "model", "prompt", "generate", "sft",
                                    "knowledge", "reward", "rerank", "dpo", "eval"};
  ConfigSection root = file.section("");
  for (const char* name : kSections) root.sub(name);  // marks them known
  root.check_no_unknown_keys();

  RunConfig c;
  c.file = file;
  c.source = file.path();
  auto read = [&](const char* name, auto& target) {
    ConfigSection s = file.section(name);
    target.read(s);
    s.check_no_unknown_keys();
  };
  read("run", c.run);
  read("prepare", c.prepare);
  read("model", c.model);
  read("prompt", c.prompt);
  read("generate", c.generate);
  read("sft", c.sft);
  read("knowledge", c.knowledge);
  read("reward", c.reward);
  c.rerank = read_rerank_section(file.section("rerank"));
  read("dpo", c.dpo);
  read("eval", c.eval);
  for (const std::string& setting : c.eval.also_settings)
    RLRF_CHECK(setting != c.prepare.setting, "{}: [eval] also_settings repeats the run's own setting \"{}\"", file.path(), setting);
  RLRF_CHECK(!c.reward.schedule(c.run.rounds).leaves_out_sample0() || c.generate.n >= 3,
             "{}: [reward] train_knowledge = \"sample0\" leaves sample 0 out of the pairs (its reward model has fitted it), "
             "so [generate] n must be >= 3 to pair two others; got n = {}",
             file.path(), c.generate.n);
  return c;
}

std::string RunConfig::sections_text(const std::vector<std::string>& names) const {
  std::string out;
  for (const std::string& n : names) out += "[" + n + "]\n" + file.section(n).canonical() + "\n";
  return out;
}

}  // namespace rlrf
