// The stages of an RLRF run (the paper's Algorithm 1), each skipping its work when its outputs are
// current: SFT warm start, generation of N responses per user, rewards from the recommender, best /
// worst pairs, DPO, evaluation of the knowledge of every round, and the report.
#pragma once
#include "align/pairs.h"
#include "pipeline/experiment.h"
#include "pipeline/run_context.h"

namespace rlrf {

void stage_sft(RunContext& ctx);
void stage_generate(RunContext& ctx, int round);
// The greedy (argmax) response of round r's policy for every participating user, stored under
// greedy_store_round(r) with the same resume rules: the evaluation's knowledge for [eval] decode = "greedy".
void stage_generate_greedy(RunContext& ctx, int round);
// Knowledge texts per user (indexed by user) that evaluation uses for round r: the greedy responses
// ([eval] decode = "greedy") or sample 0 ("sample0", and "mean", whose vectors are then replaced).
std::vector<std::string> eval_knowledge_texts(const RunContext& ctx, int round);
// What round r's evaluation knowledge depends on (decode mode and the generation that made it).
std::string eval_knowledge_fingerprint(const RunContext& ctx, int round);
// [eval] decode = "mean": `fallback` [n_users, d] with each user who has round-r samples replaced
// by the mean of the encodings of all their N samples.
at::Tensor eval_mean_user_vectors(RunContext& ctx, const PreparedData& data, int round, const at::Tensor& fallback);
// Trains round r's reward model (unless r == rounds) and scores round r's responses of training
// users with it, and with the previous round's reward model (to measure what DPO changed).
void stage_reward(RunContext& ctx, int round);
// The reward fold of each participating training and validation user ([reward] folds; -1 for
// others): fold k's users are scored by the reward model trained without them.
std::vector<int> reward_folds(const RunContext& ctx);
// Pairs of round r's responses (training users only), stored and exported for TRL and LLaMA-Factory.
void stage_pairs(RunContext& ctx, int round);
// DPO on round r-1's pairs: the policy of round r.
void stage_dpo(RunContext& ctx, int round);
void stage_evaluate(RunContext& ctx);
// Where the evaluation of a list setting is written: results.json for the run's own setting,
// results_<setting>.json for each [eval] also_settings entry.
std::filesystem::path results_path(const RunContext& ctx, const std::string& setting);
void stage_report(RunContext& ctx);
// The results table of one list setting with its paired comparisons at K = 5 (each round against
// KAR, LLM rows against the history text alone, other knowledge against none); `user_history`:
// whether rows without a variant suffix encode the history with the text.
std::string results_section(const ExperimentResults& res, const std::vector<std::string>& models, const std::vector<int>& ks,
                            bool user_history);

// Fingerprints shared between stages.
std::string generate_fingerprint(const RunContext& ctx, int round);
std::string greedy_fingerprint(const RunContext& ctx, int round);
std::string reward_fingerprint(const RunContext& ctx, int round);
// The reward model that scores round r's responses for its pairs (align/reward_schedule.h).
int reward_model_round(const RunContext& ctx, int round);
// The pairs of round r (training users only) from the rewards of reward_model_round(r), with the
// users skipped for ties: what stage_pairs writes and the report describes.
PairSelection round_pair_selection(const RunContext& ctx, int round);

}  // namespace rlrf
