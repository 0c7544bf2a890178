// External trainers' files: the LLaMA-Factory job rlrf writes (dataset rows, dataset_info.json, the
// YAML with the run's settings, floats PyYAML reads as floats) and reads back; pairs read from TRL
// rows as TRL lays them out (a standard string prompt is raw text, an implicit prompt is the shared
// start, answers end with the template's end-of-turn token) and from LLaMA-Factory rows; cutoffs.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <functional>

#include "error_of.h"
#include "align/pair_files.h"
#include "align/trainer_job.h"
#include "text/chat_template.h"
#include "util/error.h"
#include "util/files.h"

using namespace rlrf;

using rlrf::test::error_of;

namespace {

TrainerJob sample_job(const fs::path& dir) {
  TrainerJob job;
  job.model_name_or_path = (dir / "base").string();
  job.dataset_dir = dir / "data";
  job.dataset = "rlrf_round2";
  job.output_dir = dir / "output";
  job.chat_template = "none";
  job.cutoff_len = 123;
  job.max_response_tokens = 80;
  job.dpo.beta = 0.1;
  job.dpo.lr = 5e-5;
  job.dpo.batch_size = 2;
  job.dpo.grad_accum = 8;
  job.dpo.epochs = 3;
  job.dpo.seed = 9;
  job.dpo.dtype = "bf16";
  job.dpo.lora.r = 8;
  job.dpo.lora.alpha = 16;
  job.dpo.lora.target_modules = {"q_proj", "v_proj", "down_proj"};
  job.dpo.lora.seed = 0x9e3779b97f4a7c15ull;  // above INT64_MAX, as the rounds' derived seeds are
  return job;
}

const Tokenizer& tinystories_tokenizer() {
  static const Tokenizer tok = Tokenizer::load(shared_dir() / "models" / "tinystories-656k");
  return tok;
}

std::vector<int32_t> cat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

}  // namespace

TEST(TrainerJob, YamlCarriesTheRunsSettingsAndReadsBackTheSame) {
  fs::path dir = fresh_temp_dir("trainer_yaml");
  TrainerJob job = sample_job(dir);
  const std::string y = trainer_yaml(job);
  for (const std::string& line :
       {"model_name_or_path: \"" + (dir / "base").string() + "\"", std::string("stage: dpo"), std::string("finetuning_type: \"lora\""),
        std::string("lora_rank: 8"), std::string("lora_alpha: 16"), std::string("lora_dropout: 0.0"),
        std::string("lora_target: \"q_proj,v_proj,down_proj\""), std::string("pref_beta: 0.1"), std::string("pref_loss: sigmoid"),
        "dataset_dir: \"" + (dir / "data").string() + "\"", std::string("dataset: \"rlrf_round2\""),
        std::string("template: \"empty\""), std::string("cutoff_len: 123"), "output_dir: \"" + (dir / "output").string() + "\"",
        std::string("per_device_train_batch_size: 2"), std::string("gradient_accumulation_steps: 8"),
        std::string("learning_rate: 5.0e-05"), std::string("num_train_epochs: 3.0"), std::string("lr_scheduler_type: cosine"),
        std::string("warmup_ratio: 0.1"), std::string("max_grad_norm: 1.0"), std::string("seed: 9"), std::string("bf16: true"),
        std::string("#rlrf chat_template: none"), std::string("#rlrf lora_seed: 11400714819323198485"), std::string("#rlrf max_response_tokens: 80")})
    EXPECT_NE(y.find("\n" + line + "\n"), std::string::npos) << "missing line: " << line << "\nin:\n" << y;

  write_trainer_yaml(job, dir / "train.yaml");
  TrainerJob back = read_trainer_yaml(dir / "train.yaml");
  EXPECT_EQ(back.model_name_or_path, job.model_name_or_path);
  EXPECT_EQ(back.dataset_dir, job.dataset_dir);
  EXPECT_EQ(back.dataset, job.dataset);
  EXPECT_EQ(back.output_dir, job.output_dir);
  EXPECT_EQ(back.chat_template, "none");
  EXPECT_EQ(back.cutoff_len, 123);
  EXPECT_EQ(back.max_response_tokens, 80);
  EXPECT_DOUBLE_EQ(back.dpo.beta, 0.1);
  EXPECT_DOUBLE_EQ(back.dpo.lr, 5e-5);
  EXPECT_EQ(back.dpo.batch_size, 2);
  EXPECT_EQ(back.dpo.grad_accum, 8);
  EXPECT_EQ(back.dpo.epochs, 3);
  EXPECT_EQ(back.dpo.seed, 9u);
  EXPECT_EQ(back.dpo.dtype, "bf16");
  EXPECT_EQ(back.dpo.schedule, "cosine");
  EXPECT_DOUBLE_EQ(back.dpo.warmup_ratio, 0.1);
  EXPECT_EQ(back.dpo.lora.r, 8);
  EXPECT_DOUBLE_EQ(back.dpo.lora.alpha, 16);
  EXPECT_EQ(back.dpo.lora.target_modules, (std::vector<std::string>{"q_proj", "v_proj", "down_proj"}));
  EXPECT_EQ(back.dpo.lora.seed, 0x9e3779b97f4a7c15ull);
  EXPECT_TRUE(back.dpo.pack_pairs);

  // "all-linear" is LLaMA-Factory's "all"; Hugging Face's constant schedule has no warmup.
  job.dpo.lora.target_modules = {"all-linear"};
  job.dpo.schedule = "constant";
  const std::string y2 = trainer_yaml(job);
  EXPECT_NE(y2.find("\nlora_target: \"all\"\n"), std::string::npos) << y2;
  EXPECT_NE(y2.find("\nlr_scheduler_type: constant_with_warmup\n"), std::string::npos) << y2;
}

