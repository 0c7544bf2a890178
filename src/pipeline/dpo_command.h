// A DPO round trained by an external trainer ([dpo] backend = "command"). In RUN/dpo-command/roundR/:
//   data/dataset_info.json, data/rlrf_roundR.json   the round's training pairs (LLaMA-Factory ranking rows)
//   train.yaml                                      the run's settings as a LLaMA-Factory DPO YAML
//   base/                                           the policy the round starts from, when it is not a
//                                                   model directory already (SFT adapters or earlier rounds
//                                                   merged, fp32, Hugging Face layout)
//   output/                                         where the command leaves the PEFT adapter
//   command.log                                     the command's output
// The command ([dpo] command, {config} {pairs} {output_dir} replaced) runs with /bin/sh; a nonzero
// exit stops the run with its status and last lines, and the round is not marked done, so a rerun
// retries it alone. The adapter is then checked against what the round expects (base model, rank,
// alpha, target layers, tensor shapes) and the loop continues as if train_dpo had trained it.
#pragma once
#include <map>
#include <vector>

#include "align/dpo.h"
#include "align/pairs.h"
#include "llm/lora.h"
#include "pipeline/run_context.h"

namespace rlrf {

// Substitutes {config}, {pairs} and {output_dir} in a command line (paths as they are, unquoted).
std::string expand_trainer_command(const std::string& command, const std::filesystem::path& config,
                                   const std::filesystem::path& pairs, const std::filesystem::path& output_dir);

// Runs round `round` through [dpo] command. `model` is the policy the round starts from (fp32, no
// adapters); on return it carries the adapter the command trained. `texts[i]` is the text of
// `pairs[i]`; `lora` and `dpo` are the round's settings (seeds included) as train_dpo would get them.
// The steps of the command's log (rlrf dpo's dpo_log.jsonl) come back as the result's steps.
DpoResult train_dpo_by_command(RunContext& ctx, int round, llm::LlamaForCausalLM& model,
                               const std::vector<PreferencePair>& pairs, const std::vector<PairText>& texts,
                               const llm::LoraConfig& lora, const DpoConfig& dpo);

}  // namespace rlrf
