// The run report: report.md with the results table, paired comparisons, rewards and DPO figures,
// sample responses; SVG plots beside it (metrics per round, DPO loss and margins, chosen vs
// rejected rewards, reward distribution per round). The statistics are computed from the typed
// documents of pipeline/report_docs.h; each section of the report is one function that renders them.
#include <cstdint>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <map>
#include <set>
#include <nlohmann/json.hpp>

#include "pipeline/experiment.h"
#include "pipeline/report_docs.h"
#include "pipeline/stages.h"
#include "pipeline/svg_plot.h"
#include "util/files.h"
#include "util/log.h"

namespace rlrf {
namespace {

// ---------------------------------------------------------------------------------------------
// Statistics

struct RoundRewards {
  int model_round, round;
  std::map<std::pair<int32_t, int>, double> by_key;
  double mean() const {
    double s = 0;
    for (auto& [k, v] : by_key) s += v;
    return by_key.empty() ? 0 : s / double(by_key.size());
  }
  // Per user mean over samples.
  std::map<int32_t, double> per_user() const {
    std::map<int32_t, std::pair<double, int>> acc;
    for (auto& [k, v] : by_key) {
      acc[k.first].first += v;
      acc[k.first].second += 1;
    }
    std::map<int32_t, double> out;
    for (auto& [u, p] : acc) out[u] = p.first / p.second;
    return out;
  }
};

// The rewards of one split's users (training users make the pairs; validation users' rewards come
// from the same reward models, which never trained on them).
RoundRewards load_rewards(const RunContext& ctx, int model_round, int round, Split split = Split::kTrain) {
  RoundRewards r{model_round, round, {}};
  for (const StoredReward& x : ctx.store->rewards(model_round, round))
    if (ctx.data.sequences[static_cast<size_t>(x.user)].split == split) r.by_key[{x.user, x.sample}] = x.reward;
  return r;
}

// Round r's diagnostics (nullopt when round r has no responses): what the policy writes (length,
// stop rate, diversity across a user's N samples), how well its statements agree with the users'
// true cards, and what DPO did on held-out pairs.
std::optional<RoundDiagnostics> round_diagnostics(const RunContext& ctx, int r, const std::vector<KnowledgeCard>& cards) {
  const std::vector<int32_t> eos = ctx.tokenizer.eos_ids();
  const std::vector<StoredResponse> responses = ctx.store->responses(r);
  if (responses.empty()) return std::nullopt;
  double tokens = 0, stopped = 0;
  std::map<int32_t, std::vector<const StoredResponse*>> by_user;
  for (const StoredResponse& x : responses) {
    tokens += static_cast<double>(x.ids.size());
    stopped += !x.ids.empty() && std::find(eos.begin(), eos.end(), x.ids.back()) != eos.end();
    by_user[x.user].push_back(&x);
  }
  // distinct-2: distinct token bigrams over all bigrams of a user's N samples, mean over users.
  double distinct2 = 0;
  int64_t users_with_bigrams = 0;
  std::array<double, 3> card_sum{}, card_n{};
  for (auto& [u, list] : by_user) {
    std::set<std::pair<int32_t, int32_t>> seen;
    int64_t total = 0;
    for (const StoredResponse* x : list)
      for (size_t i = 1; i < x->ids.size(); ++i, ++total) seen.insert({x->ids[i - 1], x->ids[i]});
    if (total > 0) {
      distinct2 += static_cast<double>(seen.size()) / static_cast<double>(total);
      ++users_with_bigrams;
    }
    const int split = static_cast<int>(ctx.data.sequences[static_cast<size_t>(u)].split);
    for (const StoredResponse* x : list) {
      card_sum[static_cast<size_t>(split)] += card_agreement(cards[static_cast<size_t>(u)], x->text).score();
      card_n[static_cast<size_t>(split)] += 1;
    }
  }
  // Does the reward know the better card? Over training users' pairs of samples with different
  // rewards and different card accuracy: the share where the higher reward has the higher accuracy;
  // and the card accuracy of the best minus the worst sample (what DPO's pairs carry).
  const RoundRewards own = load_rewards(ctx, reward_model_round(ctx, r), r);
  int64_t concordant = 0, discordant = 0, best_worst_users = 0;
  double best_minus_worst = 0;
  for (auto& [u, list] : by_user) {
    if (ctx.data.sequences[static_cast<size_t>(u)].split != Split::kTrain) continue;
    std::vector<std::pair<double, double>> rc;  // (reward, card accuracy)
    for (const StoredResponse* x : list)
      if (auto it = own.by_key.find({u, x->sample}); it != own.by_key.end())
        rc.push_back({it->second, card_agreement(cards[static_cast<size_t>(u)], x->text).score()});
    if (rc.size() < 2) continue;
    for (size_t i = 0; i < rc.size(); ++i)
      for (size_t j = i + 1; j < rc.size(); ++j) {
        const double dr = rc[i].first - rc[j].first, da = rc[i].second - rc[j].second;
        if (dr == 0 || da == 0) continue;
        ((dr > 0) == (da > 0) ? concordant : discordant) += 1;
      }
    // select_pairs' choice: the first best and the first worst (lowest sample index on ties).
    size_t best = 0, worst = 0;
    for (size_t i = 1; i < rc.size(); ++i) {
      if (rc[i].first > rc[best].first) best = i;
      if (rc[i].first < rc[worst].first) worst = i;
    }
    if (rc[best].first > rc[worst].first) {
      best_minus_worst += rc[best].second - rc[worst].second;
      ++best_worst_users;
    }
  }
  RoundDiagnostics d;
  d.round = r;
  d.responses = static_cast<int64_t>(responses.size());
  d.mean_tokens = tokens / static_cast<double>(responses.size());
  d.eos_rate = stopped / static_cast<double>(responses.size());
  d.distinct2 = users_with_bigrams ? distinct2 / static_cast<double>(users_with_bigrams) : 0.0;
  d.card_accuracy_train_samples = card_n[0] ? card_sum[0] / card_n[0] : 0.0;
  d.card_accuracy_valid_samples = card_n[1] ? card_sum[1] / card_n[1] : 0.0;
  d.card_accuracy_test_samples = card_n[2] ? card_sum[2] / card_n[2] : 0.0;
  // The evaluation knowledge ([eval] decode) of test users: card accuracy per user.
  const std::vector<std::string> eval_texts = eval_knowledge_texts(ctx, r);
  double test_sum = 0;
  for (int32_t u : ctx.users) {
    if (ctx.data.sequences[static_cast<size_t>(u)].split != Split::kTest) continue;
    const double s = card_agreement(cards[static_cast<size_t>(u)], eval_texts[static_cast<size_t>(u)]).score();
    d.test_users.push_back(u);
    d.test_card_accuracy.push_back(s);
    test_sum += s;
  }
  d.card_accuracy_test_eval = d.test_card_accuracy.empty() ? 0.0 : test_sum / static_cast<double>(d.test_card_accuracy.size());
  d.eval_decode = ctx.config.eval.decode;
  d.reward_card_concordance = concordant + discordant ? double(concordant) / double(concordant + discordant) : 0.5;
  d.reward_card_pairs = concordant + discordant;
  d.best_minus_worst_card_accuracy = best_worst_users ? best_minus_worst / double(best_worst_users) : 0.0;
  d.pairs = pairs_doc(*ctx.store, r);
  if (r > 0)
    if (std::optional<DpoDoc> dpo = dpo_doc(*ctx.store, r); dpo && !dpo->skipped) d.heldout = dpo->heldout;
  d.reward_train = load_rewards(ctx, reward_model_round(ctx, r), r).mean();
  d.reward_valid = load_rewards(ctx, reward_model_round(ctx, r), r, Split::kValid).mean();
  return d;
}

std::vector<RoundDiagnostics> all_round_diagnostics(const RunContext& ctx) {
  const std::vector<KnowledgeCard> cards = user_cards(ctx);
  std::vector<RoundDiagnostics> out;
  for (int r = 0; r <= ctx.config.run.rounds; ++r)
    if (std::optional<RoundDiagnostics> d = round_diagnostics(ctx, r, cards)) out.push_back(std::move(*d));
  return out;
}

// One line of the rewards table: round r's responses under reward model m.
struct RewardLine {
  int round = 0, model_round = 0;
  bool own = false;               // m is the round's own reward model
  RoundRewards train, valid;
  std::optional<PairSelection> selection;  // own model and a round that made pairs
};

// The round's own reward model, then the previous round's (unless it is the same, fixed one).
std::vector<RewardLine> reward_lines(const RunContext& ctx) {
  std::vector<RewardLine> out;
  for (int r = 0; r <= ctx.config.run.rounds; ++r) {
    const int own = reward_model_round(ctx, r), previous = r > 0 ? reward_model_round(ctx, r - 1) : -1;
    for (int m : {own, previous == own ? -1 : previous}) {
      if (m < 0) continue;
      RewardLine line{r, m, m == own, load_rewards(ctx, m, r), {}, std::nullopt};
      if (line.train.by_key.empty()) continue;
      line.valid = load_rewards(ctx, m, r, Split::kValid);
      // Chosen and rejected means over the pairs the round used (ties skipped), by the same
      // selection stage_pairs made; a round that made no pairs (the last) shows none.
      if (line.own && pairs_doc(*ctx.store, r)) line.selection = round_pair_selection(ctx, r);
      out.push_back(std::move(line));
    }
  }
  return out;
}

// Same reward model, before vs after DPO: paired over users.
struct DpoRewardEffect {
  int round = 0, model_round = 0;
  double before = 0, after = 0, mean_change = 0;
  int64_t up = 0, down = 0, same = 0;
};

std::vector<DpoRewardEffect> dpo_reward_effects(const RunContext& ctx) {
  std::vector<DpoRewardEffect> out;
  for (int r = 1; r <= ctx.config.run.rounds; ++r) {
    const int m = reward_model_round(ctx, r - 1);
    RoundRewards before = load_rewards(ctx, m, r - 1), after = load_rewards(ctx, m, r);
    if (before.by_key.empty() || after.by_key.empty()) continue;
    auto b = before.per_user(), a = after.per_user();
    DpoRewardEffect e{r, m, before.mean(), after.mean(), 0, 0, 0, 0};
    double diff = 0;
    int64_t users = 0;
    for (auto& [u, v] : a) {
      auto it = b.find(u);
      if (it == b.end()) continue;
      ++users;
      diff += v - it->second;
      if (v > it->second + 1e-12) ++e.up;
      else if (v < it->second - 1e-12) ++e.down;
      else ++e.same;
    }
    e.mean_change = users ? diff / double(users) : 0.0;
    out.push_back(e);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Sections

std::string svg_link(const std::string& file, const std::string& alt) { return fmt::format("![{}]({})\n\n", alt, file); }

std::string header_section(const RunContext& ctx) {
  const RunConfig& c = ctx.config;
  std::string md = "# RLRF4Rec run report\n\n";
  md += fmt::format("Config: `{}` (copy in `config.toml`). Dataset {} (setting `{}`), model `{}`, {} rounds, N = {} responses per user.\n\n",
                    c.source, ctx.data.dataset.name, ctx.data.config.setting, c.model.path, c.run.rounds, c.generate.n);
  PrepareCounts n = count(ctx.data);
  md += fmt::format("Data: {} users, {} items, {} interactions; rerank lists train {} / valid {} / test {} "
                    "(positive rate {:.3f} / {:.3f} / {:.3f}; lists without a positive {:.1f}% / {:.1f}% / {:.1f}%). "
                    "{} users take part in generation.\n\n",
                    n.users, n.items, n.interactions, n.lists_per_split[0], n.lists_per_split[1], n.lists_per_split[2],
                    n.positive_rate[0], n.positive_rate[1], n.positive_rate[2], 100 * n.lists_without_positive[0],
                    100 * n.lists_without_positive[1], 100 * n.lists_without_positive[2], ctx.users.size());
  return md;
}

// Test NDCG@5 / MAP@5 per knowledge source, one series per model and metric, std as error bars.
std::string metrics_chart(const ExperimentResults& res, const std::vector<std::string>& models) {
  LineChart chart;
  chart.title = "Test NDCG@5 / MAP@5 by knowledge source";
  chart.y_label = "test metric @5";
  std::vector<std::string> names;
  for (const RowResult& r : res.rows)
    if (!r.model.empty() && r.model == models.front()) names.push_back(r.name);
  chart.x_tick_labels = names;
  for (const std::string& model : models) {
    for (const char* metric : {"ndcg", "map"}) {
      PlotSeries s;
      s.label = fmt::format("{} {}@5", model, metric == std::string("map") ? "MAP" : "NDCG");
      for (size_t i = 0; i < names.size(); ++i) {
        const RowResult* r = res.find(names[i], model);
        if (!r) continue;
        MeanStd ms = row_stat(*r, metric, 5);
        s.x.push_back(double(i));
        s.y.push_back(ms.mean);
        s.y_err.push_back(ms.std);
      }
      chart.series.push_back(std::move(s));
    }
  }
  chart.width = 820;
  return render_svg(chart);
}

// Results tables: the run's own lists (with metrics_by_round.svg), then each further setting's.
std::string test_metrics_section(const RunContext& ctx) {
  const RunConfig& c = ctx.config;
  std::string md;
  std::filesystem::path main_results = results_path(ctx, c.prepare.setting);
  if (std::filesystem::exists(main_results)) {
    ExperimentResults res = load_experiment(main_results);
    md += "## Test metrics\n\n";
    md += fmt::format("Rerankers retrained on each knowledge source, seeds {}; mean ± std over seeds. Test users only; "
                      "model selection on validation users.\n\n",
                      nlohmann::json(c.eval.seeds).dump());
    md += results_section(res, c.eval.models, {1, 3, 5, 7, 10}, c.knowledge.user_history);
    write_file_atomic(ctx.dir / "metrics_by_round.svg", metrics_chart(res, c.eval.models));
    md += svg_link("metrics_by_round.svg", "metrics by knowledge source");
  }
  for (const std::string& setting : c.eval.also_settings) {
    std::filesystem::path path = results_path(ctx, setting);
    if (!std::filesystem::exists(path)) continue;
    ExperimentResults res = load_experiment(path);
    md += fmt::format("## Test metrics on `{}` lists{}\n\n", setting, setting == "kar" ? " (the paper's setting)" : "");
    md += fmt::format("The same knowledge texts of the same users, rerankers retrained on `{}` lists (seeds {}); the run's "
                      "rewards and DPO used `{}` lists. Results in `{}`.\n\n",
                      setting, nlohmann::json(c.eval.seeds).dump(), c.prepare.setting, path.filename().string());
    md += results_section(res, c.eval.also_models.empty() ? c.eval.models : c.eval.also_models, {5, 10}, c.knowledge.user_history);
  }
  return md;
}

// Rewards: did DPO raise the reward of regenerated knowledge on train users? With
// rewards_chosen_rejected.svg and reward_distribution.svg.
std::string rewards_section(const RunContext& ctx) {
  const RunConfig& c = ctx.config;
  std::string md = "## Rewards of training users' responses\n\n";
  if (c.reward.model == "card")
    md += "Reward = the response's card accuracy against the user's true card ([reward] model = \"card\": a control "
          "without a recommender, not the paper's reward).\n\n";
  else
    md += fmt::format("Reward = mean {}@{} over the user's training lists with the response standing in for the user's knowledge "
                      "(reward model: {} trained on {} knowledge).\n\n",
                      c.reward.metric == "map" ? "MAP" : "NDCG", c.reward.k, c.reward.model, reward_knowledge_name(c.reward.train_knowledge));
  md += "| responses of | scored by reward model of | responses | mean reward | pairs | ties skipped | mean chosen (pairs used) | mean rejected (pairs used) | validation users' mean reward |\n|---|---|---|---|---|---|---|---|---|\n";
  Histogram hist;
  hist.title = "Reward distribution per round";
  hist.x_label = "reward";
  LineChart cr;
  cr.title = "Rewards of chosen vs rejected responses";
  cr.x_label = "round";
  cr.y_label = "mean reward";
  PlotSeries chosen_s{"chosen", {}, {}, {}}, rejected_s{"rejected", {}, {}, {}}, all_s{"all responses", {}, {}, {}};
  for (const RewardLine& line : reward_lines(ctx)) {
    const int r = line.round;
    std::string pairs = "-", ties = "-", ch = "-", rej = "-";
    if (line.own) {
      all_s.x.push_back(r);
      all_s.y.push_back(line.train.mean());
      if (line.selection) {
        const PairSelection& sel = *line.selection;
        pairs = std::to_string(sel.pairs.size());
        ties = std::to_string(sel.ties_skipped);
        if (!sel.pairs.empty()) {
          double sc = 0, sr = 0;
          for (const SelectedPair& p : sel.pairs) {
            sc += p.chosen_reward;
            sr += p.rejected_reward;
          }
          const double n = static_cast<double>(sel.pairs.size());
          ch = fmt::format("{:.4f}", sc / n);
          rej = fmt::format("{:.4f}", sr / n);
          chosen_s.x.push_back(r);
          chosen_s.y.push_back(sc / n);
          rejected_s.x.push_back(r);
          rejected_s.y.push_back(sr / n);
        }
      }
      std::vector<double> values;
      for (auto& [k, v] : line.train.by_key) values.push_back(v);
      hist.labels.push_back(fmt::format("round {}", r));
      hist.samples.push_back(std::move(values));
    }
    md += fmt::format("| round {} | round {} | {} | {:.4f} | {} | {} | {} | {} | {} |\n", r, line.model_round, line.train.by_key.size(),
                      line.train.mean(), pairs, ties, ch, rej,
                      line.valid.by_key.empty() ? std::string("-") : fmt::format("{:.4f}", line.valid.mean()));
  }
  md += "\n";
  const std::vector<DpoRewardEffect> effects = dpo_reward_effects(ctx);
  if (!effects.empty()) {
    md += "### Did DPO raise the reward? (same reward model, training users, mean over N responses per user)\n\n";
    md += "| rounds | reward model | before | after | mean change per user | users up / down / same | sign test p |\n|---|---|---|---|---|---|---|\n";
    for (const DpoRewardEffect& e : effects)
      md += fmt::format("| {} → {} | {} | {:.4f} | {:.4f} | {:+.4f} | {} / {} / {} | {:.3g} |\n", e.round - 1, e.round, e.model_round,
                        e.before, e.after, e.mean_change, e.up, e.down, e.same, sign_test_p_value(e.up, e.down));
    md += "\n";
  }
  if (!hist.samples.empty()) {
    write_file_atomic(ctx.dir / "reward_distribution.svg", render_svg(hist));
    cr.series = {chosen_s, rejected_s, all_s};
    write_file_atomic(ctx.dir / "rewards_chosen_rejected.svg", render_svg(cr));
    md += svg_link("rewards_chosen_rejected.svg", "chosen vs rejected rewards");
    md += svg_link("reward_distribution.svg", "reward distribution");
  }
  return md;
}

// The SFT warm start, with sft_loss.svg; empty without SFT.
std::string sft_section(const RunContext& ctx) {
  const std::optional<SftDoc> doc = sft_doc(*ctx.store);
  if (!doc) return "";
  std::string md = "## SFT warm start\n\n";
  md += fmt::format("{} training examples ({} finetune); validation loss per token {:.4f} → {:.4f}; {:.1f} s.\n\n",
                    doc->train_examples, ctx.config.sft.finetune, doc->valid_loss_before, doc->valid_loss_after, doc->seconds);
  LineChart sc;
  sc.title = "SFT training loss";
  sc.x_label = "step";
  sc.y_label = "loss per token";
  PlotSeries s{"train loss", {}, {}, {}};
  for (const SftStepLog& step : sft_steps(*ctx.store)) {
    s.x.push_back(static_cast<double>(step.step));
    s.y.push_back(step.loss);
  }
  sc.series = {s};
  write_file_atomic(ctx.dir / "sft_loss.svg", render_svg(sc));
  return md + svg_link("sft_loss.svg", "SFT loss");
}

// DPO per round from its step logs, with dpo_loss.svg and dpo_rewards.svg; empty without steps.
std::string dpo_section(const RunContext& ctx) {
  const RunConfig& c = ctx.config;
  const std::vector<std::pair<int, DpoStepLog>> steps = dpo_steps(*ctx.store);
  if (steps.empty()) return "";
  std::string md = "## DPO\n\n";
  md += fmt::format("beta {}, lr {}, batch {} × accumulation {}, {} epochs, {} ({}).\n\n", c.dpo.beta, c.dpo.lr, c.dpo.batch_size,
                    c.dpo.grad_accum, c.dpo.epochs, c.dpo.finetune, c.dpo.schedule);
  md += "| round | pairs | steps | first loss | last loss | last accuracy | last margin | seconds | tokens/s |\n|---|---|---|---|---|---|---|---|---|\n";
  LineChart lc, mc;
  lc.title = "DPO loss";
  lc.x_label = "optimizer step (all rounds)";
  lc.y_label = "loss";
  mc.title = "DPO implicit rewards and margin";
  mc.x_label = "optimizer step (all rounds)";
  mc.y_label = "beta * log ratio";
  PlotSeries loss{"loss", {}, {}, {}}, ch{"chosen reward", {}, {}, {}}, rj{"rejected reward", {}, {}, {}}, mg{"margin", {}, {}, {}};
  int x = 0;
  std::map<int, std::vector<const DpoStepLog*>> per_round;
  for (const auto& [round, s] : steps) {
    per_round[round].push_back(&s);
    loss.x.push_back(x);
    loss.y.push_back(s.loss);
    ch.x.push_back(x);
    ch.y.push_back(s.chosen_reward);
    rj.x.push_back(x);
    rj.y.push_back(s.rejected_reward);
    mg.x.push_back(x);
    mg.y.push_back(s.margin);
    ++x;
  }
  for (const auto& [round, list] : per_round) {
    const DpoDoc d = dpo_doc(*ctx.store, round).value_or(DpoDoc{});
    md += fmt::format("| {} | {} | {} | {:.4f} | {:.4f} | {:.2f} | {:+.4f} | {:.1f} | {:.0f} |\n", round, d.pairs, list.size(),
                      list.front()->loss, list.back()->loss, list.back()->accuracy, list.back()->margin, d.seconds,
                      d.tokens_per_second);
  }
  md += "\n";
  lc.series = {loss};
  mc.series = {ch, rj, mg};
  write_file_atomic(ctx.dir / "dpo_loss.svg", render_svg(lc));
  write_file_atomic(ctx.dir / "dpo_rewards.svg", render_svg(mc));
  return md + svg_link("dpo_loss.svg", "DPO loss") + svg_link("dpo_rewards.svg", "DPO rewards and margin");
}

std::string diagnostics_section(const std::vector<RoundDiagnostics>& diag, const RunConfig& c) {
  std::string md = "## Per-round diagnostics\n\n";
  md += fmt::format("Per round r: responses of round r's policy (N = {} per user, every split); card accuracy = share of "
                    "statements agreeing with the user's true card (knowledge/card.h: wrong and missing statements both cost); "
                    "test users' column is their evaluation knowledge ([eval] decode = {}). Rewards: mean over responses of "
                    "training users (who make the pairs) and of validation users (never paired); with [reward] folds = {} each "
                    "user is scored by a reward model that did not train on it. Held-out pairs: {:.0f}% of round r-1's pairs, "
                    "not trained on; log-ratio = log pi_r - log pi_(r-1) summed over the response (its mean over chosen and "
                    "rejected estimates the KL step). Reward-card concordance: over training users' pairs of samples that "
                    "differ in both, the share where the higher reward goes with the higher card accuracy (0.5: the reward "
                    "cannot tell the better card); best - worst: card accuracy of the highest- minus the lowest-rewarded "
                    "sample, what DPO's pairs teach.\n\n",
                    c.generate.n, c.eval.decode, c.reward.folds, 100 * c.dpo.heldout_fraction);
  md += "| round | mean tokens | stop rate | distinct-2 | card acc. train | card acc. test (eval) | reward train | reward valid | pairs | "
        "ties skipped | reward-card concordance | best - worst card acc. | held-out pair acc. | held-out margin | "
        "log-ratio chosen / rejected |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
  for (const RoundDiagnostics& row : diag) {
    std::string held = "-", margin = "-", lr = "-";
    if (row.heldout && row.heldout->pairs > 0) {
      held = fmt::format("{:.3f} ({} pairs)", row.heldout->accuracy, row.heldout->pairs);
      margin = fmt::format("{:+.4f}", row.heldout->margin);
      lr = fmt::format("{:+.3f} / {:+.3f}", row.heldout->chosen_logratio, row.heldout->rejected_logratio);
    }
    md += fmt::format("| {} | {:.1f} | {:.3f} | {:.3f} | {:.3f} | {:.3f} | {:.4f} | {:.4f} | {} | {} | {:.3f} ({} pairs) | {:+.3f} | {} | {} | {} |\n",
                      row.round, row.mean_tokens, row.eos_rate, row.distinct2, row.card_accuracy_train_samples,
                      row.card_accuracy_test_eval, row.reward_train, row.reward_valid,
                      row.pairs ? std::to_string(row.pairs->pairs) : "-", row.pairs ? std::to_string(row.pairs->ties_skipped) : "-",
                      row.reward_card_concordance, row.reward_card_pairs, row.best_minus_worst_card_accuracy, held, margin, lr);
  }
  return md + "\nValues per round in `diagnostics.json`.\n\n";
}

// Generation throughput per round, and every response of one training user.
std::string generation_section(const RunContext& ctx) {
  const RunConfig& c = ctx.config;
  std::string md = "## Generation\n\n| round | responses | new tokens | seconds | tokens/s |\n|---|---|---|---|---|\n";
  for (int r = 0; r <= c.run.rounds; ++r)
    if (std::optional<GenerateDoc> doc = generate_doc(*ctx.store, r))
      md += fmt::format("| {} | {} | {} | {:.1f} | {:.0f} |\n", r, ctx.store->count_responses(r), doc->new_tokens, doc->seconds,
                        doc->tokens_per_second);
  md += "\n";
  int32_t example_user = -1;
  for (int32_t u : ctx.users)
    if (ctx.data.sequences[static_cast<size_t>(u)].split == Split::kTrain) {
      example_user = u;
      break;
    }
  if (example_user >= 0) {
    md += fmt::format("### Example: training user {}\n\nPrompt (user message):\n\n> {}\n\n",
                      ctx.data.dataset.users[static_cast<size_t>(example_user)].raw_id, ctx.prompts[static_cast<size_t>(example_user)].user);
    for (int r = 0; r <= c.run.rounds; ++r) {
      RoundRewards rr = load_rewards(ctx, reward_model_round(ctx, r), r);
      for (const StoredResponse& resp : ctx.store->responses(r)) {
        if (resp.user != example_user) continue;
        auto it = rr.by_key.find({resp.user, resp.sample});
        std::string reward = it == rr.by_key.end() ? "" : fmt::format(" (reward {:.4f})", it->second);
        std::string text = resp.text;
        std::replace(text.begin(), text.end(), '\n', ' ');
        md += fmt::format("- round {} sample {}{}: {}\n", r, resp.sample, reward, text);
      }
    }
    md += "\n";
  }
  return md;
}

// Where the run's files for other tools are.
std::string exports_section(const RunContext& ctx) {
  std::string md = "Pairs for other trainers: `pairs/round*.trl.jsonl` (TRL) and `pairs/rlrf_round*.json` with `pairs/dataset_info.json` "
                   "(LLaMA-Factory). Knowledge per round: `knowledge/round*.jsonl`. Adapters (PEFT layout): `models/round*/adapter`.\n";
  if (ctx.config.dpo.backend == "command")
    md += "DPO rounds ran through `[dpo] command`: each round's dataset, LLaMA-Factory YAML and command log are in "
          "`dpo-command/round*/`.\n";
  return md;
}

}  // namespace

// The metrics table of one list setting and its paired comparisons at K = 5: each round against
// the KAR row, LLM rows against the history text alone, every other knowledge source against none.
// `user_history`: whether rows of the run's encoding encode the history with the text.
std::string results_section(const ExperimentResults& res, const std::vector<std::string>& models, const std::vector<int>& ks,
                            bool user_history) {
  std::string md = markdown_table(res, ks) + "\n";
  std::vector<std::pair<std::string, PairedComparison>> comps;
  for (const std::string& model : models) {
    const RowResult* none = find_row(res, model, RowKind::kNoKnowledge);
    const RowResult* history = find_row(res, model, RowKind::kHistoryOnly);
    for (const RowResult& r : res.rows) {
      if (r.model != model) continue;
      const RowLabel label = row_label(r);
      std::vector<const RowResult*> bases;
      const RowResult* kar = find_row(res, model, RowKind::kKar, label.encoding);
      if (label.kind == RowKind::kRound && kar) bases.push_back(kar);
      // What the LLM's words add beyond the history text they are encoded with.
      const bool with_history = label.encoding == RowEncoding::kHistoryAndText || (label.encoding == RowEncoding::kRun && user_history);
      if (label.is_llm() && history && with_history) bases.push_back(history);
      if (label.kind != RowKind::kNoKnowledge && none && bases.empty()) bases.push_back(none);
      for (const RowResult* base : bases)
        for (const char* metric : {"ndcg", "map"})
          comps.push_back({fmt::format("{}: {} vs {}", model, r.name, base->name), compare_rows(r, *base, metric, 5)});
    }
  }
  if (!comps.empty()) {
    md += "### Paired comparisons (@5)\n\nDifferences over the same seeds and users; the sign test counts users whose "
          "mean over seeds is higher in A than in B.\n\n";
    md += markdown_comparisons(comps) + "\n";
  }
  return md;
}

void stage_report(RunContext& ctx) {
  const std::vector<RoundDiagnostics> diag = all_round_diagnostics(ctx);
  std::string md = header_section(ctx);
  md += test_metrics_section(ctx);
  md += rewards_section(ctx);
  md += sft_section(ctx);
  md += dpo_section(ctx);
  write_file_atomic(ctx.dir / "diagnostics.json", nlohmann::json(diag).dump(1) + "\n");
  md += diagnostics_section(diag, ctx.config);
  md += generation_section(ctx);
  md += exports_section(ctx);
  write_file_atomic(ctx.dir / "report.md", md);
  log_info("report: {}", (ctx.dir / "report.md").string());
}

}  // namespace rlrf
