// A DPO round for an external trainer, in LLaMA-Factory's layout: the pairs as a ranking dataset
// (alpaca columns system/instruction/input/chosen/rejected) registered in dataset_info.json, and a
// training YAML carrying the run's settings (beta, LoRA rank/alpha/targets, lr, epochs, batch,
// accumulation, schedule, seed, cutoff). `rlrf dpo --config job.yaml` reads the same files, so the
// round trip runs without LLaMA-Factory installed.
//
// Settings LLaMA-Factory has no key for (its parser refuses unknown keys) travel as comments,
// one per line, "#rlrf KEY: VALUE": the LoRA initialisation seed, the rlrf chat template name,
// pair packing, pair shuffling, the compute dtype and the response cut. LLaMA-Factory skips them.
#pragma once
#include <filesystem>
#include <string>
#include <vector>

#include "align/dpo.h"
#include "align/pairs.h"

namespace rlrf {

struct TrainerJob {
  std::string model_name_or_path;        // the policy the round starts from (a Hugging Face directory)
  std::filesystem::path dataset_dir;     // holds dataset_info.json and <dataset>.json
  std::string dataset;                   // the dataset's name in dataset_info.json
  std::filesystem::path output_dir;      // where the trainer writes the PEFT adapter
  std::string chat_template = "none";    // rlrf's name: llama3 | llama3.1 | chatml | none
  std::string trainer_template;          // LLaMA-Factory's name; empty: llamafactory_template(chat_template)
  int cutoff_len = 0;                    // prompt + longer answer, in tokens
  int max_response_tokens = 0;           // > 0: answers cut to this many tokens (as generation cut them)
  DpoConfig dpo;                         // beta, lr, batches, epochs, schedule, seed, dtype, LoRA
};

// LLaMA-Factory's template for an rlrf chat template: llama3 and llama3.1 -> "llama3" (its
// llama3 template has no date header), chatml -> "qwen", none -> "empty".
std::string llamafactory_template(const std::string& chat_template);
// The rlrf chat template for a LLaMA-Factory template name: llama3 -> llama3, qwen and chatml ->
// chatml, empty and default -> none; an error naming `where` for any other.
std::string chat_template_of_llamafactory(const std::string& name, const std::string& where);

// Writes dir/<name>.json (the rows) and dir/dataset_info.json (only this dataset).
void write_llamafactory_dataset(const std::vector<PairText>& pairs, const std::filesystem::path& dir,
                                const std::string& name);

// The YAML text of a job (what write_trainer_yaml writes).
std::string trainer_yaml(const TrainerJob& job);
void write_trainer_yaml(const TrainerJob& job, const std::filesystem::path& path);
// Reads a YAML written by write_trainer_yaml, or a hand-written LLaMA-Factory DPO YAML of flat
// "key: value" lines. Keys rlrf does not use (logging, caching, ...) are skipped; a setting it
// cannot honour (another stage, finetuning type or preference loss; an unknown template) is an
// error naming the file, line and key.
TrainerJob read_trainer_yaml(const std::filesystem::path& path);

}  // namespace rlrf
