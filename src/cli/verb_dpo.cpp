// `rlrf dpo`: DPO on preference pairs in TRL's JSONL layout (what `rlrf run` exports, or pairs from
// anywhere), saving a PEFT adapter (LoRA) or a full Hugging Face model.
#include <CLI/CLI.hpp>

#include <nlohmann/json.hpp>

#include "align/dpo.h"
#include "cli/verbs.h"
#include "llm/checkpoint.h"
#include "llm/lora.h"
#include "text/chat_template.h"
#include "util/config.h"
#include "util/error.h"
#include "util/files.h"
#include "util/log.h"
#include "util/runtime.h"
#include "util/strings.h"

namespace {

// A TRL field: a string, or a list of {"role","content"} messages.
std::vector<rlrf::ChatMessage> messages_of(const nlohmann::json& j, const std::string& where) {
  std::vector<rlrf::ChatMessage> out;
  if (j.is_string()) {
    out.push_back({"user", j.get<std::string>()});
    return out;
  }
  RLRF_CHECK(j.is_array(), "{}: expected a string or a list of messages", where);
  for (const auto& m : j) {
    RLRF_CHECK(m.is_object() && m.contains("role") && m.contains("content"), "{}: a message needs role and content", where);
    out.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
  }
  return out;
}

std::string answer_of(const nlohmann::json& j, const std::string& where) {
  if (j.is_string()) return j.get<std::string>();
  std::vector<rlrf::ChatMessage> m = messages_of(j, where);
  RLRF_CHECK(!m.empty(), "{}: empty answer", where);
  return m.back().content;
}

int run(int argc, char** argv) {
  CLI::App app{"DPO on preference pairs (TRL JSONL: prompt/chosen/rejected as strings or message lists).\n"
               "Settings from [dpo] of --config (defaults: the paper's beta 0.01, lr 5e-5, batch 2 x accumulation 8, 3 epochs, LoRA).\n\n"
               "example: rlrf dpo --model ../shared/models/tinystories-656k --pairs runs/demo/pairs/round0.trl.jsonl "
               "--out runs/dpo-test --set dpo.epochs=1",
               "rlrf dpo"};
  std::string model_dir, pairs_path, out_dir, config_path, dtype, device = "auto", chat = "";
  std::vector<std::string> sets;
  int max_new = 0;
  app.add_option("--model", model_dir, "Hugging Face model directory")->required();
  app.add_option("--pairs", pairs_path, "pairs JSONL (TRL layout)")->required();
  app.add_option("--out", out_dir, "output directory: adapter/ (PEFT) or a full model")->required();
  app.add_option("--config", config_path, "TOML with a [dpo] section");
  app.add_option("--set", sets, "override: dpo.key=value (repeatable)");
  app.add_option("--dtype", dtype, "fp32 | bf16 (default: [dpo] dtype, else fp32)");
  app.add_option("--device", device, "auto | cpu | cuda");
  app.add_option("--chat-template", chat, "llama3 | chatml | none (default: the tokenizer's)");
  app.add_option("--max-response-tokens", max_new, "cut answers to this many tokens (0: no cut)");
  CLI11_PARSE(app, argc, argv);

  rlrf::ConfigFile file = config_path.empty() ? rlrf::ConfigFile::parse("", "(defaults)") : rlrf::ConfigFile::load(config_path);
  for (const std::string& s : sets) file.set(s);
  rlrf::DpoConfig config;
  rlrf::ConfigSection section = file.section("dpo");
  config.read(section);
  section.check_no_unknown_keys();

  rlrf::Tokenizer tok = rlrf::Tokenizer::load(model_dir);
  std::string tmpl = rlrf::resolve_chat_template(tok, chat);
  std::vector<int32_t> eos = tok.eos_ids();
  std::vector<rlrf::PreferencePair> pairs;
  int line_no = 0;
  for (const std::string& line : rlrf::read_lines(pairs_path)) {
    ++line_no;
    if (rlrf::trim(line).empty()) continue;
    std::string where = pairs_path + ":" + std::to_string(line_no);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      rlrf::fail("{}: not valid JSON: {}", where, e.what());
    }
    RLRF_CHECK(j.is_object() && j.contains("prompt") && j.contains("chosen") && j.contains("rejected"),
               "{}: expected prompt, chosen and rejected", where);
    rlrf::PreferencePair p;
    p.prompt = rlrf::encode_chat(tok, messages_of(j["prompt"], where), true, tmpl);
    auto answer = [&](const nlohmann::json& a) {
      std::vector<int32_t> ids = tok.encode(answer_of(a, where), false);
      if (max_new > 0 && static_cast<int>(ids.size()) >= max_new) ids.resize(static_cast<size_t>(max_new));
      else if (!eos.empty()) ids.push_back(eos.front());
      return ids;
    };
    p.chosen = answer(j["chosen"]);
    p.rejected = answer(j["rejected"]);
    pairs.push_back(std::move(p));
  }
  RLRF_CHECK(!pairs.empty(), "{}: no pairs", pairs_path);

  rlrf::llm::ModelOptions options;
  options.device = rlrf::resolve_device(device);
  // fp32 master weights; --dtype / [dpo] dtype is the compute dtype of training (align/dpo.h).
  options.dtype = at::kFloat;
  if (!dtype.empty()) config.dtype = dtype;
  rlrf::llm::LlamaForCausalLM model = rlrf::llm::load_model(model_dir, options);
  rlrf::llm::LoraConfig lora = config.lora;
  lora.base_model_name_or_path = model_dir;
  if (config.finetune == "lora") rlrf::llm::apply_lora(model, lora);
  rlrf::log_info("dpo: {} pairs from {}", pairs.size(), pairs_path);
  std::string log;
  rlrf::DpoResult result = rlrf::train_dpo(model, pairs, config, [&](const rlrf::DpoStepLog& s) {
    log += nlohmann::json({{"step", s.step}, {"epoch", s.epoch}, {"loss", s.loss}, {"chosen_reward", s.chosen_reward},
                           {"rejected_reward", s.rejected_reward}, {"accuracy", s.accuracy}, {"margin", s.margin}, {"lr", s.lr}})
               .dump() +
           "\n";
  });
  if (config.finetune == "lora") {
    rlrf::llm::save_lora(model, lora, std::filesystem::path(out_dir) / "adapter");
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

rlrf::cli::VerbRegistration reg({"dpo", "DPO on preference pairs (TRL JSONL) -> PEFT adapter or full model", 50, run});

}  // namespace
