// [dpo] backend = "command": the job files, the command, and the adapter read back and checked.
#include "pipeline/dpo_command.h"

#include <cstdint>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <nlohmann/json.hpp>

#include "align/pair_files.h"
#include "align/trainer_job.h"
#include "llm/checkpoint.h"
#include "util/error.h"
#include "util/files.h"
#include "util/log.h"
#include "util/process.h"
#include "util/strings.h"

namespace rlrf {

namespace {

using json = nlohmann::json;

std::string same_path_key(const fs::path& p) {
  std::error_code ec;
  fs::path c = fs::weakly_canonical(p, ec);
  return (ec ? p : c).lexically_normal().string();
}

// The directory the trainer starts from: round r-1's policy as a Hugging Face model. A model
// directory of the run (the base, the SFT model, a full fine-tune) is used as it is; a policy with
// adapters merged is written once (fp32) and reused while its fingerprint holds.
fs::path trainer_base_model(RunContext& ctx, int round, llm::LlamaForCausalLM& model, const fs::path& job_dir) {
  const PolicyChain parts = policy_chain(ctx.config, ctx.dir, round - 1);
  if (parts.adapters.empty()) return parts.base;
  const fs::path dir = job_dir / "base";
  const fs::path marker = dir / "rlrf_policy.txt";
  const std::string fp = policy_fingerprint(ctx, round - 1);
  if (fs::exists(marker) && read_file(marker) == fp) return dir;
  fs::remove_all(dir);
  llm::SaveOptions save;
  save.dtype = at::kFloat;  // the policy DPO starts from, exactly
  const RunConfig& c = ctx.config;
  save.tokenizer_from = c.model.tokenizer.empty() ? expand_path(c.model.path) : expand_path(c.model.tokenizer);
  log_info("dpo/{}: writing round {}'s policy (adapters merged, fp32) for the trainer to {}", round, round - 1, dir.string());
  llm::save_model(model, dir, save);
  write_file_atomic(marker, fp);
  return dir;
}

std::string module_list(const std::vector<std::string>& names) { return "[" + join(names, ", ") + "]"; }

// The adapter in `dir` against what the round expects; on success `model` carries it.
void load_checked_adapter(llm::LlamaForCausalLM& model, const fs::path& dir, const std::string& expected_base,
                          const llm::LoraConfig& lora, const std::string& stage) {
  const fs::path cfg = dir / "adapter_config.json";
  if (!fs::exists(cfg)) {
    std::vector<std::string> found;
    if (fs::is_directory(dir))
      for (const auto& e : fs::directory_iterator(dir)) found.push_back(e.path().filename().string());
    fail("{}: the trainer command left no PEFT adapter: '{}' does not exist (in {}: {}); the command must write the "
         "adapter (adapter_config.json, adapter_model.safetensors) to {{output_dir}}",
         stage, cfg.string(), dir.string(), found.empty() ? "nothing" : join(found, ", "));
  }
  json j;
  try {
    j = json::parse(read_file(cfg));
  } catch (const json::exception& e) {
    fail("{}: '{}' is not valid JSON: {}", stage, cfg.string(), e.what());
  }
  const std::string base = j.value("base_model_name_or_path", std::string());
  RLRF_CHECK(same_path_key(base) == same_path_key(expected_base),
             "{}: '{}': base_model_name_or_path is '{}', but the round's policy is '{}' (the adapter was trained on "
             "another model)", stage, cfg.string(), base, expected_base);
  // The layers the run's LoRA settings adapt, then the adapter's own (load_lora checks every shape).
  llm::apply_lora(model, lora);
  const std::vector<std::string> expected = llm::adapted_module_names(model);
  llm::LoraConfig got = llm::load_lora(model, dir);
  const std::vector<std::string> adapted = llm::adapted_module_names(model);
  RLRF_CHECK(adapted == expected, "{}: '{}': target_modules adapt {}, the run's [dpo.lora] target_modules adapt {}", stage,
             cfg.string(), module_list(adapted), module_list(expected));
  RLRF_CHECK(got.r == lora.r, "{}: '{}': r is {}, the run's [dpo.lora] r is {}", stage, cfg.string(), got.r, lora.r);
  RLRF_CHECK(got.alpha == lora.alpha, "{}: '{}': lora_alpha is {}, the run's [dpo.lora] alpha is {}", stage, cfg.string(),
             got.alpha, lora.alpha);
  RLRF_CHECK(got.use_rslora == lora.use_rslora, "{}: '{}': use_rslora is {}, the run's is {}", stage, cfg.string(),
             got.use_rslora, lora.use_rslora);
}

// rlrf dpo's per-step log, when the command was rlrf dpo (another trainer's log is its own).
std::vector<DpoStepLog> read_step_log(const fs::path& path) {
  std::vector<DpoStepLog> steps;
  if (!fs::exists(path)) return steps;
  for (const std::string& line : read_lines(path)) {
    if (trim(line).empty()) continue;
    json j = json::parse(line, nullptr, false);
    if (!j.is_object()) continue;
    DpoStepLog s;
    s.step = j.value("step", int64_t{0});
    s.epoch = j.value("epoch", 0);
    s.loss = j.value("loss", 0.0);
    s.chosen_reward = j.value("chosen_reward", 0.0);
    s.rejected_reward = j.value("rejected_reward", 0.0);
    s.accuracy = j.value("accuracy", 0.0);
    s.margin = j.value("margin", 0.0);
    s.lr = j.value("lr", 0.0);
    s.grad_norm = j.value("grad_norm", 0.0);
    s.ms = j.value("ms", 0.0);
    s.tokens = j.value("tokens", int64_t{0});
    steps.push_back(s);
  }
  return steps;
}

}  // namespace

std::string expand_trainer_command(const std::string& command, const fs::path& config, const fs::path& pairs,
                                   const fs::path& output_dir) {
  std::string out;
  for (size_t i = 0; i < command.size();) {
    bool replaced = false;
    for (const auto& [key, value] : {std::pair<const char*, std::string>{"{config}", config.string()},
                                     {"{pairs}", pairs.string()}, {"{output_dir}", output_dir.string()}}) {
      const size_t n = std::strlen(key);
      if (command.compare(i, n, key) == 0) {
        out += value;
        i += n;
        replaced = true;
        break;
      }
    }
    if (!replaced) out += command[i++];
  }
  return out;
}

DpoResult train_dpo_by_command(RunContext& ctx, int round, llm::LlamaForCausalLM& model,
                               const std::vector<PreferencePair>& pairs, const std::vector<PairText>& texts,
                               const llm::LoraConfig& lora, const DpoConfig& dpo) {
  RLRF_CHECK(pairs.size() == texts.size(), "train_dpo_by_command: {} pairs but {} texts", pairs.size(), texts.size());
  const RunConfig& c = ctx.config;
  const std::string stage = fmt::format("dpo/{}", round);
  const fs::path job_dir = ctx.dir / "dpo-command" / fmt::format("round{}", round);
  ensure_dir(job_dir);

  TrainerJob job;
  job.model_name_or_path = trainer_base_model(ctx, round, model, job_dir).string();
  job.dataset_dir = job_dir / "data";
  job.dataset = fmt::format("rlrf_round{}", round);
  job.output_dir = job_dir / "output";
  job.chat_template = ctx.chat_template;
  job.trainer_template = c.dpo.trainer_template;
  job.max_response_tokens = c.generate.max_new_tokens;
  job.dpo = dpo;
  job.dpo.lora = lora;
  write_llamafactory_dataset(texts, job.dataset_dir, job.dataset);

  // The rows as a text trainer tokenizes them (rlrf dpo trains on the sampled ids the rows also
  // carry): the cutoff that keeps every pair whole either way, and whether the text gives back the
  // sampled ids.
  PairReadOptions read;
  read.chat_template = ctx.chat_template;
  read.max_response_tokens = job.max_response_tokens;
  read.use_ids = false;
  PairFileStats stats;
  std::vector<PreferencePair> from_text = read_llamafactory_pairs(ctx.tokenizer, job.dataset_dir, job.dataset, read, &stats);
  int64_t prompts_differ = 0, answers_differ = 0, longest = stats.longest;
  for (size_t i = 0; i < pairs.size(); ++i) {
    prompts_differ += from_text[i].prompt != pairs[i].prompt;
    answers_differ += from_text[i].chosen != pairs[i].chosen || from_text[i].rejected != pairs[i].rejected;
    longest = std::max(longest, pair_length(pairs[i]));
  }
  if (prompts_differ + answers_differ > 0)
    log_warn("{}: the text of {} prompts and of {} pairs' answers (of {} pairs) tokenizes to other ids than were sampled "
             "(a response that spells a special token, a segmentation the tokenizer would not choose): a trainer that "
             "reads the text trains on those; rlrf dpo reads the sampled ids the rows carry", stage, prompts_differ,
             answers_differ, pairs.size());
  job.cutoff_len = c.dpo.cutoff_len > 0 ? c.dpo.cutoff_len : static_cast<int>(longest);
  int64_t cut = 0;
  for (size_t i = 0; i < pairs.size(); ++i)
    cut += std::max(pair_length(from_text[i]), pair_length(pairs[i])) > job.cutoff_len;
  if (cut > 0)
    log_warn("{}: {} of {} pairs are longer than cutoff_len {} (the longest: {} tokens); the trainer will cut them", stage,
             cut, pairs.size(), job.cutoff_len, longest);
  const fs::path yaml = job_dir / "train.yaml";
  write_trainer_yaml(job, yaml);

  fs::remove_all(job.output_dir);  // a retry starts clean: nothing of a failed attempt is read back
  const std::string command = expand_trainer_command(c.dpo.command, yaml, job.dataset_dir, job.output_dir);
  const fs::path log = job_dir / "command.log";
  log_info("{}: {} pairs to an external trainer ({}); running: {}", stage, pairs.size(), yaml.string(), command);
  auto t0 = std::chrono::steady_clock::now();
  CommandResult r = run_shell_command(command, log, "  | ");
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (r.status != 0) {
    std::string tail;
    for (const std::string& l : r.last_lines) tail += "  | " + l + "\n";
    fail("the trainer command exited with status {}: {}\nits last {} lines (all of them in {}):\n{}"
         "round {} is not done; fix the command or its cause and rerun: finished rounds are kept, this one is retried",
         r.status, command, r.last_lines.size(), log.string(), tail, round);
  }
  load_checked_adapter(model, job.output_dir, job.model_name_or_path, lora, stage);
  DpoResult result;
  result.steps = read_step_log(job.output_dir / "dpo_log.jsonl");
  result.seconds = seconds;
  for (const DpoStepLog& s : result.steps) result.tokens += s.tokens;
  log_info("{}: the trainer's adapter ({}) matches the round's base, rank, alpha and layers", stage, job.output_dir.string());
  return result;
}

}  // namespace rlrf
