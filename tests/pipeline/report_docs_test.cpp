// The documents stages write and the report reads (pipeline/report_docs.h): each round-trips
// through its JSON and through the run store, keeps the keys older stores hold, and the result rows
// are found by kind.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "pipeline/experiment.h"
#include "pipeline/report_docs.h"
#include "pipeline/run_store.h"
#include "util/files.h"

using namespace rlrf;

TEST(ReportDocs, EachDocumentRoundTripsThroughItsJson) {
  GenerateDoc g{48, 1200, 2.5, 480, "openai", "http://127.0.0.1:8080", 16, 2, 1, 8, true};
  EXPECT_EQ(nlohmann::json(g).get<GenerateDoc>(), g);
  GenerateDoc builtin{48, 1200, 2.5, 480};
  EXPECT_EQ(nlohmann::json(builtin).get<GenerateDoc>(), builtin);
  EXPECT_FALSE(nlohmann::json(builtin).contains("backend"));  // the builtin engine's document as it was
  PairsDoc p{10, 14, 4, 3, 1};
  EXPECT_EQ(nlohmann::json(p).get<PairsDoc>(), p);
  DpoDoc d;
  d.pairs = 9;
  d.steps = 3;
  d.seconds = 1.5;
  d.tokens = 900;
  d.tokens_per_second = 600;
  d.heldout = {2, 0.5, -0.01, 0.2, 0.3};
  EXPECT_EQ(nlohmann::json(d).get<DpoDoc>(), d);
  DpoDoc skipped;
  skipped.skipped = true;
  skipped.ties_skipped = 16;
  EXPECT_EQ(nlohmann::json(skipped).get<DpoDoc>(), skipped);
  EXPECT_FALSE(nlohmann::json(skipped).contains("heldout_accuracy"));
  SftDoc s{40, 8, 5000, 3.2, 1.1, 12.5};
  EXPECT_EQ(nlohmann::json(s).get<SftDoc>(), s);
  DpoStepLog step{0, 1, 0.69, 0.01, -0.02, 1, 0.03, 1e-3, 0.5, 12, 256};
  const DpoStepLog back = nlohmann::json(step).get<DpoStepLog>();
  EXPECT_EQ(back.loss, step.loss);
  EXPECT_EQ(back.margin, step.margin);
  EXPECT_EQ(back.tokens, step.tokens);
  EXPECT_EQ(back.epoch, step.epoch);
}

TEST(ReportDocs, ReadsTheKeysStagesWroteBefore) {
  // What stage_dpo and stage_pairs stored as hand-built JSON: the typed readers take the same keys.
  const DpoDoc d = nlohmann::json::parse(R"({"pairs":75,"steps":5,"seconds":33.0,"tokens":1000,"tokens_per_second":30.3,
      "heldout_pairs":8,"heldout_accuracy":0.47,"heldout_margin":0.002,"heldout_chosen_logratio":0.1,
      "heldout_rejected_logratio":0.05})").get<DpoDoc>();
  EXPECT_EQ(d.pairs, 75);
  EXPECT_EQ(d.heldout.pairs, 8);
  EXPECT_DOUBLE_EQ(d.heldout.accuracy, 0.47);
  EXPECT_FALSE(d.skipped);
  const PairsDoc p = nlohmann::json::parse(R"({"pairs":12,"ties_skipped":4,"all_tied":3})").get<PairsDoc>();
  EXPECT_EQ(p.pairs, 12);
  EXPECT_EQ(p.ties_skipped, 4);
  EXPECT_EQ(p.users, 0);  // a key missing from an older store keeps its default
}

TEST(ReportDocs, TheStoreHoldsEachDocumentUnderItsStage) {
  fs::path dir = fresh_temp_dir("report_docs");
  RunStore store(dir / "run.sqlite");
  EXPECT_FALSE(pairs_doc(store, 0));
  put_pairs_doc(store, 0, {5, 7, 2, 1, 0});
  put_dpo_doc(store, 1, DpoDoc{5, 2});
  put_sft_doc(store, SftDoc{10, 2});
  put_generate_doc(store, GenerateDoc::key(0), GenerateDoc{12, 300, 1, 300});
  EXPECT_EQ(pairs_doc(store, 0), (PairsDoc{5, 7, 2, 1, 0}));
  EXPECT_TRUE(store.doc("pairs/0"));
  EXPECT_EQ(dpo_doc(store, 1)->steps, 2);
  EXPECT_EQ(sft_doc(store)->train_examples, 10);
  EXPECT_EQ(generate_doc(store, 0)->new_tokens, 300);
  DpoStepLog a, b;
  a.step = 0;
  a.loss = 0.69;
  b.step = 1;
  b.loss = 0.5;
  put_dpo_step(store, 1, a);
  put_dpo_step(store, 1, b);
  const auto steps = dpo_steps(store);
  ASSERT_EQ(steps.size(), 2u);
  EXPECT_EQ(steps[1].first, 1);
  EXPECT_EQ(steps[1].second.step, 1);
  EXPECT_DOUBLE_EQ(steps[1].second.loss, 0.5);
}

