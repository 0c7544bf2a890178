// Exports of a run's policies (merged checkpoint, folded PEFT adapter, GGUF) and of model directories.
#include "pipeline/export.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "llm/checkpoint.h"
#include "llm/gguf.h"
#include "llm/lora.h"
#include "pipeline/run_context.h"
#include "util/config.h"
#include "util/error.h"
#include "util/files.h"
#include "util/log.h"
#include "util/strings.h"

namespace rlrf {

namespace fs = std::filesystem;

ExportFormat parse_export_format(const std::string& name) {
  if (name == "hf") return ExportFormat::kHf;
  if (name == "peft") return ExportFormat::kPeft;
  if (name == "gguf") return ExportFormat::kGguf;
  fail("unknown export format '{}' (hf, peft or gguf)", name);
}

namespace {

const char* format_name(ExportFormat f) {
  return f == ExportFormat::kHf ? "hf" : f == ExportFormat::kPeft ? "peft" : "gguf";
}

RunConfig load_run_config(const fs::path& run_dir) {
  const fs::path file = run_dir / "config.toml";
  if (!fs::exists(file) && fs::exists(run_dir / "fold-0" / "config.toml"))
    fail("'{}' is a run with [eval] folds: export one fold's policy (--run {})", run_dir.string(), (run_dir / "fold-0").string());
  RLRF_CHECK(fs::exists(file), "'{}' is not a run directory of `rlrf run` (no config.toml)", run_dir.string());
  return RunConfig::from_file(ConfigFile::load(file));
}

fs::path tokenizer_dir(const RunConfig& c) {
  return c.model.tokenizer.empty() ? expand_path(c.model.path) : expand_path(c.model.tokenizer);
}

// The chain of round r, checked to exist on disk.
PolicyChain checked_chain(const RunConfig& c, const fs::path& run_dir, int round) {
  RLRF_CHECK(round >= 0 && round <= c.run.rounds, "run '{}' has rounds 0..{}; there is no round {}", run_dir.string(), c.run.rounds,
             round);
  PolicyChain chain = policy_chain(c, run_dir, round);
  RLRF_CHECK(fs::exists(chain.base / "config.json"), "'{}' does not exist: round {}'s policy starts from that model (has the run's {} "
             "stage finished?)", (chain.base / "config.json").string(), round,
             chain.base == sft_model_dir(run_dir) ? "sft" : "dpo");
  for (const fs::path& a : chain.adapters)
    RLRF_CHECK(fs::exists(a / "adapter_config.json"), "'{}' does not exist: round {}'s policy needs that adapter (has the run's {} "
               "stage finished?)", (a / "adapter_config.json").string(), round,
               a.parent_path() == sft_model_dir(run_dir) ? "sft" : "dpo/" + a.parent_path().filename().string().substr(5));
  return chain;
}

llm::LlamaForCausalLM load_fp32(const PolicyChain& chain) {
  llm::ModelOptions o;
  o.device = "cpu";
  o.dtype = at::kFloat;
  return llm::load_merged_policy(chain.base, chain.adapters, o);
}

fs::path gguf_file(const fs::path& output, const std::string& stem, at::ScalarType dtype) {
  if (output.extension() == ".gguf") return output;
  return output / fmt::format("{}-{}.gguf", stem, dtype == at::kHalf ? "f16" : "f32");
}

at::ScalarType gguf_dtype(const std::string& name) {
  at::ScalarType d = llm::parse_dtype(name);
  RLRF_CHECK(d == at::kFloat || d == at::kHalf, "gguf export: dtype '{}' is not written (fp32 or fp16)", name);
  return d;
}

void write_hf(llm::LlamaForCausalLM& model, const fs::path& output, const std::string& dtype, const fs::path& tokenizer) {
  llm::SaveOptions save;
  save.dtype = llm::parse_dtype(dtype);
  save.tokenizer_from = tokenizer;
  llm::save_model(model, output, save);
}

std::vector<std::string> strings_of(const std::vector<fs::path>& paths) {
  std::vector<std::string> out;
  for (const fs::path& p : paths) out.push_back(fs::absolute(p).lexically_normal().string());
  return out;
}

// Copies the regular files of a model directory (config, weights, tokenizer) into `to`.
void copy_model_files(const fs::path& from, const fs::path& to) {
  ensure_dir(to);
  for (const auto& e : fs::directory_iterator(from)) {
    if (!e.is_regular_file()) continue;
    std::error_code ec;
    fs::copy_file(e.path(), to / e.path().filename(), fs::copy_options::overwrite_existing, ec);
    RLRF_CHECK(!ec, "cannot copy '{}' to '{}': {}", e.path().string(), (to / e.path().filename()).string(), ec.message());
  }
}

std::string peft_readme(const fs::path& run_dir, int round, const std::string& base, bool base_written, const llm::FoldedLora& folded,
                        const std::vector<fs::path>& adapters) {
  std::string list;
  for (const fs::path& a : adapters) list += "- `" + fs::absolute(a).lexically_normal().string() + "`\n";
  return fmt::format(
      "# Round {} of run `{}`: one PEFT LoRA adapter\n\n"
      "This adapter is the whole policy of round {} relative to the base model that `adapter_config.json` names\n"
      "(`{}`){}. It folds these adapters, each trained on the policy before it, into one LoRA of rank {}\n"
      "(A stacked by rows, B by columns with each adapter's alpha/r folded in, lora_alpha = r):\n\n{}\n"
      "Loading it:\n\n"
      "```python\n"
      "from transformers import AutoModelForCausalLM\nfrom peft import PeftModel\n"
      "base = AutoModelForCausalLM.from_pretrained(\"{}\")\n"
      "policy = PeftModel.from_pretrained(base, \"<this directory>\")  # or .merge_and_unload()\n"
      "```\n\n"
      "vLLM: `--enable-lora --max-lora-rank {}` with this directory as the LoRA module on that base.\n",
      round, fs::absolute(run_dir).lexically_normal().string(), round, base,
      base_written ? ", the run's full SFT model, written here as base/ since a full fine-tune's delta is not low-rank" : "",
      folded.r, list, base, folded.r <= 8 ? 8 : folded.r <= 16 ? 16 : folded.r <= 32 ? 32 : folded.r <= 64 ? 64 : folded.r);
}

void write_provenance(const fs::path& dir, const nlohmann::json& j) { write_file_atomic(dir / "rlrf_export.json", j.dump(2) + "\n"); }

}  // namespace

ExportResult export_run_policy(const fs::path& run_dir, int round, const fs::path& output, const ExportOptions& options) {
  const RunConfig c = load_run_config(run_dir);
  if (round < 0) round = c.run.rounds;
  const PolicyChain chain = checked_chain(c, run_dir, round);
  ExportResult res;
  res.round = round;
  res.adapters = chain.adapters;
  nlohmann::json prov = {{"run", fs::absolute(run_dir).lexically_normal().string()}, {"round", round}, {"format", format_name(options.format)},
                         {"base", fs::absolute(chain.base).lexically_normal().string()}, {"adapters", strings_of(chain.adapters)}};
  switch (options.format) {
    case ExportFormat::kHf: {
      llm::LlamaForCausalLM model = load_fp32(chain);
      write_hf(model, output, options.dtype, tokenizer_dir(c));
      prov["dtype"] = options.dtype;
      write_provenance(output, prov);
      res.output = output;
      break;
    }
    case ExportFormat::kPeft: {
      RLRF_CHECK(!chain.adapters.empty(), "round {} of run '{}' has no LoRA adapter to fold: its policy is the model '{}' itself{} "
                 "(export it with --format hf)", round, run_dir.string(), chain.base.string(),
                 c.dpo.finetune == "full" && round > 0 ? " ([dpo] finetune = \"full\" saves whole models)" : "");
      const at::ScalarType dtype = llm::parse_dtype(options.dtype);
      RLRF_CHECK(dtype == at::kFloat || dtype == at::kBFloat16, "peft export: dtype '{}' (fp32 or bf16)", options.dtype);
      // A full SFT model is the adapters' base: written beside the adapter, since no other copy of
      // it is meant to leave the run.
      const bool sft_base = c.sft.enabled && c.sft.finetune == "full";
      std::string base = fs::absolute(chain.base).lexically_normal().string();
      if (sft_base) {
        copy_model_files(chain.base, output / "base");
        base = fs::absolute(output / "base").lexically_normal().string();
        log_info("export: [sft] finetune = \"full\": the adapter's base is the SFT model, written to {}", base);
      }
      llm::FoldedLora folded = llm::fold_lora_adapters(chain.adapters, output, base, dtype);
      write_file_atomic(output / "README.md", peft_readme(run_dir, round, base, sft_base, folded, chain.adapters));
      prov["adapter_base"] = base;
      prov["rank"] = folded.r;
      write_provenance(output, prov);
      res.output = output;
      res.base = base;
      res.rank = folded.r;
      break;
    }
    case ExportFormat::kGguf: {
      const at::ScalarType dtype = gguf_dtype(options.dtype);
      llm::LlamaForCausalLM model = load_fp32(chain);
      res.output = gguf_file(output, "round" + std::to_string(round), dtype);
      llm::GgufOptions g;
      g.dtype = dtype;
      g.name = options.name.empty() ? res.output.stem().string() : options.name;
      llm::save_gguf(model, tokenizer_dir(c), res.output, g);
      break;
    }
  }
  return res;
}

ExportResult export_model_dir(const fs::path& model_dir, const fs::path& output, const ExportOptions& options) {
  RLRF_CHECK(fs::exists(model_dir / "config.json"), "'{}' is not a model directory in Hugging Face layout (no config.json)",
             model_dir.string());
  RLRF_CHECK(options.format != ExportFormat::kPeft, "--format peft needs a run (--run): a model directory has no adapters to fold");
  llm::ModelOptions o;
  o.dtype = at::kFloat;
  llm::LlamaForCausalLM model = llm::load_model(model_dir, o);
  ExportResult res;
  if (options.format == ExportFormat::kHf) {
    write_hf(model, output, options.dtype, model_dir);
    res.output = output;
    return res;
  }
  const at::ScalarType dtype = gguf_dtype(options.dtype);
  fs::path normal = fs::absolute(model_dir).lexically_normal();
  if (normal.filename().empty()) normal = normal.parent_path();  // "dir/"
  const std::string stem = normal.filename().string();
  res.output = gguf_file(output, stem.empty() ? "model" : stem, dtype);
  llm::GgufOptions g;
  g.dtype = dtype;
  g.name = options.name.empty() ? (stem.empty() ? res.output.stem().string() : stem) : options.name;
  llm::save_gguf(model, model_dir, res.output, g);
  return res;
}

std::string round_adapter_base(const RunConfig& config, const fs::path& run_dir, int round, std::string* command) {
  RLRF_CHECK(round >= 1, "round_adapter_base: round {} has no DPO adapter", round);
  const PolicyChain prev = policy_chain(config, run_dir, round - 1);
  if (command) command->clear();
  if (prev.adapters.empty()) return fs::absolute(prev.base).lexically_normal().string();
  const fs::path merged = fs::absolute(round == 1 ? sft_model_dir(run_dir) : round_model_dir(run_dir, round - 1)).lexically_normal() / "merged";
  if (command)
    *command = fmt::format("rlrf export --run {} --round {} --format hf --output {}", fs::absolute(run_dir).lexically_normal().string(),
                           round - 1, merged.string());
  return merged.string();
}

void write_round_adapter_readme(const RunConfig& config, const fs::path& run_dir, int round) {
  std::string command;
  const std::string base = round_adapter_base(config, run_dir, round, &command);
  const std::string run = fs::absolute(run_dir).lexically_normal().string();
  std::string text = fmt::format(
      "# DPO round {}'s LoRA adapter: a delta on round {}'s policy\n\n"
      "This adapter is what DPO round {} trained, on the policy of round {}. It is relative to that policy, which\n"
      "`adapter_config.json` names as `base_model_name_or_path`: `{}`.\n",
      round, round - 1, round, round - 1, base);
  if (!command.empty())
    text += fmt::format(
        "That model is the configured model with {} merged in; the run does not store it. Write it with\n\n"
        "    {}\n\n"
        "Loaded on the configured model (`{}`) alone, this adapter gives another policy.\n",
        round == 1 ? "the SFT adapter" : "the SFT adapter (if any) and the earlier rounds' adapters", command,
        expand_path(config.model.path).string());
  text += fmt::format(
      "\nRound {}'s policy in one piece:\n\n"
      "    rlrf export --run {} --round {} --format hf --output DIR           # merged checkpoint\n"
      "    rlrf export --run {} --round {} --format peft --output DIR         # one adapter, SFT and rounds folded\n"
      "    rlrf export --run {} --round {} --format gguf --output FILE.gguf   # llama.cpp\n",
      round, run, round, run, round, run, round);
  write_file_atomic(round_model_dir(run_dir, round) / "adapter" / "README.md", text);
}

}  // namespace rlrf
