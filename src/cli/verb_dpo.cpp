// `rlrf dpo`: DPO on preference pairs from TRL JSONL or a LLaMA-Factory dataset (what `rlrf run`
// exports, or pairs from anywhere), saving a PEFT adapter (LoRA) or a full Hugging Face model.
// With a LLaMA-Factory YAML as --config (what `[dpo] backend = "command"` writes) it is an external
// trainer for `rlrf run`: model, pairs, output directory and settings all come from the YAML.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>

#include <nlohmann/json.hpp>

#include "align/dpo.h"
#include "align/pair_files.h"
#include "align/trainer_job.h"
#include "cli/verbs.h"
#include "llm/checkpoint.h"
#include "llm/lora.h"
#include "text/chat_template.h"
#include "util/config.h"
#include "util/error.h"
#include "util/files.h"
#include "util/log.h"
#include "runtime/runtime.h"
#include "util/strings.h"

namespace {

bool is_yaml(const std::string& path) { return rlrf::ends_with(path, ".yaml") || rlrf::ends_with(path, ".yml"); }

// The dataset of a LLaMA-Factory .json file: the entry of the dataset_info.json beside it that names it.
std::string dataset_of_file(const std::filesystem::path& file) {
  const std::filesystem::path info_path = file.parent_path() / "dataset_info.json";
  RLRF_CHECK(std::filesystem::exists(info_path), "'{}': a LLaMA-Factory dataset needs dataset_info.json beside it ('{}')",
             file.string(), info_path.string());
  nlohmann::json info = nlohmann::json::parse(rlrf::read_file(info_path), nullptr, false);
  RLRF_CHECK(info.is_object(), "'{}' is not a JSON object", info_path.string());
  for (auto it = info.begin(); it != info.end(); ++it)
    if (it->is_object() && it->value("file_name", std::string()) == file.filename().string()) return it.key();
  rlrf::fail("'{}' registers no dataset with file_name \"{}\"", info_path.string(), file.filename().string());
}

int run_dpo(int argc, char** argv) {
  const rlrf::DpoConfig defaults;
  CLI::App app{fmt::format("DPO on preference pairs: TRL JSONL (prompt/chosen/rejected as strings or message lists; the prompt may be\n"
                           "implicit) or a LLaMA-Factory ranking dataset (a directory with dataset_info.json, or its .json file).\n"
                           "Settings from [dpo] of a TOML --config (defaults: the paper's beta {}, lr {}, batch {} x accumulation {},\n"
                           "{} epochs, {}), or from a LLaMA-Factory DPO YAML --config (what `rlrf run` writes with [dpo] backend =\n"
                           "\"command\"), which also names the model, the dataset and the output directory; the adapter then goes to the\n"
                           "output directory itself, as LLaMA-Factory leaves it.\n\n"
                           "examples:\n"
                           "  rlrf dpo --model ../shared/models/tinystories-656k --pairs runs/demo/pairs/round0.trl.jsonl "
                           "--out runs/dpo-test --set dpo.epochs=1\n"
                           "  rlrf dpo --config runs/demo/dpo-command/round1/train.yaml",
                           defaults.beta, defaults.lr, defaults.batch_size, defaults.grad_accum, defaults.epochs, defaults.finetune),
               "rlrf dpo"};
  std::string model_dir, pairs_path, out_dir, config_path, dtype, device = "auto", chat = "";
  std::vector<std::string> sets;
  int max_new = -1;
  bool from_text = false;
  app.add_option("--model", model_dir, "Hugging Face model directory (default: the YAML's model_name_or_path)");
  app.add_option("--pairs", pairs_path, "pairs: TRL .jsonl, or a LLaMA-Factory dataset directory or .json (default: the YAML's)");
  app.add_option("--out", out_dir, "output directory: adapter/ (PEFT) or a full model (default: the YAML's output_dir)");
  app.add_option("--config", config_path, "TOML with a [dpo] section, or a LLaMA-Factory DPO YAML (.yaml/.yml)");
  app.add_option("--set", sets, "override with a TOML config: dpo.key=value (repeatable)");
  app.add_option("--dtype", dtype, "fp32 | bf16 (default: [dpo] dtype, else the policy's as loaded: fp32)");
  app.add_option("--device", device, "auto | cpu | cuda");
  app.add_option("--chat-template", chat, "llama3 | llama3.1 | chatml | none (default: the YAML's, else the tokenizer's)");
  app.add_option("--max-response-tokens", max_new, "cut answers to this many tokens (0: no cut; default: the YAML's, else 0)");
  app.add_flag("--from-text", from_text,
               "LLaMA-Factory rows: tokenize the text even where a row carries rlrf's sampled ids (as a text trainer does)");
  CLI11_PARSE(app, argc, argv);

  const bool yaml = !config_path.empty() && is_yaml(config_path);
  rlrf::TrainerJob job;
  rlrf::DpoConfig config;
  if (yaml) {
    RLRF_CHECK(sets.empty(), "--set applies to a TOML config; edit the YAML '{}' instead", config_path);
    job = rlrf::read_trainer_yaml(config_path);
    config = job.dpo;
    if (model_dir.empty()) model_dir = job.model_name_or_path;
    if (pairs_path.empty()) pairs_path = job.dataset_dir.string();
    if (out_dir.empty()) out_dir = job.output_dir.string();
    if (chat.empty()) chat = job.chat_template;
    if (max_new < 0) max_new = job.max_response_tokens;
  } else {
    rlrf::ConfigFile file = config_path.empty() ? rlrf::ConfigFile::parse("", "(defaults)") : rlrf::ConfigFile::load(config_path);
    for (const std::string& s : sets) file.set(s);
    rlrf::ConfigSection section = file.section("dpo");
    config.read(section);
    section.check_no_unknown_keys();
  }
  RLRF_CHECK(!model_dir.empty() && !pairs_path.empty() && !out_dir.empty(),
             "rlrf dpo needs --model, --pairs and --out (or a YAML --config that names them); see rlrf dpo --help");

  rlrf::Tokenizer tok = rlrf::Tokenizer::load(model_dir);
  rlrf::PairReadOptions read;
  read.chat_template = rlrf::resolve_chat_template(tok, chat);
  read.max_response_tokens = std::max(0, max_new);
  read.cutoff_len = job.cutoff_len;
  read.use_ids = !from_text;
  rlrf::PairFileStats stats;
  std::vector<rlrf::PreferencePair> pairs;
  if (std::filesystem::is_directory(pairs_path)) {
    pairs = rlrf::read_llamafactory_pairs(tok, pairs_path, job.dataset, read, &stats);
  } else if (rlrf::ends_with(pairs_path, ".json")) {
    pairs = rlrf::read_llamafactory_pairs(tok, std::filesystem::path(pairs_path).parent_path(), dataset_of_file(pairs_path),
                                          read, &stats);
  } else {
    pairs = rlrf::read_trl_pairs(tok, pairs_path, read, &stats);
  }
  if (stats.cut > 0)
    rlrf::log_warn("dpo: {} of {} pairs are longer than cutoff_len {} (the longest: {} tokens) and were cut", stats.cut,
                   stats.pairs, read.cutoff_len, stats.longest);

  rlrf::llm::ModelOptions options;
  options.device = rlrf::resolve_device(device);
  // fp32 master weights; --dtype / [dpo] dtype is the compute dtype of training (align/dpo.h).
  options.dtype = at::kFloat;
  if (!dtype.empty()) config.dtype = dtype;
  rlrf::llm::LlamaForCausalLM model = rlrf::llm::load_model(model_dir, options);
  rlrf::llm::LoraConfig lora = config.lora;
  lora.base_model_name_or_path = model_dir;
  if (config.finetune == "lora") rlrf::llm::apply_lora(model, lora);
  rlrf::log_info("dpo: {} pairs from {} (template {}; {} of them as the sampled ids the rows carry)", pairs.size(), pairs_path,
                 read.chat_template, stats.from_ids);
  std::string log;
  rlrf::DpoResult result = rlrf::train_dpo(model, pairs, config, [&](const rlrf::DpoStepLog& s) {
    log += nlohmann::json({{"step", s.step}, {"epoch", s.epoch}, {"loss", s.loss}, {"chosen_reward", s.chosen_reward},
                           {"rejected_reward", s.rejected_reward}, {"accuracy", s.accuracy}, {"margin", s.margin}, {"lr", s.lr},
                           {"grad_norm", s.grad_norm}, {"ms", s.ms}, {"tokens", s.tokens}})
               .dump() +
           "\n";
  });
  if (config.finetune == "lora") {
    // A YAML job's adapter goes where LLaMA-Factory leaves it: the output directory itself.
    rlrf::llm::save_lora(model, lora, yaml ? std::filesystem::path(out_dir) : std::filesystem::path(out_dir) / "adapter");
  } else {
    rlrf::llm::SaveOptions save;
    save.dtype = at::kFloat;
    save.tokenizer_from = model_dir;
    rlrf::llm::save_model(model, out_dir, save);
  }
  rlrf::write_file_atomic(std::filesystem::path(out_dir) / "dpo_log.jsonl", log);
  rlrf::log_info("dpo: {} steps, {:.1f} s, {:.0f} tokens/s; saved to {}", result.steps.size(), result.seconds,
                 result.tokens_per_second(), out_dir);
  return 0;
}

rlrf::cli::VerbRegistration reg_dpo({"dpo", "DPO on preference pairs (TRL JSONL, LLaMA-Factory) -> PEFT adapter or full model", 50,
                                 run_dpo});

}  // namespace
