// The optional warm start: supervised fine-tuning on (prompt, target) pairs of the training users.
// Targets are the profile summaries (the demo's: a base model learns the shape of a preference
// summary) or a JSONL file of {"user": raw id, "response": text} (or "prompt"+"response" pairs).
#include <cstdint>
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "align/sft.h"
#include "knowledge/knowledge.h"
#include "llm/checkpoint.h"
#include "llm/lora.h"
#include "pipeline/report_docs.h"
#include "pipeline/stages.h"
#include "text/chat_template.h"
#include "util/error.h"
#include "util/files.h"
#include "util/log.h"
#include "util/strings.h"

namespace rlrf {

// Target ids: the text's tokens plus the first stop token, cut to max_new_tokens (no stop token
// when cut, so the model learns to continue rather than to stop early).
static std::vector<int32_t> target_ids(const RunContext& ctx, const std::string& text) {
  std::vector<int32_t> ids = ctx.tokenizer.encode(text, false);
  std::vector<int32_t> eos = ctx.tokenizer.eos_ids();
  size_t cap = static_cast<size_t>(ctx.config.generate.max_new_tokens);
  if (ids.size() + 1 <= cap && !eos.empty()) {
    ids.push_back(eos.front());
  } else if (ids.size() > cap) {
    ids.resize(cap);
  }
  return ids;
}

static std::vector<SftExample> sft_examples(const RunContext& ctx, Split split) {
  const SftConfig& c = ctx.config.sft;
  std::vector<SftExample> out;
  if (c.targets == "profile" || c.targets == "card") {
    // Cards: noisy ones ([sft] target_noise) for training and validation alike (validation loss
    // measures the fit to what is trained); the true cards are what card accuracy compares with.
    const std::vector<std::string> cards =
        c.targets == "card" ? card_texts(ctx, c.target_noise, c.seed) : std::vector<std::string>{};
    for (int32_t u : ctx.users) {
      if (ctx.data.sequences[static_cast<size_t>(u)].split != split) continue;
      const std::string text = c.targets == "card" ? cards[static_cast<size_t>(u)] : user_profile_summary(ctx.data, u);
      out.push_back({ctx.prompt_ids[static_cast<size_t>(u)], target_ids(ctx, text)});
    }
    return out;
  }
  // file:<path> JSONL: {"user": raw id, "response": text} uses the run's prompt of that user;
  // {"prompt": text, "response": text} uses the given prompt (rendered with the chat template).
  std::filesystem::path path = expand_path(c.targets.substr(5));
  std::map<std::string, int32_t> by_raw;
  for (size_t u = 0; u < ctx.data.dataset.users.size(); ++u) by_raw[ctx.data.dataset.users[u].raw_id] = static_cast<int32_t>(u);
  int line_no = 0;
  for (const std::string& line : read_lines(path)) {
    ++line_no;
    if (trim(line).empty()) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      fail("{}:{}: not valid JSON: {}", path.string(), line_no, e.what());
    }
    RLRF_CHECK(j.is_object() && j.contains("response") && j["response"].is_string(), "{}:{}: expected an object with a \"response\" string",
               path.string(), line_no);
    SftExample e;
    if (j.contains("user")) {
      std::string raw = j["user"].is_string() ? j["user"].get<std::string>() : j["user"].dump();
      auto it = by_raw.find(raw);
      RLRF_CHECK(it != by_raw.end(), "{}:{}: unknown user '{}'", path.string(), line_no, raw);
      if (ctx.data.sequences[static_cast<size_t>(it->second)].split != split || ctx.prompt_ids[static_cast<size_t>(it->second)].empty()) continue;
      e.prompt = ctx.prompt_ids[static_cast<size_t>(it->second)];
    } else {
      RLRF_CHECK(j.contains("prompt") && j["prompt"].is_string(), "{}:{}: expected \"user\" or \"prompt\"", path.string(), line_no);
      if (split != Split::kTrain) continue;
      e.prompt = encode_chat(ctx.tokenizer, {{"system", ctx.config.prompt.system}, {"user", j["prompt"].get<std::string>()}}, true,
                             ctx.chat_template);
    }
    e.response = target_ids(ctx, j["response"].get<std::string>());
    out.push_back(std::move(e));
  }
  return out;
}

void stage_sft(RunContext& ctx) {
  const SftConfig& c = ctx.config.sft;
  if (!c.enabled) return;
  const std::string fp = policy_fingerprint(ctx, 0);
  if (stage_current(ctx, "sft", fp)) {
    log_info("sft: current ({})", ctx.sft_dir().string());
    return;
  }
  std::vector<SftExample> train = sft_examples(ctx, Split::kTrain);
  std::vector<SftExample> valid = sft_examples(ctx, Split::kValid);
  RLRF_CHECK(!train.empty(), "sft: no training examples from targets '{}'", c.targets);
  log_info("sft: {} training examples, {} validation examples, finetune {}", train.size(), valid.size(), c.finetune);

  // fp32 master weights whatever [sft] dtype asks for: that is the compute dtype (align/sft.h).
  llm::ModelOptions options;
  options.device = ctx.device;
  options.dtype = at::kFloat;
  std::filesystem::path base = expand_path(ctx.config.model.path);
  llm::LlamaForCausalLM model = llm::load_model(base, options);
  llm::LoraConfig lora = c.lora;
  lora.base_model_name_or_path = base.string();
  if (c.finetune == "lora") llm::apply_lora(model, lora);
  double before = sft_eval_loss(model, valid);
  ctx.store->put_log("sft_valid", 0, 0, nlohmann::json({{"valid_loss", before}}).dump());
  SftConfig sc = c;
  sc.dtype = llm::dtype_name(stage_dtype(ctx, c.dtype));
  SftResult result = train_sft(model, train, sc, [&](const SftStepLog& s) { put_sft_step(*ctx.store, s); });
  double after = sft_eval_loss(model, valid);
  ctx.store->put_log("sft_valid", 0, 1, nlohmann::json({{"valid_loss", after}}).dump());
  log_info("sft: validation loss per token {:.4f} -> {:.4f} ({:.1f} s, {:.0f} tokens/s)", before, after, result.seconds,
           result.seconds > 0 ? double(result.tokens) / result.seconds : 0.0);
  std::filesystem::remove_all(ctx.sft_dir());
  if (c.finetune == "lora") {
    llm::save_lora(model, lora, ctx.sft_dir() / "adapter");
  } else {
    llm::SaveOptions save;
    save.dtype = at::kFloat;  // the masters: later stages merge and cast from these
    save.tokenizer_from = ctx.config.model.tokenizer.empty() ? base : expand_path(ctx.config.model.tokenizer);
    llm::save_model(model, ctx.sft_dir(), save);
  }
  SftDoc doc;
  doc.train_examples = static_cast<int64_t>(train.size());
  doc.valid_examples = static_cast<int64_t>(valid.size());
  doc.valid_loss_before = before;
  doc.valid_loss_after = after;
  doc.seconds = result.seconds;
  doc.tokens = result.tokens;
  put_sft_doc(*ctx.store, doc);
  ctx.store->mark_stage_done(SftDoc::key(), fp);
}

}  // namespace rlrf
