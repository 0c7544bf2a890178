// The documents the stages write and the report (and `rlrf summary`) read: typed records of the
// run store's per-stage documents and step logs, diagnostics.json's rows, and the names of the
// evaluation's result rows. Each has one to_json / from_json pair here, so that the writer and the
// readers share every key; readers take a missing key as its default (stores of older runs).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "align/dpo.h"
#include "align/pairs.h"
#include "align/sft.h"

namespace rlrf {

class RunStore;
struct RowResult;
struct ExperimentResults;

// Field by field (align/dpo.h declares none): the documents below compare as their fields do.
inline bool operator==(const PreferenceMetrics& a, const PreferenceMetrics& b) {
  return a.pairs == b.pairs && a.accuracy == b.accuracy && a.margin == b.margin && a.chosen_logratio == b.chosen_logratio &&
         a.rejected_logratio == b.rejected_logratio;
}

// A generation stage's document, stored under the stage's name: "generate/R" (round R's samples)
// or "greedy/R" (round R's greedy responses).
struct GenerateDoc {
  int64_t responses = 0, new_tokens = 0;
  double seconds = 0, tokens_per_second = 0;
  // backend = "openai" only (absent from builtin documents):
  std::string backend;  // "" (builtin) | "openai"
  std::string url;
  int64_t requests = 0, retries = 0, n_refusals = 0;
  int concurrency = 0;
  std::optional<bool> n_supported;  // whether the server honoured n (null: not known)
  static std::string key(int round);  // of round R's samples
  bool operator==(const GenerateDoc&) const = default;
};

// stage_pairs: store key "pairs/R"; the counts of align/pairs.h's PairSelection.
struct PairsDoc {
  int64_t pairs = 0, users = 0, ties_skipped = 0, all_tied = 0, single_response = 0;
  static std::string key(int round);
  static PairsDoc of(const PairSelection& sel);
  bool operator==(const PairsDoc&) const = default;
};

// stage_dpo: store key "dpo/R" (R: the round trained). A skipped round (no pairs) keeps only
// pairs = steps = 0, skipped and ties_skipped.
struct DpoDoc {
  int64_t pairs = 0, steps = 0, tokens = 0;
  double seconds = 0, tokens_per_second = 0;
  PreferenceMetrics heldout;  // held-out pairs (heldout_pairs, heldout_accuracy, ...)
  bool skipped = false;
  int64_t ties_skipped = 0;  // skipped rounds only
  static std::string key(int round);
  bool operator==(const DpoDoc&) const = default;
};

// stage_sft: store key "sft".
struct SftDoc {
  int64_t train_examples = 0, valid_examples = 0, tokens = 0;
  double valid_loss_before = 0, valid_loss_after = 0, seconds = 0;
  static std::string key();
  bool operator==(const SftDoc&) const = default;
};

void to_json(nlohmann::json& j, const GenerateDoc& d);
void from_json(const nlohmann::json& j, GenerateDoc& d);
void to_json(nlohmann::json& j, const PairsDoc& d);
void from_json(const nlohmann::json& j, PairsDoc& d);
void to_json(nlohmann::json& j, const DpoDoc& d);
void from_json(const nlohmann::json& j, DpoDoc& d);
void to_json(nlohmann::json& j, const SftDoc& d);
void from_json(const nlohmann::json& j, SftDoc& d);
// The step logs (RunStore::put_log "dpo" / "sft"; the step is the log's own column).
void to_json(nlohmann::json& j, const DpoStepLog& s);
void from_json(const nlohmann::json& j, DpoStepLog& s);
void to_json(nlohmann::json& j, const SftStepLog& s);
void from_json(const nlohmann::json& j, SftStepLog& s);

// Typed store access: put_* writes the document under its key, the readers return nullopt when
// the stage has not written it.
void put_generate_doc(RunStore& store, const std::string& stage, const GenerateDoc& d);
std::optional<GenerateDoc> generate_doc(const RunStore& store, int round);  // round R's samples
void put_pairs_doc(RunStore& store, int round, const PairsDoc& d);
std::optional<PairsDoc> pairs_doc(const RunStore& store, int round);
void put_dpo_doc(RunStore& store, int round, const DpoDoc& d);
std::optional<DpoDoc> dpo_doc(const RunStore& store, int round);
void put_sft_doc(RunStore& store, const SftDoc& d);
std::optional<SftDoc> sft_doc(const RunStore& store);
void put_dpo_step(RunStore& store, int round, const DpoStepLog& s);
void put_sft_step(RunStore& store, const SftStepLog& s);
// Every logged step in store order (round, then step), with its round.
std::vector<std::pair<int, DpoStepLog>> dpo_steps(const RunStore& store);
std::vector<SftStepLog> sft_steps(const RunStore& store);

// One row of diagnostics.json: what round r's policy writes and what its rewards and pairs teach
// (stage_report computes it; `rlrf summary` pools it over runs and folds).
struct RoundDiagnostics {
  int round = 0;
  int64_t responses = 0;
  double mean_tokens = 0, eos_rate = 0, distinct2 = 0;
  double card_accuracy_train_samples = 0, card_accuracy_valid_samples = 0, card_accuracy_test_samples = 0;
  double card_accuracy_test_eval = 0;  // test users' evaluation knowledge ([eval] decode)
  std::string eval_decode;
  double reward_card_concordance = 0.5;  // 0.5: no pair of samples differing in both
  int64_t reward_card_pairs = 0;
  double best_minus_worst_card_accuracy = 0;
  std::vector<int32_t> test_users;         // dense ids
  std::vector<double> test_card_accuracy;  // per test user, the order of test_users
  std::optional<PairsDoc> pairs;           // when round r made pairs (pairs, ties_skipped, all_tied)
  std::optional<PreferenceMetrics> heldout;  // round r > 0 trained by DPO (not skipped)
  double reward_train = 0, reward_valid = 0;
  bool operator==(const RoundDiagnostics&) const = default;
};
void to_json(nlohmann::json& j, const RoundDiagnostics& d);
void from_json(const nlohmann::json& j, RoundDiagnostics& d);

// The rows of the evaluation's results tables (stage_evaluate names them, the report and `rlrf
// summary` find them by kind). The name is the row's only record in results.json.
enum class RowKind {
  kBaseline,     // list order or popularity (no model)
  kNoKnowledge,  // "no knowledge"
  kHistoryOnly,  // "history text only": the history text with no response
  kProfile,      // "profile": profile summaries
  kTrueCards,    // "true cards"
  kKar,          // the LLM before DPO (round 0)
  kRound,        // "RLRF4Rec round R", R >= 1
  kOther,        // any other name (e.g. `rlrf rerank`'s rows)
};
// How a text row encodes the user: as the run does ([knowledge] user_history), or the other way
// with [eval] both_encodings (named by a suffix).
enum class RowEncoding { kRun, kHistoryAndText, kTextAlone };

struct RowLabel {
  RowKind kind = RowKind::kOther;
  int round = -1;                        // kKar: 0, kRound: R
  RowEncoding encoding = RowEncoding::kRun;
  bool sft = false;                      // kKar: the LLM was fine-tuned by SFT first
  std::string other;                     // kBaseline / kOther: the name itself
  bool operator==(const RowLabel&) const = default;
  bool is_llm() const { return kind == RowKind::kKar || kind == RowKind::kRound; }
};
std::string row_name(const RowLabel& label);
RowLabel row_label(const std::string& name);
RowLabel row_label(const RowResult& row);
// The first row of `model` with this kind and encoding (kRound: also this round); null if none.
const RowResult* find_row(const ExperimentResults& res, const std::string& model, RowKind kind,
                          RowEncoding encoding = RowEncoding::kRun, int round = -1);

}  // namespace rlrf
