// Rewards, pairs and DPO: the recommendation feedback and the knowledge alignment of one round.
#include <fmt/format.h>

#include <map>
#include <nlohmann/json.hpp>

#include "align/dpo.h"
#include "align/pairs.h"
#include "align/reward.h"
#include "knowledge/knowledge.h"
#include "llm/lora.h"
#include "llm/checkpoint.h"
#include "pipeline/stages.h"
#include "rerank/checkpoint.h"
#include "rerank/knowledge_vectors.h"
#include "util/error.h"
#include "util/files.h"
#include "util/log.h"

namespace rlrf {

int reward_model_round(const RunContext& ctx, int round) {
  return ctx.config.reward.train_knowledge == "profile" ? 0 : round;
}

std::string reward_fingerprint(const RunContext& ctx, int round) {
  return fingerprint({kPipelineVersion, "reward", std::to_string(round), generate_fingerprint(ctx, round),
                      round > 0 ? generate_fingerprint(ctx, round - 1) : "",
                      ctx.config.sections_text({"reward", "rerank", "knowledge"})});
}

static std::filesystem::path reward_model_path(const RunContext& ctx, int model_round) {
  return ctx.dir / "models" / fmt::format("reward{}.rrk", model_round);
}

// Scores round r's responses of participating training users with a reward model.
// A reward model trained with a round's sample-0 responses as the users' knowledge has fitted
// those very vectors on the very lists that score them: it rates sample 0 above the user's other
// responses (measured on the demo: best of 4 for 53% of users, against 25% by chance), so sample 0
// would be "chosen" for being seen, not for being better. Its own round's sample 0 is not scored.
static bool scored_by(const RunContext& ctx, int model_round, int round, int sample) {
  return !(ctx.config.reward.train_knowledge == "sample0" && model_round == round && sample == 0);
}

static std::vector<StoredReward> score_round(RunContext& ctx, const RewardModel& model, int model_round, int round) {
  std::vector<UserResponse> responses;
  for (const StoredResponse& r : ctx.store->responses(round))
    if (ctx.data.sequences[static_cast<size_t>(r.user)].split == Split::kTrain && scored_by(ctx, model_round, round, r.sample))
      responses.push_back({r.user, r.sample, r.text});
  std::vector<double> rewards = score_responses(model, ctx.data, responses, ctx.config.reward, *ctx.encoder,
                                                ctx.encode_cache(), ctx.config.knowledge.user_history);
  std::vector<StoredReward> rows;
  std::vector<RewardedResponse> rewarded;
  for (size_t i = 0; i < responses.size(); ++i) {
    rows.push_back({model_round, round, responses[i].user, responses[i].sample, rewards[i]});
    rewarded.push_back({responses[i].user, responses[i].sample, rewards[i]});
  }
  ctx.store->put_rewards(model_round, round, rows);
  PairSelection sel = select_pairs(rewarded, ctx.config.reward.min_margin);
  log_info("reward/{}: reward model {} ({} forward): {} of {} users have all their rewards tied", round, model_round,
           ctx.config.reward.dtype, sel.all_tied, sel.users);
  return rows;
}

static RewardModel reward_model_from(RunContext& ctx, const Reranker& reranker) {
  RewardModel m;
  m.reranker = reranker;
  KnowledgeSource items;
  items.user = "none";
  items.item = ctx.config.knowledge.item;
  items.cache_dir = ctx.encode_cache();
  m.kv = build_knowledge_vectors(ctx.data, items, *ctx.encoder);
  return m;
}

void stage_reward(RunContext& ctx, int round) {
  const std::string stage = fmt::format("reward/{}", round);
  const std::string fp = reward_fingerprint(ctx, round);
  if (stage_current(ctx, stage, fp)) {
    log_info("{}: current", stage);
    return;
  }
  const RunConfig& c = ctx.config;
  int model_round = reward_model_round(ctx, round);
  bool train_new = c.reward.train_knowledge == "sample0" ? round < c.run.rounds : round == 0;
  if (train_new) {
    std::vector<std::string> texts;
    if (c.reward.train_knowledge == "profile") {
      texts.assign(ctx.data.sequences.size(), "");
      for (int32_t u : ctx.users) texts[static_cast<size_t>(u)] = user_profile_summary(ctx.data, u);
    } else {
      texts = round_knowledge_texts(ctx, round);
    }
    log_info("{}: training the {} reward model on {} knowledge", stage, c.reward.model,
             c.reward.train_knowledge == "profile" ? "profile" : fmt::format("round {} sample-0", round));
    RewardModel model = train_reward_model(ctx.data, texts, c.reward, c.rerank, *ctx.encoder, ctx.encode_cache(),
                                           c.knowledge.user_history, c.knowledge.item);
    save_reranker(model.reranker, reward_model_path(ctx, model_round));
    std::vector<StoredReward> rows = score_round(ctx, model, model_round, round);
    double mean = 0;
    for (const StoredReward& r : rows) mean += r.reward;
    log_info("{}: {} rewards, mean {:.4f} (reward model valid MAP@5 {:.4f}, epoch {})", stage, rows.size(),
             rows.empty() ? 0.0 : mean / double(rows.size()), model.reranker.best_valid_map5, model.reranker.best_epoch);
  }
  // The previous round's reward model on this round's responses: did DPO raise the reward?
  if (round > 0) {
    int prev = reward_model_round(ctx, round - 1);
    if (!(train_new && prev == model_round)) {
      Reranker r = load_reranker(reward_model_path(ctx, prev), ctx.device);
      r.threads = ctx.config.rerank.threads;
      RewardModel model = reward_model_from(ctx, r);
      std::vector<StoredReward> rows = score_round(ctx, model, prev, round);
      double mean = 0;
      for (const StoredReward& x : rows) mean += x.reward;
      log_info("{}: round {} responses under reward model {}: mean {:.4f}", stage, round, prev,
               rows.empty() ? 0.0 : mean / double(rows.size()));
    }
  }
  ctx.store->mark_stage_done(stage, fp);
}

// The pairs of round r from the rewards its responses got from reward model r.
static std::vector<SelectedPair> round_pairs(RunContext& ctx, int round, PairSelection* stats = nullptr) {
  std::vector<RewardedResponse> rewarded;
  for (const StoredReward& r : ctx.store->rewards(reward_model_round(ctx, round), round))
    rewarded.push_back({r.user, r.sample, r.reward});
  PairSelection sel = select_pairs(rewarded, ctx.config.reward.min_margin);
  if (stats) *stats = sel;
  return sel.pairs;
}

void stage_pairs(RunContext& ctx, int round) {
  const std::string stage = fmt::format("pairs/{}", round);
  const std::string fp = fingerprint({"pairs", reward_fingerprint(ctx, round)});
  if (stage_current(ctx, stage, fp)) return;
  PairSelection sel;
  std::vector<SelectedPair> pairs = round_pairs(ctx, round, &sel);
  std::map<std::pair<int32_t, int>, const StoredResponse*> by_key;
  std::vector<StoredResponse> responses = ctx.store->responses(round);
  for (const StoredResponse& r : responses) by_key[{r.user, r.sample}] = &r;
  std::vector<PairText> texts;
  for (const SelectedPair& p : pairs) {
    PairText t;
    t.user_id = ctx.data.dataset.users[static_cast<size_t>(p.user)].raw_id;
    t.system = ctx.prompts[static_cast<size_t>(p.user)].system;
    t.prompt = ctx.prompts[static_cast<size_t>(p.user)].user;
    t.chosen = by_key.at({p.user, p.chosen_sample})->text;
    t.rejected = by_key.at({p.user, p.rejected_sample})->text;
    t.chosen_reward = p.chosen_reward;
    t.rejected_reward = p.rejected_reward;
    texts.push_back(std::move(t));
  }
  std::filesystem::path dir = ctx.dir / "pairs";
  export_trl_jsonl(texts, dir / fmt::format("round{}.trl.jsonl", round));
  export_llamafactory(texts, dir, fmt::format("rlrf_round{}", round));
  nlohmann::json stats = {{"pairs", pairs.size()}, {"users", sel.users}, {"ties_skipped", sel.ties_skipped},
                          {"all_tied", sel.all_tied}, {"single_response", sel.single_response}};
  ctx.store->put_doc(stage, stats.dump());
  log_info("{}: {} pairs from {} users ({} skipped: {} with all rewards tied, {} more with best - worst <= min_margin {}); "
           "exported to {}", stage, pairs.size(), sel.users, sel.ties_skipped, sel.all_tied, sel.ties_skipped - sel.all_tied,
           ctx.config.reward.min_margin, dir.string());
  if (pairs.empty() && sel.users > 0)
    log_warn("{}: every one of {} users' rewards tied; round {} trains nothing and its policy stays round {}'s", stage,
             sel.users, round + 1, round);
  ctx.store->mark_stage_done(stage, fp);
}

void stage_dpo(RunContext& ctx, int round) {
  const std::string stage = fmt::format("dpo/{}", round);
  const std::string fp = policy_fingerprint(ctx, round);
  if (stage_current(ctx, stage, fp)) {
    log_info("{}: current ({})", stage, ctx.model_dir(round).string());
    return;
  }
  const RunConfig& c = ctx.config;
  int from = round - 1;
  PairSelection sel;
  std::vector<SelectedPair> selected = round_pairs(ctx, from, &sel);
  std::map<std::pair<int32_t, int>, std::vector<int32_t>> ids;
  for (const StoredResponse& r : ctx.store->responses(from)) ids[{r.user, r.sample}] = r.ids;
  std::vector<PreferencePair> pairs;
  for (const SelectedPair& p : selected) {
    PreferencePair pp;
    pp.user = p.user;
    pp.prompt = ctx.prompt_ids[static_cast<size_t>(p.user)];
    pp.chosen = ids.at({p.user, p.chosen_sample});
    pp.rejected = ids.at({p.user, p.rejected_sample});
    if (pp.chosen.empty() || pp.rejected.empty()) continue;
    pairs.push_back(std::move(pp));
  }
  std::filesystem::remove_all(ctx.model_dir(round));
  if (pairs.empty()) {
    // Every user's N rewards tied (or fell within min_margin): nothing to learn from. The round is
    // skipped, not failed: its policy is round `from`'s (load_policy reads the marker).
    log_warn("{}: no preference pairs from round {} ({} users, {} ties skipped); skipping this DPO round", stage, from,
             sel.users, sel.ties_skipped);
    ensure_dir(ctx.model_dir(round));
    write_file_atomic(ctx.model_dir(round) / kSkippedRoundFile,
                      nlohmann::json({{"reason", "no preference pairs"}, {"users", sel.users}, {"ties_skipped", sel.ties_skipped}})
                              .dump() + "\n");
    ctx.store->put_doc(stage, nlohmann::json({{"pairs", 0}, {"steps", 0}, {"skipped", true}, {"ties_skipped", sel.ties_skipped}}).dump());
    ctx.store->mark_stage_done(stage, fp);
    return;
  }
  // The policy in fp32 (master weights); [dpo] dtype is the compute dtype of its forward/backward.
  llm::LlamaForCausalLM model = load_policy(ctx, from, at::kFloat);
  llm::LoraConfig lora = c.dpo.lora;
  lora.base_model_name_or_path = expand_path(c.model.path).string();
  // A fresh adapter each round, its A drawn from a stream of its own (PEFT: B = 0, so the round
  // starts at the previous policy either way).
  lora.seed = c.dpo.lora.seed + 0x9e3779b97f4a7c15ull * static_cast<uint64_t>(round);
  if (c.dpo.finetune == "lora") llm::apply_lora(model, lora);
  log_info("{}: {} pairs, beta {}, lr {}, batch {} x accum {}, {} epochs, {}", stage, pairs.size(), c.dpo.beta, c.dpo.lr,
           c.dpo.batch_size, c.dpo.grad_accum, c.dpo.epochs, c.dpo.finetune);
  DpoConfig dc = c.dpo;
  dc.seed = c.dpo.seed + static_cast<uint64_t>(round);
  dc.dtype = llm::dtype_name(stage_dtype(ctx, c.dpo.dtype));
  DpoResult result = train_dpo(model, pairs, dc, [&](const DpoStepLog& s) {
    ctx.store->put_log("dpo", round, static_cast<int>(s.step),
                       nlohmann::json({{"loss", s.loss}, {"chosen_reward", s.chosen_reward}, {"rejected_reward", s.rejected_reward},
                                       {"accuracy", s.accuracy}, {"margin", s.margin}, {"lr", s.lr}, {"grad_norm", s.grad_norm},
                                       {"ms", s.ms}, {"tokens", s.tokens}, {"epoch", s.epoch}})
                           .dump());
  });
  if (c.dpo.finetune == "lora") {
    llm::save_lora(model, lora, ctx.model_dir(round) / "adapter");
  } else {
    llm::SaveOptions save;
    save.dtype = at::kFloat;  // the master weights
    save.tokenizer_from = c.model.tokenizer.empty() ? expand_path(c.model.path) : expand_path(c.model.tokenizer);
    llm::save_model(model, ctx.model_dir(round), save);
  }
  ctx.store->put_doc(stage, nlohmann::json({{"pairs", pairs.size()}, {"steps", result.steps.size()}, {"seconds", result.seconds},
                                            {"tokens", result.tokens}, {"tokens_per_second", result.tokens_per_second()}})
                                .dump());
  log_info("{}: {} steps in {:.1f} s ({:.0f} tokens/s); policy saved to {}", stage, result.steps.size(), result.seconds,
           result.tokens_per_second(), ctx.model_dir(round).string());
  ctx.store->mark_stage_done(stage, fp);
}

}  // namespace rlrf