// LLaMA-Factory reads its YAML with PyYAML (YAML 1.1), where "1e-05" is a string: every number
// written must load as a number.
TEST(TrainerJob, PyYamlLoadsTheNumbersAsNumbers) {
  if (std::system("/usr/bin/python3 -c 'import yaml' 2>/dev/null") != 0) GTEST_SKIP() << "no python3 with PyYAML";
  fs::path dir = fresh_temp_dir("trainer_yaml_py");
  TrainerJob job = sample_job(dir);
  job.dpo.lr = 1e-5;
  job.dpo.weight_decay = 1e-7;
  write_trainer_yaml(job, dir / "train.yaml");
  const std::string check =
      "/usr/bin/python3 -c \"import yaml,sys; d=yaml.safe_load(open(sys.argv[1])); "
      "bad=[k for k in ('learning_rate','weight_decay','pref_beta','warmup_ratio','max_grad_norm','num_train_epochs',"
      "'lora_dropout') if not isinstance(d[k], float)]; "
      "bad+=[k for k in ('lora_rank','lora_alpha','cutoff_len','seed','per_device_train_batch_size') if not isinstance(d[k], int)]; "
      "bad+=[] if d['learning_rate']==1e-5 and d['save_strategy']=='no' and d['bf16'] is True else ['values']; "
      "print(bad); sys.exit(1 if bad else 0)\" '" +
      (dir / "train.yaml").string() + "'";
  EXPECT_EQ(std::system(check.c_str()), 0) << read_file(dir / "train.yaml");
}

