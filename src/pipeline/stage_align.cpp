// Rewards, pairs and DPO: the recommendation feedback and the knowledge alignment of one round.
#include <cstdint>
#include <fmt/format.h>

#include <map>
#include <optional>
#include <nlohmann/json.hpp>

#include "align/dpo.h"
#include "align/pairs.h"
#include "align/reward.h"
#include "knowledge/knowledge.h"
#include "llm/lora.h"
#include "llm/checkpoint.h"
#include "pipeline/dpo_command.h"
#include "pipeline/export.h"
#include "pipeline/report_docs.h"
#include "pipeline/stages.h"
#include "rerank/checkpoint.h"
#include "rerank/knowledge_vectors.h"
#include "util/error.h"
#include "util/files.h"
#include "util/log.h"
#include "data/rng.h"

namespace rlrf {

static RewardSchedule schedule_of(const RunContext& ctx) { return ctx.config.reward.schedule(ctx.config.run.rounds); }

int reward_model_round(const RunContext& ctx, int round) { return schedule_of(ctx).model_round(round); }

std::string reward_fingerprint(const RunContext& ctx, int round) {
  // (card texts depend on the prompts and max_new_tokens, which generate_fingerprint covers)
  return fingerprint({kPipelineVersion, "reward", std::to_string(round), generate_fingerprint(ctx, round),
                      round > 0 ? generate_fingerprint(ctx, round - 1) : "",
                      ctx.config.sections_text({"reward", "rerank", "knowledge"}), encoder_identity(ctx)});
}

std::vector<int> reward_folds(const RunContext& ctx) {
  const int k = std::max(1, ctx.config.reward.folds);
  std::vector<int> fold(ctx.data.sequences.size(), -1);
  // Training and validation users each dealt round-robin in a seeded order: the folds are equal in
  // size and do not depend on the rounds.
  for (Split split : {Split::kTrain, Split::kValid}) {
    std::vector<int32_t> users;
    for (int32_t u : ctx.users)
      if (ctx.data.sequences[static_cast<size_t>(u)].split == split) users.push_back(u);
    Rng rng(derive_seed(static_cast<uint64_t>(ctx.config.rerank.train.seed), 0x7265776172642066ull /* "reward f" */,
                        static_cast<uint64_t>(split)));
    rng.shuffle(users);
    for (size_t i = 0; i < users.size(); ++i) fold[static_cast<size_t>(users[i])] = static_cast<int>(i % static_cast<size_t>(k));
  }
  return fold;
}

static std::filesystem::path reward_model_path(const RunContext& ctx, int model_round, int fold) {
  if (ctx.config.reward.folds <= 1) return ctx.dir / "models" / fmt::format("reward{}.rrk", model_round);
  return ctx.dir / "models" / fmt::format("reward{}-fold{}.rrk", model_round, fold);
}

// A reward model trained with a round's sample-0 responses as the users' knowledge, without
// cross-fitting, has fitted those very vectors on the very lists that score them: it rates sample 0
// above the user's other responses (measured on the demo: best of 4 for 53% of users, against 25%
// by chance), so sample 0 would be "chosen" for being seen, not for being better. Then its own
// round's sample 0 is not scored (RewardSchedule::scores). Cross-fitted models never saw the users
// they score.

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

// Scores round r's responses of participating training and validation users with reward model
// `model_round`: each user by the fold model that did not train on it. Only training users'
// rewards make pairs; validation users' show how the rewards generalise.
static std::vector<StoredReward> score_round(RunContext& ctx, int model_round, int round) {
  const std::vector<int> fold = reward_folds(ctx);
  const int k = std::max(1, ctx.config.reward.folds);
  std::vector<std::vector<UserResponse>> by_fold(static_cast<size_t>(k));
  const RewardSchedule schedule = schedule_of(ctx);
  for (const StoredResponse& r : ctx.store->responses(round)) {
    const int f = fold[static_cast<size_t>(r.user)];
    if (f >= 0 && schedule.scores(model_round, round, r.sample)) by_fold[static_cast<size_t>(f)].push_back({r.user, r.sample, r.text});
  }
  std::vector<StoredReward> rows;
  std::vector<RewardedResponse> rewarded;
  const bool card_reward = !schedule.fits_model();
  const std::vector<KnowledgeCard> cards = card_reward ? user_cards(ctx) : std::vector<KnowledgeCard>{};
  for (int f = 0; f < k; ++f) {
    const std::vector<UserResponse>& responses = by_fold[static_cast<size_t>(f)];
    if (responses.empty()) continue;
    std::vector<double> rewards;
    if (card_reward) {
      for (const UserResponse& x : responses)
        rewards.push_back(card_agreement(cards[static_cast<size_t>(x.user)], x.text).score());
    } else {
      Reranker r = load_reranker(reward_model_path(ctx, model_round, f), ctx.device);
      r.threads = ctx.config.rerank.train.threads;
      RewardModel model = reward_model_from(ctx, r);
      rewards = score_responses(model, ctx.data, responses, ctx.config.reward, *ctx.encoder, ctx.encode_cache(),
                                ctx.config.knowledge.user_history);
    }
    for (size_t i = 0; i < responses.size(); ++i) {
      rows.push_back({model_round, round, responses[i].user, responses[i].sample, rewards[i]});
      if (ctx.data.sequences[static_cast<size_t>(responses[i].user)].split == Split::kTrain)
        rewarded.push_back({responses[i].user, responses[i].sample, rewards[i]});
    }
  }
  ctx.store->put_rewards(model_round, round, rows);
  PairSelection sel = select_pairs(rewarded, ctx.config.reward.min_margin);
  log_info("reward/{}: reward model {} ({} forward, {} fold(s)): {} of {} training users have all their rewards tied", round,
           model_round, ctx.config.reward.dtype, k, sel.all_tied, sel.users);
  return rows;
}

// The reward models of `model_round`, one per fold, each trained without its fold's training users.
static void train_reward_models(RunContext& ctx, int round, int model_round, const std::string& stage) {
  const RunConfig& c = ctx.config;
  std::vector<std::string> texts;
  switch (c.reward.train_knowledge) {
    case RewardKnowledge::kProfile:
      texts.assign(ctx.data.sequences.size(), "");
      for (int32_t u : ctx.users) texts[static_cast<size_t>(u)] = user_profile_summary(ctx.data, u);
      break;
    case RewardKnowledge::kCard: texts = card_texts(ctx); break;
    case RewardKnowledge::kSample0: texts = round_knowledge_texts(ctx, round); break;
  }
  const int k = std::max(1, c.reward.folds);
  log_info("{}: training {} {} reward model(s) on {} knowledge{}", stage, k, c.reward.model,
           schedule_of(ctx).knowledge_label(model_round),
           k > 1 ? ", each without one fold of the training users (cross-fitted rewards)" : "");
  // Knowledge vectors once, in this process; the trainings run side by side in worker processes.
  RewardModel base = train_reward_model_inputs(ctx.data, texts, *ctx.encoder, ctx.encode_cache(), c.knowledge.user_history,
                                               c.knowledge.item);
  const std::vector<int> fold = reward_folds(ctx);
  RerankConfig rc = c.rerank;
  rc.train.model = c.reward.model;
  ensure_dir(ctx.dir / "models");
  run_trainings(
      k, rc,
      [&](int64_t f) {
        PreparedData data = ctx.data;
        if (k > 1) {
          // Fold f's training users leave the training lists (they become held-out users).
          for (UserSequence& s : data.sequences)
            if (s.split == Split::kTrain && fold[static_cast<size_t>(s.user)] == f) s.split = Split::kTest;
          for (RerankList& l : data.lists)
            if (l.split == Split::kTrain && fold[static_cast<size_t>(l.user)] == f) l.split = Split::kTest;
        }
        Reranker r = train_reranker(data, base.kv, rc.train);
        save_reranker(r, reward_model_path(ctx, model_round, static_cast<int>(f)));
        return nlohmann::json({{"valid_map5", r.best_valid_map5}, {"best_epoch", r.best_epoch}}).dump();
      },
      [&](int64_t f, const std::string& result) {
        auto j = nlohmann::json::parse(result);
        log_info("{}: reward model {} fold {}: valid MAP@5 {:.4f} (epoch {})", stage, model_round, f,
                 j.value("valid_map5", 0.0), j.value("best_epoch", 0));
      },
      [&](int64_t f) { return fmt::format("{} reward model {} fold {}", stage, model_round, f); });
}

void stage_reward(RunContext& ctx, int round) {
  const std::string stage = fmt::format("reward/{}", round);
  const std::string fp = reward_fingerprint(ctx, round);
  if (stage_current(ctx, stage, fp)) {
    log_info("{}: current", stage);
    return;
  }
  const RewardSchedule schedule = schedule_of(ctx);
  const int model_round = schedule.model_round(round);
  const bool train_new = schedule.new_model(round);
  if (train_new) {
    if (schedule.fits_model()) train_reward_models(ctx, round, model_round, stage);
    std::vector<StoredReward> rows = score_round(ctx, model_round, round);
    double mean = 0;
    for (const StoredReward& r : rows) mean += r.reward;
    log_info("{}: {} rewards, mean {:.4f}", stage, rows.size(), rows.empty() ? 0.0 : mean / double(rows.size()));
  }
  // The previous round's reward model on this round's responses: did DPO raise the reward?
  if (round > 0) {
    int prev = schedule.model_round(round - 1);
    if (!(train_new && prev == model_round)) {
      std::vector<StoredReward> rows = score_round(ctx, prev, round);
      double mean = 0;
      for (const StoredReward& x : rows) mean += x.reward;
      log_info("{}: round {} responses under reward model {}: mean {:.4f}", stage, round, prev,
               rows.empty() ? 0.0 : mean / double(rows.size()));
    }
  }
  ctx.store->mark_stage_done(stage, fp);
}

static ResponseTexts response_texts(const RunContext& ctx, int round) {
  ResponseTexts out;
  for (StoredResponse& r : ctx.store->responses(round)) out[{r.user, r.sample}] = std::move(r.text);
  return out;
}

PairSelection round_pair_selection(const RunContext& ctx, int round) {
  std::vector<RewardedResponse> rewarded;
  for (const StoredReward& r : ctx.store->rewards(reward_model_round(ctx, round), round))
    if (ctx.data.sequences[static_cast<size_t>(r.user)].split == Split::kTrain)  // validation users never pair
      rewarded.push_back({r.user, r.sample, r.reward});
  return select_pairs(rewarded, ctx.config.reward.min_margin);
}

static std::vector<SelectedPair> round_pairs(RunContext& ctx, int round, PairSelection* stats = nullptr) {
  PairSelection sel = round_pair_selection(ctx, round);
  if (stats) *stats = sel;
  return sel.pairs;
}

void stage_pairs(RunContext& ctx, int round) {
  const std::string stage = PairsDoc::key(round);
  const std::string fp = fingerprint({"pairs", reward_fingerprint(ctx, round)});
  if (stage_current(ctx, stage, fp)) return;
  PairSelection sel;
  std::vector<SelectedPair> pairs = round_pairs(ctx, round, &sel);
  const std::vector<PairText> texts =
      pair_texts(pairs, response_texts(ctx, round), ctx.data, [&](int32_t u) { return ctx.prompts[static_cast<size_t>(u)]; });
  std::filesystem::path dir = ctx.dir / "pairs";
  export_trl_jsonl(texts, dir / fmt::format("round{}.trl.jsonl", round));
  export_llamafactory(texts, dir, fmt::format("rlrf_round{}", round));
  put_pairs_doc(*ctx.store, round, PairsDoc::of(sel));
  log_info("{}: {} pairs from {} users ({} skipped: {} with all rewards tied, {} more with best - worst <= min_margin {}); "
           "exported to {}", stage, pairs.size(), sel.users, sel.ties_skipped, sel.all_tied, sel.ties_skipped - sel.all_tied,
           ctx.config.reward.min_margin, dir.string());
  if (pairs.empty() && sel.users > 0)
    log_warn("{}: every one of {} users' rewards tied; round {} trains nothing and its policy stays round {}'s", stage,
             sel.users, round + 1, round);
  ctx.store->mark_stage_done(stage, fp);
}

void stage_dpo(RunContext& ctx, int round) {
  const std::string stage = DpoDoc::key(round);
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
  ResponseTexts texts_of;
  for (const StoredResponse& r : ctx.store->responses(from)) {
    ids[{r.user, r.sample}] = r.ids;
    texts_of[{r.user, r.sample}] = r.text;
  }
  std::map<int32_t, const SelectedPair*> selected_of;
  for (const SelectedPair& p : selected) selected_of[p.user] = &p;
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
  // Held-out pairs (a seeded share per round): how the trained policy orders pairs it never saw.
  std::vector<PreferencePair> heldout;
  if (c.dpo.heldout_fraction > 0 && pairs.size() >= 10) {
    Rng rng(derive_seed(c.dpo.seed, 0x68656c646f757420ull /* "heldout " */, static_cast<uint64_t>(round)));
    rng.shuffle(pairs);
    const size_t n_out = static_cast<size_t>(c.dpo.heldout_fraction * static_cast<double>(pairs.size()));
    heldout.assign(std::make_move_iterator(pairs.end() - static_cast<std::ptrdiff_t>(n_out)), std::make_move_iterator(pairs.end()));
    pairs.resize(pairs.size() - n_out);
    std::sort(pairs.begin(), pairs.end(), [](const PreferencePair& a, const PreferencePair& b) { return a.user < b.user; });
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
    DpoDoc skipped;
    skipped.skipped = true;
    skipped.ties_skipped = sel.ties_skipped;
    put_dpo_doc(*ctx.store, round, skipped);
    ctx.store->mark_stage_done(stage, fp);
    return;
  }
  // The policy in fp32 (master weights); [dpo] dtype is the compute dtype of its forward/backward.
  llm::LlamaForCausalLM model = load_policy(ctx, from, at::kFloat);
  llm::LoraConfig lora = c.dpo.lora;
  // What the adapter is relative to: round `from`'s policy (a model on disk, or the merge that
  // `rlrf export` writes; pipeline/export.h), not the configured model.
  lora.base_model_name_or_path = round_adapter_base(c, ctx.dir, round);
  // A fresh adapter each round, its A drawn from a stream of its own (PEFT: B = 0, so the round
  // starts at the previous policy either way).
  lora.seed = c.dpo.lora.seed + 0x9e3779b97f4a7c15ull * static_cast<uint64_t>(round);
  log_info("{}: {} pairs, beta {}, lr {}, batch {} x accum {}, {} epochs, {}{}", stage, pairs.size(), c.dpo.beta, c.dpo.lr,
           c.dpo.batch_size, c.dpo.grad_accum, c.dpo.epochs, c.dpo.finetune,
           c.dpo.backend == "command" ? ", by [dpo] command" : "");
  DpoConfig dc = c.dpo;
  dc.seed = c.dpo.seed + static_cast<uint64_t>(round);
  dc.dtype = llm::dtype_name(stage_dtype(ctx, c.dpo.dtype));
  auto log_step = [&](const DpoStepLog& s) { put_dpo_step(*ctx.store, round, s); };
  DpoResult result;
  if (c.dpo.backend == "command") {
    // The same pairs, order, seeds and settings, trained by another process (pipeline/dpo_command.h).
    std::vector<SelectedPair> trained;
    for (const PreferencePair& pp : pairs) trained.push_back(*selected_of.at(pp.user));
    std::vector<PairText> texts =
        pair_texts(trained, texts_of, ctx.data, [&](int32_t u) { return ctx.prompts[static_cast<size_t>(u)]; });
    for (size_t i = 0; i < texts.size(); ++i) {
      texts[i].prompt_ids = pairs[i].prompt;
      texts[i].chosen_ids = pairs[i].chosen;
      texts[i].rejected_ids = pairs[i].rejected;
    }
    result = train_dpo_by_command(ctx, round, model, pairs, texts, lora, dc);
    for (const DpoStepLog& s : result.steps) log_step(s);
  } else {
    if (c.dpo.finetune == "lora") llm::apply_lora(model, lora);
    result = train_dpo(model, pairs, dc, log_step);
  }
  PreferenceMetrics held;
  if (!heldout.empty()) {
    std::optional<llm::LlamaForCausalLM> reference;
    if (c.dpo.finetune != "lora") reference = load_policy(ctx, from, at::kFloat);
    held = preference_metrics(model, heldout, c.dpo.beta, reference ? &*reference : nullptr);
    log_info("{}: {} held-out pairs: accuracy {:.3f}, margin {:+.4f}, log-ratio chosen {:+.4f} rejected {:+.4f}", stage,
             held.pairs, held.accuracy, held.margin, held.chosen_logratio, held.rejected_logratio);
  }
  if (c.dpo.finetune == "lora") {
    llm::save_lora(model, lora, ctx.model_dir(round) / "adapter");
    write_round_adapter_readme(c, ctx.dir, round);
  } else {
    llm::SaveOptions save;
    save.dtype = at::kFloat;  // the master weights
    save.tokenizer_from = c.model.tokenizer.empty() ? expand_path(c.model.path) : expand_path(c.model.tokenizer);
    llm::save_model(model, ctx.model_dir(round), save);
  }
  DpoDoc doc;
  doc.pairs = static_cast<int64_t>(pairs.size());
  doc.steps = static_cast<int64_t>(result.steps.size());
  doc.seconds = result.seconds;
  doc.tokens = result.tokens;
  doc.tokens_per_second = result.tokens_per_second();
  doc.heldout = held;
  put_dpo_doc(*ctx.store, round, doc);
  log_info("{}: {} steps in {:.1f} s ({:.0f} tokens/s); policy saved to {}", stage, result.steps.size(), result.seconds,
           result.tokens_per_second(), ctx.model_dir(round).string());
  ctx.store->mark_stage_done(stage, fp);
}

}  // namespace rlrf
