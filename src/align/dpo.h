// Direct Preference Optimization (the paper's knowledge alignment):
//   L = -log sigmoid(beta * ((log pi(y_c|x) - log ref(y_c|x)) - (log pi(y_r|x) - log ref(y_r|x))))
// with log-probs summed over response tokens only (prompt masked). The reference is the policy as it
// is when training starts (with LoRA: adapters off), so its log-probs are computed once.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "llm/llama.h"
#include "llm/lora.h"

namespace rlrf {

class ConfigSection;

struct DpoConfig {
  double beta = 0.01;           // the paper's
  double lr = 5e-5;             // the paper's
  int batch_size = 2;           // pairs per micro-batch (the paper's)
  int grad_accum = 8;           // micro-batches per optimizer step (the paper's)
  int epochs = 3;               // the paper's
  std::string schedule = "cosine";
  double warmup_ratio = 0.1;
  double weight_decay = 0.0;
  double max_grad_norm = 1.0;
  std::string finetune = "lora";  // lora | full
  llm::LoraConfig lora;           // [dpo.lora]
  uint64_t seed = 0;              // pair order per epoch
  bool shuffle = true;            // false: pairs in the given order (reference checks)
  // Chosen and rejected of a pair in one packed sequence, the prompt computed once (same values,
  // ~40% fewer tokens with long prompts); false: two rows per pair, as TRL lays them out.
  bool pack_pairs = true;
  // Compute dtype of the policy's forward/backward: "bf16" runs the matmuls in bf16 (autocast) on fp32
  // weights and adapters; empty: the model's. Trained parameters are always fp32 masters
  // (align/policy_optimizer.h); the loaders (`rlrf run`, `rlrf dpo`) load the policy in fp32.
  std::string dtype;
  int threads = 0;                // intra-op threads while training; 0: llm::training_threads
  // Share of a round's pairs held out of training (seeded by the round): the report shows the
  // trained policy's pair accuracy and implicit reward margin on them. 0: none held out.
  double heldout_fraction = 0.1;
  // Who trains a round of `rlrf run`: "builtin" (train_dpo here) or "command" (an external trainer:
  // the round's pairs and a LLaMA-Factory YAML are written, `command` runs, and the PEFT adapter
  // it leaves in {output_dir} is read back and checked; align/trainer_job.h, pipeline/dpo_command.h).
  std::string backend = "builtin";
  // backend = "command": a shell command line; {config} (the YAML), {pairs} (the dataset
  // directory: dataset_info.json and the rows) and {output_dir} are replaced by their paths.
  std::string command;
  int cutoff_len = 0;          // command: the YAML's cutoff_len; 0: the longest pair's tokens
  std::string trainer_template;  // command: LLaMA-Factory's template; empty: from the run's chat template
  void read(const ConfigSection& s);
};

struct PreferencePair {
  int32_t user = 0;
  std::vector<int32_t> prompt;    // rendered prompt ids (BOS included)
  std::vector<int32_t> chosen;    // response ids (stop token included when the response had one)
  std::vector<int32_t> rejected;
};

struct DpoBatchLoss {
  at::Tensor loss;              // [] mean over the batch
  at::Tensor chosen_rewards;    // [B] beta * (pi_c - ref_c), detached
  at::Tensor rejected_rewards;  // [B] beta * (pi_r - ref_r), detached
};

// The loss of one batch from summed log-probs, all [B].
DpoBatchLoss dpo_loss(const at::Tensor& policy_chosen, const at::Tensor& policy_rejected, const at::Tensor& ref_chosen,
                      const at::Tensor& ref_rejected, double beta);

// Metrics of one optimizer step (means over its micro-batches), as TRL logs them.
struct DpoStepLog {
  int64_t step = 0;      // optimizer step, 0-based
  int epoch = 0;
  double loss = 0, chosen_reward = 0, rejected_reward = 0, accuracy = 0, margin = 0;
  double lr = 0, grad_norm = 0, ms = 0;
  int64_t tokens = 0;    // tokens through the policy in this step: prompt (once when packed) + both answers
};

struct DpoResult {
  std::vector<DpoStepLog> steps;
  double seconds = 0;
  int64_t tokens = 0;
  double tokens_per_second() const { return seconds > 0 ? double(tokens) / seconds : 0; }
};

// Reference log-probs (sums) of chosen and rejected for every pair, no grad, adapters off;
// `pack` as DpoConfig::pack_pairs.
void reference_logprobs(llm::LlamaForCausalLM& model, const std::vector<PreferencePair>& pairs,
                        std::vector<double>& ref_chosen, std::vector<double>& ref_rejected, int64_t batch_size = 8,
                        bool pack = true);

// How a policy orders pairs it may not have trained on, against a reference:
// log-ratio = log pi(y|x) - log ref(y|x) summed over response tokens.
struct PreferenceMetrics {
  int64_t pairs = 0;
  double accuracy = 0;           // share of pairs with margin > 0
  double margin = 0;             // mean beta * (log-ratio chosen - log-ratio rejected)
  double chosen_logratio = 0;    // mean log-ratio of chosen responses
  double rejected_logratio = 0;  // mean log-ratio of rejected responses
};
// The policy is `model` as it is (adapters on); the reference is `reference` when given, else
// `model` with its adapters off (the DPO reference of a LoRA round).
PreferenceMetrics preference_metrics(llm::LlamaForCausalLM& model, const std::vector<PreferencePair>& pairs, double beta,
                                     llm::LlamaForCausalLM* reference = nullptr, int64_t batch_size = 8);

// Trains the policy in place. With finetune = "lora" the model must already carry adapters
// (apply_lora); with "full" every weight is trained. `on_step` sees every optimizer step.
DpoResult train_dpo(llm::LlamaForCausalLM& model, const std::vector<PreferencePair>& pairs, const DpoConfig& config,
                    const std::function<void(const DpoStepLog&)>& on_step = {});

}  // namespace rlrf