TEST(TrainerJob, ReadingRefusesWhatItCannotTrainNamingLineAndKey) {
  fs::path dir = fresh_temp_dir("trainer_yaml_bad");
  auto error_for = [&](const std::string& text) {
    write_file_atomic(dir / "t.yaml", text);
    return error_of([&] { read_trainer_yaml(dir / "t.yaml"); });
  };
  const std::string base = "model_name_or_path: /m\n";
  EXPECT_NE(error_for(base + "stage: sft\n").find("stage is 'sft'"), std::string::npos);
  std::string e = error_for(base + "pref_loss: ipo\n");
  EXPECT_NE(e.find("t.yaml:2: key 'pref_loss'"), std::string::npos) << e;
  e = error_for(base + "learning_rate: fast\n");
  EXPECT_NE(e.find("t.yaml:2: key 'learning_rate': expected a number, got 'fast'"), std::string::npos) << e;
  e = error_for(base + "num_train_epochs: 1.5\n");
  EXPECT_NE(e.find("whole epochs"), std::string::npos) << e;
  e = error_for(base + "template: mistral\n");
  EXPECT_NE(e.find("template 'mistral'"), std::string::npos) << e;
  e = error_for(base + "#rlrf lora_sed: 3\n");
  EXPECT_NE(e.find("t.yaml:2: unknown rlrf setting 'lora_sed'"), std::string::npos) << e;
  EXPECT_NE(error_for("dataset: x\n").find("model_name_or_path is missing"), std::string::npos);
  // A hand-written LLaMA-Factory YAML with its usual keys reads.
  write_file_atomic(dir / "ok.yaml",
                    "### model\nmodel_name_or_path: /m  # the base\ntrust_remote_code: true\nstage: dpo\ndo_train: true\n"
                    "finetuning_type: lora\nlora_target: all\npref_beta: 0.1\ntemplate: qwen\nlearning_rate: 5.0e-6\n"
                    "num_train_epochs: 2.0\nbf16: true\n");
  TrainerJob job = read_trainer_yaml(dir / "ok.yaml");
  EXPECT_EQ(job.model_name_or_path, "/m");
  EXPECT_EQ(job.chat_template, "chatml");
  EXPECT_EQ(job.dpo.lora.target_modules, (std::vector<std::string>{"all-linear"}));
  EXPECT_DOUBLE_EQ(job.dpo.lr, 5e-6);
  EXPECT_EQ(job.dpo.epochs, 2);
  EXPECT_EQ(job.dpo.dtype, "bf16");
}

TEST(TrainerJob, DatasetRowsAndInfoAreLlamaFactoryRanking) {
  fs::path dir = fresh_temp_dir("trainer_dataset");
  write_file_atomic(dir / "dataset_info.json", "{\"stale\": {\"file_name\": \"old.json\"}}");
  std::vector<PairText> pairs = {{"196", "You describe users.", "Given a user who watched Heat", "Likes: Drama.", "Likes", 0.6, 0.2},
                                 {"7", "You describe users.", "Given a user who watched Fargo", "Era: 1990s.", "Era", 0.5, 0.1}};
  pairs[1].prompt_ids = {1, 40, 41};  // the sampled ids, when known, ride along
  pairs[1].chosen_ids = {50, 51, 2};
  pairs[1].rejected_ids = {60};
  write_llamafactory_dataset(pairs, dir, "rlrf_round1");
  nlohmann::json info = nlohmann::json::parse(read_file(dir / "dataset_info.json"));
  EXPECT_EQ(info, nlohmann::json::parse(R"({"rlrf_round1": {"file_name": "rlrf_round1.json", "ranking": true,
      "columns": {"prompt": "instruction", "query": "input", "chosen": "chosen", "rejected": "rejected", "system": "system"}}})"));
  nlohmann::json rows = nlohmann::json::parse(read_file(dir / "rlrf_round1.json"));
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0], nlohmann::json::parse(R"({"system": "You describe users.", "instruction": "Given a user who watched Heat",
      "input": "", "chosen": "Likes: Drama.", "rejected": "Likes"})"));
  EXPECT_EQ(rows[1], nlohmann::json::parse(R"({"system": "You describe users.", "instruction": "Given a user who watched Fargo",
      "input": "", "chosen": "Era: 1990s.", "rejected": "Era", "rlrf_prompt_ids": [1, 40, 41], "rlrf_chosen_ids": [50, 51, 2],
      "rlrf_rejected_ids": [60]})"));

  if (shared_dir().empty()) GTEST_SKIP() << "no shared directory (tokenizer)";
  // Read back as tokens: the prompt as the run renders it, answers ending with the end-of-turn token.
  const Tokenizer& tok = tinystories_tokenizer();
  PairReadOptions read;
  read.chat_template = "none";
  PairFileStats stats;
  std::vector<PreferencePair> got = read_llamafactory_pairs(tok, dir, "", read, &stats);
  ASSERT_EQ(got.size(), 2u);
  const int32_t eos = tok.eos_ids().front();
  EXPECT_EQ(got[0].prompt, encode_chat(tok, {{"system", "You describe users."}, {"user", "Given a user who watched Heat"}}, true, "none"));
  EXPECT_EQ(got[0].chosen, cat(tok.encode("Likes: Drama.", false), {eos}));
  EXPECT_EQ(got[1].prompt, (std::vector<int32_t>{1, 40, 41}));  // the sampled ids
  EXPECT_EQ(got[1].chosen, (std::vector<int32_t>{50, 51, 2}));
  EXPECT_EQ(got[1].rejected, (std::vector<int32_t>{60}));
  EXPECT_EQ(stats.from_ids, 1);
  EXPECT_EQ(stats.longest, std::max(pair_length(got[0]), pair_length(got[1])));
  EXPECT_EQ(stats.cut, 0);
  // As a text trainer reads them.
  read.use_ids = false;
  got = read_llamafactory_pairs(tok, dir, "rlrf_round1", read, &stats);
  EXPECT_EQ(got[1].rejected, cat(tok.encode("Era", false), {eos}));
  EXPECT_EQ(stats.from_ids, 0);
  // Ids that are not this tokenizer's are refused.
  nlohmann::json bad = rows;
  bad[1]["rlrf_chosen_ids"] = {5, 999999};
  write_file_atomic(dir / "rlrf_round1.json", bad.dump());
  read.use_ids = true;
  EXPECT_NE(error_of([&] { read_llamafactory_pairs(tok, dir, "", read); }).find("row 1: \"rlrf_chosen_ids\" holds 999999"),
            std::string::npos);
}

