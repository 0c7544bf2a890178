// Opening a run: directory and store, prepared data, tokenizer, prompts fitted to the context.
#include "pipeline/run_context.h"

#include <algorithm>
#include <cstdint>

#include "knowledge/prompts.h"
#include "llm/checkpoint.h"
#include "llm/lora.h"
#include "text/chat_template.h"
#include "util/error.h"
#include "util/files.h"
#include "util/log.h"
#include "runtime/runtime.h"
#include "util/sha256.h"
#include "util/strings.h"

namespace rlrf {

std::string fingerprint(const std::vector<std::string>& parts) {
  Sha256 h;
  for (const std::string& p : parts) {
    h.update(p);
    h.update(std::string_view("\x1f\x1e", 2));
  }
  return h.hex_digest();
}

bool stage_current(const RunContext& ctx, const std::string& stage, const std::string& fp) {
  auto stored = ctx.store->stage_fingerprint(stage);
  return stored && *stored == fp;
}

std::filesystem::path round_model_dir(const std::filesystem::path& run_dir, int round) {
  return run_dir / "models" / ("round" + std::to_string(round));
}

std::filesystem::path sft_model_dir(const std::filesystem::path& run_dir) { return run_dir / "models" / "sft"; }

std::filesystem::path RunContext::model_dir(int round) const { return round_model_dir(dir, round); }
std::filesystem::path RunContext::sft_dir() const { return sft_model_dir(dir); }

static std::string prepare_fingerprint(const RunConfig& c, const std::string& setting) {
  std::vector<std::string> parts = {kPipelineVersion, "prepare", c.sections_text({"prepare"})};
  if (setting != c.prepare.setting) parts.push_back("setting=" + setting);
  return fingerprint(parts);
}

// The prepared data of `pc` in `file`, reused when the store marks `stage` done with `fp`.
static PreparedData load_or_prepare(RunContext& ctx, PrepareConfig pc, const std::string& stage, const std::string& fp,
                                    const std::filesystem::path& file) {
  if (stage_current(ctx, stage, fp) && std::filesystem::exists(file)) {
    log_info("{}: current ({})", stage, file.string());
    return load_prepared(file);
  }
  if (!pc.data_dir.empty()) pc.data_dir = expand_path(pc.data_dir).string();
  log_info("{}: loading {} from {} (setting {})", stage, pc.dataset, data_dir(pc.data_dir).string(), pc.setting);
  Dataset ds = load_configured_dataset(pc);
  PreparedData data = prepare(ds, pc);
  save_prepared(data, file);
  ctx.store->mark_stage_done(stage, fp);
  PrepareCounts n = count(data);
  log_info("{}: {} users, {} items, {} interactions; lists train {} valid {} test {}", stage, n.users, n.items,
           n.interactions, n.lists_per_split[0], n.lists_per_split[1], n.lists_per_split[2]);
  return data;
}

PreparedData prepare_other_setting(RunContext& ctx, const std::string& setting, std::string* fp_out) {
  PrepareConfig pc = ctx.config.prepare;
  pc.setting = setting;
  pc.validate();
  std::string fp = prepare_fingerprint(ctx.config, setting);
  PreparedData data = load_or_prepare(ctx, pc, "prepare/" + setting, fp, ctx.dir / ("prepared_" + setting + ".bin"));
  // The knowledge of a user is the same text whatever the lists; comparing settings needs the same
  // users in the same splits.
  RLRF_CHECK(data.sequences.size() == ctx.data.sequences.size(), "setting {} prepared {} users, the run's setting {} has {}",
             setting, data.sequences.size(), ctx.config.prepare.setting, ctx.data.sequences.size());
  for (size_t u = 0; u < data.sequences.size(); ++u) {
    const UserSequence& a = data.sequences[u];
    const UserSequence& b = ctx.data.sequences[u];
    RLRF_CHECK(a.split == b.split && a.prefix_len == b.prefix_len && data.dataset.users[u].raw_id == ctx.data.dataset.users[u].raw_id,
               "setting {} puts user {} in split {} (prefix {}), the run's setting {} in split {} (prefix {})", setting,
               data.dataset.users[u].raw_id, split_name(a.split), a.prefix_len, ctx.config.prepare.setting,
               split_name(b.split), b.prefix_len);
  }
  if (fp_out) *fp_out = fp;
  return data;
}

RunContext open_run(const RunConfig& config) {
  RunContext ctx;
  ctx.config = config;
  ctx.dir = config.run.dir;
  ensure_dir(ctx.dir);
  ctx.store = std::make_unique<RunStore>(ctx.dir / "run.sqlite");
  ctx.device = resolve_device(config.model.device);
  write_file_atomic(ctx.dir / "config.toml", config.file.canonical() + "\n");

  // Prepared data: reused when its fingerprint matches.
  std::string fp = prepare_fingerprint(config, config.prepare.setting);
  ctx.data = load_or_prepare(ctx, config.prepare, "prepare", fp, ctx.dir / "prepared.bin");
  ctx.prepared_fingerprint = fp;

  // Users taking part: those with lists, at most max_users per split.
  std::vector<int> has_lists(ctx.data.sequences.size(), 0);
  for (const RerankList& l : ctx.data.lists) has_lists[static_cast<size_t>(l.user)] = 1;
  int per_split[3] = {0, 0, 0};
  for (size_t u = 0; u < ctx.data.sequences.size(); ++u) {
    if (!has_lists[u]) continue;
    int s = static_cast<int>(ctx.data.sequences[u].split);
    if (config.run.max_users > 0 && per_split[s] >= config.run.max_users) continue;
    ++per_split[s];
    ctx.users.push_back(static_cast<int32_t>(u));
  }
  log_info("run: {} users take part (train {}, valid {}, test {})", ctx.users.size(), per_split[0], per_split[1], per_split[2]);

  // Tokenizer, chat template and prompts fitted to the context.
  std::filesystem::path model_path = expand_path(config.model.path);
  std::filesystem::path tok_path = config.model.tokenizer.empty() ? model_path : expand_path(config.model.tokenizer);
  ctx.tokenizer = Tokenizer::load(tok_path);
  ctx.chat_template = resolve_chat_template(ctx.tokenizer, config.model.chat_template == "auto" ? "" : config.model.chat_template);
  llm::ModelConfig mc = llm::ModelConfig::load(model_path);
  ctx.max_context = config.model.max_context > 0 ? config.model.max_context : static_cast<int>(mc.max_position_embeddings);
  int max_prompt = ctx.max_context - config.generate.max_new_tokens;
  RLRF_CHECK(max_prompt > 16, "model context {} leaves no room for prompts with max_new_tokens {}", ctx.max_context,
             config.generate.max_new_tokens);
  ctx.prompts.resize(ctx.data.sequences.size());
  ctx.prompt_ids.resize(ctx.data.sequences.size());
  auto render = [&](const UserPrompt& p) {
    return encode_chat(ctx.tokenizer, {{"system", p.system}, {"user", p.user}}, true, ctx.chat_template);
  };
  int64_t cut = 0, total_tokens = 0;
  for (int32_t u : ctx.users) {
    UserPrompt p = build_user_prompt_fitting(ctx.data, u, config.prompt, max_prompt,
                                             [&](const UserPrompt& q) { return static_cast<int>(render(q).size()); });
    if (p.history_items < ctx.data.sequences[static_cast<size_t>(u)].prefix_len) ++cut;
    ctx.prompt_ids[static_cast<size_t>(u)] = render(p);
    total_tokens += static_cast<int64_t>(ctx.prompt_ids[static_cast<size_t>(u)].size());
    ctx.prompts[static_cast<size_t>(u)] = std::move(p);
  }
  log_info("prompts: template {}, mean {:.0f} tokens, {} of {} cut to fit {} tokens", ctx.chat_template,
           ctx.users.empty() ? 0.0 : double(total_tokens) / double(ctx.users.size()), cut, ctx.users.size(), max_prompt);

  if (config.prepare.labels != "ratings") {
    // Planted labels: the cards of the items each prompt shows rank the lists (users who take no
    // part in the run: the card of their whole prefix).
    std::vector<KnowledgeCard> cards = user_cards(ctx);
    std::vector<char> in_run(ctx.data.sequences.size(), 0);
    for (int32_t u : ctx.users) in_run[static_cast<size_t>(u)] = 1;
    for (size_t u = 0; u < cards.size(); ++u)
      if (!in_run[u]) cards[u] = user_card(ctx.data, static_cast<int32_t>(u));
    const PlantedRule rule = config.prepare.labels == "card-all"          ? PlantedRule::kEveryStatement
                             : config.prepare.labels == "card-every-user" ? PlantedRule::kEveryUser
                                                                          : PlantedRule::kGenres;
    double share = plant_card_labels(ctx.data, cards, rule);
    log_info("prepare: planted labels from the users' knowledge cards ([prepare] labels = \"{}\"): {:.1f}% positive",
             config.prepare.labels, 100.0 * share);
  }
  ctx.encoder = make_encoder(config.knowledge.encoder);
  return ctx;
}

std::string encoder_identity(const RunContext& ctx) { return "encoder=" + (ctx.encoder ? ctx.encoder->name() : std::string("none")); }

std::string policy_fingerprint(const RunContext& ctx, int round) {
  const RunConfig& c = ctx.config;
  std::string base = fingerprint({kPipelineVersion, "model", c.sections_text({"model"})});
  if (c.sft.enabled) base = fingerprint({base, "sft", ctx.prepared_fingerprint, c.sections_text({"sft", "prompt", "generate"})});
  if (round == 0) return base;
  // Round r's policy: DPO on round r-1's pairs, which depend on round r-1's responses and rewards.
  return fingerprint({"dpo", std::to_string(round), policy_fingerprint(ctx, round - 1),
                      c.sections_text({"prompt", "generate", "reward", "rerank", "knowledge", "dpo"}), ctx.prepared_fingerprint,
                      encoder_identity(ctx)});
}

at::ScalarType stage_dtype(const RunContext& ctx, const std::string& stage_dtype) {
  return llm::parse_dtype(stage_dtype.empty() ? ctx.config.model.dtype : stage_dtype);
}

bool dpo_round_skipped(const std::filesystem::path& run_dir, int round) {
  return round > 0 && std::filesystem::exists(round_model_dir(run_dir, round) / kSkippedRoundFile);
}

bool dpo_round_skipped(const RunContext& ctx, int round) { return dpo_round_skipped(ctx.dir, round); }

PolicyChain policy_chain(const RunConfig& c, const std::filesystem::path& run_dir, int round) {
  PolicyChain chain;
  chain.base = expand_path(c.model.path);
  if (c.sft.enabled && c.sft.finetune == "full") chain.base = sft_model_dir(run_dir);
  if (c.sft.enabled && c.sft.finetune == "lora") chain.adapters.push_back(sft_model_dir(run_dir) / "adapter");
  for (int r = 1; r <= round; ++r) {
    if (dpo_round_skipped(run_dir, r)) continue;  // no pairs that round: its policy is the one before
    if (c.dpo.finetune == "full") {
      // Full DPO fine-tunes save whole models: the latest one replaces everything before it.
      chain.base = round_model_dir(run_dir, r);
      chain.adapters.clear();
    } else {
      chain.adapters.push_back(round_model_dir(run_dir, r) / "adapter");
    }
  }
  return chain;
}

llm::LlamaForCausalLM load_policy(const RunContext& ctx, int round, at::ScalarType dtype) {
  llm::ModelOptions options;
  options.device = ctx.device;
  options.dtype = dtype;
  PolicyChain chain = policy_chain(ctx.config, ctx.dir, round);
  // Weights and adapters merge in fp32 and are cast to `dtype` once (llm/lora.h).
  return llm::load_merged_policy(chain.base, chain.adapters, options);
}

std::vector<std::string> round_knowledge_texts(const RunContext& ctx, int round) {
  std::vector<std::string> texts(ctx.data.sequences.size());
  for (const StoredResponse& r : ctx.store->responses(round))
    if (r.sample == 0) texts[static_cast<size_t>(r.user)] = r.text;
  return texts;
}

std::vector<KnowledgeCard> user_cards(const RunContext& ctx) {
  std::vector<KnowledgeCard> cards(ctx.data.sequences.size());
  for (int32_t u : ctx.users)
    cards[static_cast<size_t>(u)] = user_card(ctx.data, u, ctx.prompts[static_cast<size_t>(u)].history_items);
  return cards;
}

std::vector<std::string> card_texts(const RunContext& ctx, double noise, uint64_t seed) {
  const std::vector<KnowledgeCard> cards = user_cards(ctx);
  const CardVocabulary vocab = noise > 0 ? card_vocabulary(ctx.data) : CardVocabulary{};
  const size_t cap = static_cast<size_t>(std::max(1, ctx.config.generate.max_new_tokens - 1));
  std::vector<std::string> texts(cards.size());
  for (int32_t u : ctx.users) {
    KnowledgeCard card = cards[static_cast<size_t>(u)];
    if (noise > 0) card = noisy_card(card, noise, vocab, seed, u);
    std::string text = card_text(card);
    if (ctx.tokenizer.encode(text, false).size() > cap) text = card_text(card, false);
    texts[static_cast<size_t>(u)] = std::move(text);
  }
  return texts;
}

std::string response_text(const RunContext& ctx, const std::vector<int32_t>& ids) {
  return std::string(trim(ctx.tokenizer.decode(ids, true)));
}

}  // namespace rlrf