TEST(ReportDocs, DiagnosticsRoundTripWithAndWithoutPairsAndHeldOut) {
  RoundDiagnostics d;
  d.round = 1;
  d.responses = 48;
  d.mean_tokens = 20.5;
  d.eval_decode = "greedy";
  d.test_users = {3, 5};
  d.test_card_accuracy = {0.5, 0.25};
  EXPECT_EQ(nlohmann::json(d).get<RoundDiagnostics>(), d);
  EXPECT_FALSE(nlohmann::json(d).contains("pairs"));
  EXPECT_FALSE(nlohmann::json(d).contains("heldout_accuracy"));
  d.pairs = PairsDoc{6, 0, 2, 1, 0};
  d.heldout = PreferenceMetrics{2, 1.0, 0.01, 0.1, -0.1};
  const nlohmann::json j = d;
  EXPECT_EQ(j.at("pairs"), 6);
  EXPECT_EQ(j.at("heldout_pairs"), 2);
  EXPECT_EQ(j.get<RoundDiagnostics>(), d);
}

TEST(ReportDocs, RowKindFromARowAndItsNameBack) {
  for (const RowLabel& l : {RowLabel{RowKind::kNoKnowledge}, RowLabel{RowKind::kHistoryOnly}, RowLabel{RowKind::kProfile},
                            RowLabel{RowKind::kTrueCards}, RowLabel{RowKind::kKar, 0}, RowLabel{RowKind::kKar, 0, RowEncoding::kRun, true},
                            RowLabel{RowKind::kRound, 2}, RowLabel{RowKind::kRound, 12, RowEncoding::kTextAlone},
                            RowLabel{RowKind::kKar, 0, RowEncoding::kHistoryAndText}})
    EXPECT_EQ(row_label(row_name(l)), l) << row_name(l);
  EXPECT_EQ(row_name({RowKind::kKar, 0, RowEncoding::kRun, true}), "KAR (SFT LLM, before DPO)");
  EXPECT_EQ(row_name({RowKind::kRound, 2, RowEncoding::kTextAlone}), "RLRF4Rec round 2 (text alone)");
  EXPECT_EQ(row_label("RLRF4Rec round 3 (history + text)").round, 3);
  EXPECT_EQ(row_label("profile knowledge").kind, RowKind::kOther);  // `rlrf rerank`'s rows
  EXPECT_EQ(row_name(row_label("profile knowledge")), "profile knowledge");
  EXPECT_EQ(row_label(RowResult{"popularity", "", {}}).kind, RowKind::kBaseline);
  EXPECT_EQ(row_label(RowResult{"KAR (LLM before DPO)", "dlcm", {}}).kind, RowKind::kKar);
  EXPECT_TRUE(row_label(RowResult{"RLRF4Rec round 1", "prm", {}}).is_llm());

  ExperimentResults res;
  res.rows = {{"popularity", "", {}}, {"no knowledge", "dlcm", {}}, {"KAR (LLM before DPO)", "dlcm", {}},
              {"KAR (LLM before DPO) (text alone)", "dlcm", {}}, {"RLRF4Rec round 1", "dlcm", {}}, {"RLRF4Rec round 1", "prm", {}}};
  EXPECT_EQ(find_row(res, "dlcm", RowKind::kKar), &res.rows[2]);
  EXPECT_EQ(find_row(res, "dlcm", RowKind::kKar, RowEncoding::kTextAlone), &res.rows[3]);
  EXPECT_EQ(find_row(res, "prm", RowKind::kRound, RowEncoding::kRun, 1), &res.rows[5]);
  EXPECT_EQ(find_row(res, "prm", RowKind::kNoKnowledge), nullptr);
}