TEST(PairFiles, CutoffCutsAnswersFirstAndCountsTheCutPairs) {
  PreferencePair p;
  p.prompt = {1, 2, 3, 4, 5, 6};
  p.chosen = {7, 8, 9, 10};
  p.rejected = {11, 12};
  EXPECT_EQ(pair_length(p), 10);
  EXPECT_FALSE(cut_pair(p, 10));
  EXPECT_TRUE(cut_pair(p, 8));
  EXPECT_EQ(p.prompt.size(), 6u);
  EXPECT_EQ(p.chosen, (std::vector<int32_t>{7, 8}));
  EXPECT_EQ(p.rejected, (std::vector<int32_t>{11, 12}));
  EXPECT_TRUE(cut_pair(p, 4));  // the prompt alone is too long: one answer token, the prompt's start
  EXPECT_EQ(p.chosen, (std::vector<int32_t>{7}));
  EXPECT_EQ(p.prompt, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(pair_length(p), 4);

  if (shared_dir().empty()) GTEST_SKIP() << "no shared directory (tokenizer)";
  fs::path dir = fresh_temp_dir("pairs_cutoff");
  write_file_atomic(dir / "p.jsonl", "{\"prompt\": \"Once upon a time there was a girl\", \"chosen\": \" who liked to play in the park "
                                     "with her dog\", \"rejected\": \" who\"}\n{\"prompt\": \"Hi\", \"chosen\": \" a\", \"rejected\": \" b\"}\n");
  PairReadOptions read;
  read.cutoff_len = 12;
  PairFileStats stats;
  std::vector<PreferencePair> got = read_trl_pairs(tinystories_tokenizer(), dir / "p.jsonl", read, &stats);
  EXPECT_EQ(stats.pairs, 2);
  EXPECT_EQ(stats.cut, 1);
  EXPECT_GT(stats.longest, 12);
  EXPECT_EQ(pair_length(got[0]), 12);
}

TEST(PairFiles, TrlStandardPromptIsRawTextAndImplicitPromptsAreAccepted) {
  if (shared_dir().empty()) GTEST_SKIP() << "no shared directory (tokenizer)";
  const Tokenizer& tok = tinystories_tokenizer();
  const int32_t eos = tok.eos_ids().front();
  fs::path dir = fresh_temp_dir("pairs_trl");
  write_file_atomic(dir / "p.jsonl",
                    // standard, explicit prompt
                    "{\"prompt\": \"The sky is\", \"chosen\": \" blue.\", \"rejected\": \" green.\"}\n"
                    // standard, implicit prompt: the shared start less the space before the difference
                    "{\"chosen\": \"The sky is blue.\", \"rejected\": \"The sky is green.\"}\n"
                    // conversational, explicit
                    "{\"prompt\": [{\"role\": \"user\", \"content\": \"What color is the sky?\"}], "
                    "\"chosen\": [{\"role\": \"assistant\", \"content\": \"It is blue.\"}], "
                    "\"rejected\": [{\"role\": \"assistant\", \"content\": \"It is green.\"}]}\n"
                    // conversational, implicit
                    "{\"chosen\": [{\"role\": \"user\", \"content\": \"What color is the sky?\"}, {\"role\": \"assistant\", "
                    "\"content\": \"It is blue.\"}], \"rejected\": [{\"role\": \"user\", \"content\": \"What color is the sky?\"}, "
                    "{\"role\": \"assistant\", \"content\": \"It is green.\"}]}\n");
  PairReadOptions read;
  read.chat_template = "none";
  std::vector<PreferencePair> got = read_trl_pairs(tok, dir / "p.jsonl", read);
  ASSERT_EQ(got.size(), 4u);
  // Raw text: no template, no BOS.
  EXPECT_EQ(got[0].prompt, tok.encode("The sky is", false));
  EXPECT_NE(got[0].prompt.front(), tok.bos_id());
  EXPECT_EQ(got[0].chosen, cat(tok.encode(" blue.", false), {eos}));
  EXPECT_EQ(got[1].prompt, got[0].prompt);
  EXPECT_EQ(got[1].chosen, got[0].chosen);
  EXPECT_EQ(got[1].rejected, got[0].rejected);
  // Conversational: the template's rendering with its generation prompt (BOS from the tokenizer).
  EXPECT_EQ(got[2].prompt, encode_chat(tok, {{"user", "What color is the sky?"}}, true, "none"));
  EXPECT_EQ(got[2].prompt.front(), tok.bos_id());
  EXPECT_EQ(got[2].chosen, cat(tok.encode("It is blue.", false), {eos}));
  EXPECT_EQ(got[3].prompt, got[2].prompt);
  EXPECT_EQ(got[3].chosen, got[2].chosen);
  EXPECT_EQ(got[3].rejected, got[2].rejected);

  write_file_atomic(dir / "bad.jsonl", "{\"chosen\": \"abc\", \"rejected\": \"xyz\"}\n");
  EXPECT_NE(error_of([&] { read_trl_pairs(tok, dir / "bad.jsonl", read); }).find("bad.jsonl:1: implicit prompt"), std::string::npos);
  write_file_atomic(dir / "mixed.jsonl", "{\"prompt\": \"a\", \"chosen\": \"b\", \"rejected\": [{\"role\": \"assistant\", \"content\": \"c\"}]}\n");
  EXPECT_NE(error_of([&] { read_trl_pairs(tok, dir / "mixed.jsonl", read); }).find("mixed.jsonl:1:"), std::string::npos);
}

// A Llama-3 chat model ends its turns with <|eot_id|>, not <|end_of_text|>: conversational answers
// end with the template's end-of-turn token.
TEST(PairFiles, ConversationalAnswersEndWithTheTemplatesEndOfTurn) {
  if (shared_dir().empty()) GTEST_SKIP() << "no shared directory (tokenizer)";
  const Tokenizer tok = Tokenizer::load(shared_dir() / "tokenizers" / "llama-3.1");
  const int32_t eot = tok.token_to_id("<|eot_id|>");
  ASSERT_GE(eot, 0);
  EXPECT_EQ(end_of_turn_id(tok, "llama3"), eot);
  EXPECT_EQ(end_of_turn_id(tok, "llama3.1"), eot);
  fs::path dir = fresh_temp_dir("pairs_eot");
  write_file_atomic(dir / "p.jsonl", "{\"prompt\": [{\"role\": \"user\", \"content\": \"Hi\"}], \"chosen\": [{\"role\": \"assistant\", "
                                     "\"content\": \"Hello.\"}], \"rejected\": [{\"role\": \"assistant\", \"content\": \"Go.\"}]}\n");
  for (const char* t : {"llama3", "llama3.1"}) {
    PairReadOptions read;
    read.chat_template = t;
    std::vector<PreferencePair> got = read_trl_pairs(tok, dir / "p.jsonl", read);
    EXPECT_EQ(got[0].chosen, cat(tok.encode("Hello.", false), {eot})) << t;
    EXPECT_EQ(got[0].rejected.back(), eot) << t;
    EXPECT_EQ(got[0].prompt, encode_chat(tok, {{"user", "Hi"}}, true, t)) << t;
  }
}
