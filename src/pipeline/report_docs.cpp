// The run's documents as JSON: one to_json / from_json per record, the store keys, the row names.
#include "pipeline/report_docs.h"

#include <cstdint>
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "pipeline/experiment.h"
#include "pipeline/run_store.h"
#include "util/error.h"
#include "util/strings.h"

namespace rlrf {

namespace {

template <typename T>
void get_to(const nlohmann::json& j, const char* key, T& out) {
  if (auto it = j.find(key); it != j.end() && !it->is_null()) it->get_to(out);
}

template <typename Doc>
std::optional<Doc> read_doc(const RunStore& store, const std::string& key) {
  std::optional<std::string> text = store.doc(key);
  if (!text) return std::nullopt;
  nlohmann::json j = nlohmann::json::parse(*text, nullptr, false);
  RLRF_CHECK(!j.is_discarded() && j.is_object(), "{}: document '{}' is not a JSON object", store.path().string(), key);
  return j.get<Doc>();
}

}  // namespace

std::string GenerateDoc::key(int round) { return fmt::format("generate/{}", round); }
std::string PairsDoc::key(int round) { return fmt::format("pairs/{}", round); }
std::string DpoDoc::key(int round) { return fmt::format("dpo/{}", round); }
std::string SftDoc::key() { return "sft"; }

PairsDoc PairsDoc::of(const PairSelection& sel) {
  return {static_cast<int64_t>(sel.pairs.size()), sel.users, sel.ties_skipped, sel.all_tied, sel.single_response};
}

void to_json(nlohmann::json& j, const GenerateDoc& d) {
  j = {{"responses", d.responses}, {"new_tokens", d.new_tokens}, {"seconds", d.seconds}, {"tokens_per_second", d.tokens_per_second}};
  if (d.backend == "openai") {
    j["backend"] = d.backend;
    j["url"] = d.url;
    j["requests"] = d.requests;
    j["retries"] = d.retries;
    j["n_refusals"] = d.n_refusals;
    j["concurrency"] = d.concurrency;
    j["n_supported"] = d.n_supported ? nlohmann::json(*d.n_supported) : nlohmann::json(nullptr);
  }
}

void from_json(const nlohmann::json& j, GenerateDoc& d) {
  d = {};
  get_to(j, "responses", d.responses);
  get_to(j, "new_tokens", d.new_tokens);
  get_to(j, "seconds", d.seconds);
  get_to(j, "tokens_per_second", d.tokens_per_second);
  get_to(j, "backend", d.backend);
  get_to(j, "url", d.url);
  get_to(j, "requests", d.requests);
  get_to(j, "retries", d.retries);
  get_to(j, "n_refusals", d.n_refusals);
  get_to(j, "concurrency", d.concurrency);
  if (auto it = j.find("n_supported"); it != j.end() && it->is_boolean()) d.n_supported = it->get<bool>();
}

void to_json(nlohmann::json& j, const PairsDoc& d) {
  j = {{"pairs", d.pairs}, {"users", d.users}, {"ties_skipped", d.ties_skipped}, {"all_tied", d.all_tied},
       {"single_response", d.single_response}};
}

void from_json(const nlohmann::json& j, PairsDoc& d) {
  d = {};
  get_to(j, "pairs", d.pairs);
  get_to(j, "users", d.users);
  get_to(j, "ties_skipped", d.ties_skipped);
  get_to(j, "all_tied", d.all_tied);
  get_to(j, "single_response", d.single_response);
}

void to_json(nlohmann::json& j, const DpoDoc& d) {
  if (d.skipped) {
    j = {{"pairs", d.pairs}, {"steps", d.steps}, {"skipped", true}, {"ties_skipped", d.ties_skipped}};
    return;
  }
  j = {{"pairs", d.pairs}, {"steps", d.steps}, {"seconds", d.seconds}, {"tokens", d.tokens},
       {"tokens_per_second", d.tokens_per_second}, {"heldout_pairs", d.heldout.pairs},
       {"heldout_accuracy", d.heldout.accuracy}, {"heldout_margin", d.heldout.margin},
       {"heldout_chosen_logratio", d.heldout.chosen_logratio}, {"heldout_rejected_logratio", d.heldout.rejected_logratio}};
}

void from_json(const nlohmann::json& j, DpoDoc& d) {
  d = {};
  get_to(j, "pairs", d.pairs);
  get_to(j, "steps", d.steps);
  get_to(j, "seconds", d.seconds);
  get_to(j, "tokens", d.tokens);
  get_to(j, "tokens_per_second", d.tokens_per_second);
  get_to(j, "heldout_pairs", d.heldout.pairs);
  get_to(j, "heldout_accuracy", d.heldout.accuracy);
  get_to(j, "heldout_margin", d.heldout.margin);
  get_to(j, "heldout_chosen_logratio", d.heldout.chosen_logratio);
  get_to(j, "heldout_rejected_logratio", d.heldout.rejected_logratio);
  get_to(j, "skipped", d.skipped);
  get_to(j, "ties_skipped", d.ties_skipped);
}

void to_json(nlohmann::json& j, const SftDoc& d) {
  j = {{"train_examples", d.train_examples}, {"valid_examples", d.valid_examples}, {"valid_loss_before", d.valid_loss_before},
       {"valid_loss_after", d.valid_loss_after}, {"seconds", d.seconds}, {"tokens", d.tokens}};
}

void from_json(const nlohmann::json& j, SftDoc& d) {
  d = {};
  get_to(j, "train_examples", d.train_examples);
  get_to(j, "valid_examples", d.valid_examples);
  get_to(j, "valid_loss_before", d.valid_loss_before);
  get_to(j, "valid_loss_after", d.valid_loss_after);
  get_to(j, "seconds", d.seconds);
  get_to(j, "tokens", d.tokens);
}

void to_json(nlohmann::json& j, const DpoStepLog& s) {
  j = {{"loss", s.loss}, {"chosen_reward", s.chosen_reward}, {"rejected_reward", s.rejected_reward}, {"accuracy", s.accuracy},
       {"margin", s.margin}, {"lr", s.lr}, {"grad_norm", s.grad_norm}, {"ms", s.ms}, {"tokens", s.tokens}, {"epoch", s.epoch}};
}

void from_json(const nlohmann::json& j, DpoStepLog& s) {
  s = {};
  get_to(j, "loss", s.loss);
  get_to(j, "chosen_reward", s.chosen_reward);
  get_to(j, "rejected_reward", s.rejected_reward);
  get_to(j, "accuracy", s.accuracy);
  get_to(j, "margin", s.margin);
  get_to(j, "lr", s.lr);
  get_to(j, "grad_norm", s.grad_norm);
  get_to(j, "ms", s.ms);
  get_to(j, "tokens", s.tokens);
  get_to(j, "epoch", s.epoch);
}

void to_json(nlohmann::json& j, const SftStepLog& s) {
  j = {{"loss", s.loss}, {"lr", s.lr}, {"grad_norm", s.grad_norm}, {"ms", s.ms}, {"epoch", s.epoch}};
}

void from_json(const nlohmann::json& j, SftStepLog& s) {
  s = {};
  get_to(j, "loss", s.loss);
  get_to(j, "lr", s.lr);
  get_to(j, "grad_norm", s.grad_norm);
  get_to(j, "ms", s.ms);
  get_to(j, "epoch", s.epoch);
}

void put_generate_doc(RunStore& store, const std::string& stage, const GenerateDoc& d) { store.put_doc(stage, nlohmann::json(d).dump()); }
std::optional<GenerateDoc> generate_doc(const RunStore& store, int round) { return read_doc<GenerateDoc>(store, GenerateDoc::key(round)); }
void put_pairs_doc(RunStore& store, int round, const PairsDoc& d) { store.put_doc(PairsDoc::key(round), nlohmann::json(d).dump()); }
std::optional<PairsDoc> pairs_doc(const RunStore& store, int round) { return read_doc<PairsDoc>(store, PairsDoc::key(round)); }
void put_dpo_doc(RunStore& store, int round, const DpoDoc& d) { store.put_doc(DpoDoc::key(round), nlohmann::json(d).dump()); }
std::optional<DpoDoc> dpo_doc(const RunStore& store, int round) { return read_doc<DpoDoc>(store, DpoDoc::key(round)); }
void put_sft_doc(RunStore& store, const SftDoc& d) { store.put_doc(SftDoc::key(), nlohmann::json(d).dump()); }
std::optional<SftDoc> sft_doc(const RunStore& store) { return read_doc<SftDoc>(store, SftDoc::key()); }

void put_dpo_step(RunStore& store, int round, const DpoStepLog& s) {
  store.put_log("dpo", round, static_cast<int>(s.step), nlohmann::json(s).dump());
}

void put_sft_step(RunStore& store, const SftStepLog& s) {
  store.put_log("sft", 0, static_cast<int>(s.step), nlohmann::json(s).dump());
}

std::vector<std::pair<int, DpoStepLog>> dpo_steps(const RunStore& store) {
  std::vector<std::pair<int, DpoStepLog>> out;
  for (auto& [round, step, json] : store.logs("dpo")) {
    DpoStepLog s = nlohmann::json::parse(json).get<DpoStepLog>();
    s.step = step;
    out.push_back({round, s});
  }
  return out;
}

std::vector<SftStepLog> sft_steps(const RunStore& store) {
  std::vector<SftStepLog> out;
  for (auto& [round, step, json] : store.logs("sft")) {
    SftStepLog s = nlohmann::json::parse(json).get<SftStepLog>();
    s.step = step;
    out.push_back(s);
  }
  return out;
}

void to_json(nlohmann::json& j, const RoundDiagnostics& d) {
  j = {{"round", d.round},
       {"responses", d.responses},
       {"mean_tokens", d.mean_tokens},
       {"eos_rate", d.eos_rate},
       {"distinct2", d.distinct2},
       {"card_accuracy_train_samples", d.card_accuracy_train_samples},
       {"card_accuracy_valid_samples", d.card_accuracy_valid_samples},
       {"card_accuracy_test_samples", d.card_accuracy_test_samples},
       {"card_accuracy_test_eval", d.card_accuracy_test_eval},
       {"eval_decode", d.eval_decode},
       {"reward_card_concordance", d.reward_card_concordance},
       {"reward_card_pairs", d.reward_card_pairs},
       {"best_minus_worst_card_accuracy", d.best_minus_worst_card_accuracy},
       {"test_users", d.test_users},
       {"test_card_accuracy", d.test_card_accuracy},
       {"reward_train", d.reward_train},
       {"reward_valid", d.reward_valid}};
  if (d.pairs) {
    j["pairs"] = d.pairs->pairs;
    j["ties_skipped"] = d.pairs->ties_skipped;
    j["all_tied"] = d.pairs->all_tied;
  }
  if (d.heldout) {
    j["heldout_pairs"] = d.heldout->pairs;
    j["heldout_accuracy"] = d.heldout->accuracy;
    j["heldout_margin"] = d.heldout->margin;
    j["heldout_chosen_logratio"] = d.heldout->chosen_logratio;
    j["heldout_rejected_logratio"] = d.heldout->rejected_logratio;
  }
}

void from_json(const nlohmann::json& j, RoundDiagnostics& d) {
  d = {};
  get_to(j, "round", d.round);
  get_to(j, "responses", d.responses);
  get_to(j, "mean_tokens", d.mean_tokens);
  get_to(j, "eos_rate", d.eos_rate);
  get_to(j, "distinct2", d.distinct2);
  get_to(j, "card_accuracy_train_samples", d.card_accuracy_train_samples);
  get_to(j, "card_accuracy_valid_samples", d.card_accuracy_valid_samples);
  get_to(j, "card_accuracy_test_samples", d.card_accuracy_test_samples);
  get_to(j, "card_accuracy_test_eval", d.card_accuracy_test_eval);
  get_to(j, "eval_decode", d.eval_decode);
  get_to(j, "reward_card_concordance", d.reward_card_concordance);
  get_to(j, "reward_card_pairs", d.reward_card_pairs);
  get_to(j, "best_minus_worst_card_accuracy", d.best_minus_worst_card_accuracy);
  get_to(j, "test_users", d.test_users);
  get_to(j, "test_card_accuracy", d.test_card_accuracy);
  get_to(j, "reward_train", d.reward_train);
  get_to(j, "reward_valid", d.reward_valid);
  if (j.contains("pairs")) {
    PairsDoc p;
    get_to(j, "pairs", p.pairs);
    get_to(j, "ties_skipped", p.ties_skipped);
    get_to(j, "all_tied", p.all_tied);
    d.pairs = p;
  }
  if (j.contains("heldout_pairs")) {
    PreferenceMetrics h;
    get_to(j, "heldout_pairs", h.pairs);
    get_to(j, "heldout_accuracy", h.accuracy);
    get_to(j, "heldout_margin", h.margin);
    get_to(j, "heldout_chosen_logratio", h.chosen_logratio);
    get_to(j, "heldout_rejected_logratio", h.rejected_logratio);
    d.heldout = h;
  }
}

namespace {

constexpr const char* kHistoryAndTextSuffix = " (history + text)";
constexpr const char* kTextAloneSuffix = " (text alone)";
constexpr const char* kRoundPrefix = "RLRF4Rec round ";

}  // namespace

std::string row_name(const RowLabel& label) {
  std::string name;
  switch (label.kind) {
    case RowKind::kBaseline:
    case RowKind::kOther: return label.other;
    case RowKind::kNoKnowledge: name = "no knowledge"; break;
    case RowKind::kHistoryOnly: name = "history text only"; break;
    case RowKind::kProfile: name = "profile"; break;
    case RowKind::kTrueCards: name = "true cards"; break;
    case RowKind::kKar: name = label.sft ? "KAR (SFT LLM, before DPO)" : "KAR (LLM before DPO)"; break;
    case RowKind::kRound: name = kRoundPrefix + std::to_string(label.round); break;
  }
  switch (label.encoding) {
    case RowEncoding::kRun: break;
    case RowEncoding::kHistoryAndText: name += kHistoryAndTextSuffix; break;
    case RowEncoding::kTextAlone: name += kTextAloneSuffix; break;
  }
  return name;
}

RowLabel row_label(const std::string& name) {
  RowLabel label;
  std::string base = name;
  for (auto [suffix, encoding] : {std::pair{kHistoryAndTextSuffix, RowEncoding::kHistoryAndText},
                                  std::pair{kTextAloneSuffix, RowEncoding::kTextAlone}})
    if (ends_with(base, suffix) && base.size() > std::string_view(suffix).size()) {
      base.resize(base.size() - std::string_view(suffix).size());
      label.encoding = encoding;
      break;
    }
  if (base == "no knowledge") label.kind = RowKind::kNoKnowledge;
  else if (base == "history text only") label.kind = RowKind::kHistoryOnly;
  else if (base == "profile") label.kind = RowKind::kProfile;
  else if (base == "true cards") label.kind = RowKind::kTrueCards;
  else if (base == "KAR (LLM before DPO)" || base == "KAR (SFT LLM, before DPO)") {
    label.kind = RowKind::kKar;
    label.round = 0;
    label.sft = base == "KAR (SFT LLM, before DPO)";
  } else if (starts_with(base, kRoundPrefix)) {
    std::optional<long long> r = parse_int(std::string_view(base).substr(std::string_view(kRoundPrefix).size()));
    if (r && *r >= 1) {
      label.kind = RowKind::kRound;
      label.round = static_cast<int>(*r);
    }
  }
  if (label.kind == RowKind::kOther) return {RowKind::kOther, -1, RowEncoding::kRun, false, name};
  return label;
}

RowLabel row_label(const RowResult& row) {
  if (row.model.empty()) return {RowKind::kBaseline, -1, RowEncoding::kRun, false, row.name};
  return row_label(row.name);
}

const RowResult* find_row(const ExperimentResults& res, const std::string& model, RowKind kind, RowEncoding encoding, int round) {
  for (const RowResult& r : res.rows) {
    if (r.model != model) continue;
    const RowLabel l = row_label(r);
    if (l.kind == kind && l.encoding == encoding && (round < 0 || l.round == round)) return &r;
  }
  return nullptr;
}

}  // namespace rlrf
