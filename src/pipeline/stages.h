// The stages of an RLRF run (the paper's Algorithm 1), each skipping its work when its outputs are
// current: SFT warm start, generation of N responses per user, rewards from the recommender, best /
// worst pairs, DPO, evaluation of the knowledge of every round, and the report.
#pragma once
#include "pipeline/run_context.h"

namespace rlrf {

void stage_sft(RunContext& ctx);
void stage_generate(RunContext& ctx, int round);
// Trains round r's reward model (unless r == rounds) and scores round r's responses of training
// users with it, and with the previous round's reward model (to measure what DPO changed).
void stage_reward(RunContext& ctx, int round);
// Pairs of round r's responses, exported for TRL and LLaMA-Factory; returns the pair count.
void stage_pairs(RunContext& ctx, int round);
// DPO on round r-1's pairs: the policy of round r.
void stage_dpo(RunContext& ctx, int round);
void stage_evaluate(RunContext& ctx);
// Where the evaluation of a list setting is written: results.json for the run's own setting,
// results_<setting>.json for each [eval] also_settings entry.
std::filesystem::path results_path(const RunContext& ctx, const std::string& setting);
void stage_report(RunContext& ctx);

// Fingerprints shared between stages.
std::string generate_fingerprint(const RunContext& ctx, int round);
std::string reward_fingerprint(const RunContext& ctx, int round);
// The reward model that scores round r's responses for its pairs: r ("sample0") or 0 ("profile").
int reward_model_round(const RunContext& ctx, int round);

}  // namespace rlrf
