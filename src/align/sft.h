// Supervised fine-tuning (the optional warm start): next-token cross-entropy on (prompt, response)
// pairs, averaged over response tokens (prompt tokens masked), LoRA or full.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "llm/llama.h"
#include "llm/lora.h"

namespace rlrf {

class ConfigSection;

struct SftConfig {
  bool enabled = false;
  // profile (profile summaries) | card (knowledge cards of the items the prompt shows, knowledge/card.h)
  // | file:<path.jsonl> with prompt/response
  std::string targets = "profile";
  // targets = "card": each statement of a card is replaced by a wrong one with this probability
  // (seeded by `seed` and the user): a misaligned starting policy that DPO must repair.
  double target_noise = 0.0;
  double lr = 1e-3;
  int batch_size = 8;
  int grad_accum = 1;
  int epochs = 2;
  std::string schedule = "cosine";
  double warmup_ratio = 0.05;
  double weight_decay = 0.0;
  double max_grad_norm = 1.0;
  std::string finetune = "full";  // full | lora
  llm::LoraConfig lora;           // [sft.lora]
  uint64_t seed = 0;
  bool shuffle = true;  // false: examples in the given order
  // Compute dtype of the forward/backward: "bf16" runs the matmuls in bf16 (autocast) on fp32 master
  // weights; empty: the model's. Trained weights are always fp32 (align/policy_optimizer.h).
  std::string dtype;
  int threads = 0;      // intra-op threads while training; 0: llm::training_threads
  void read(const ConfigSection& s);
};

struct SftExample {
  std::vector<int32_t> prompt;    // rendered prompt ids
  std::vector<int32_t> response;  // target ids (end with the stop token)
};

struct SftStepLog {
  int64_t step = 0;
  int epoch = 0;
  double loss = 0;  // mean NLL per response token
  double lr = 0, grad_norm = 0, ms = 0;
  int64_t tokens = 0;
};

struct SftResult {
  std::vector<SftStepLog> steps;
  double seconds = 0;
  int64_t tokens = 0;
};

// Mean negative log-likelihood per response token over `examples` (no grad).
double sft_eval_loss(llm::LlamaForCausalLM& model, const std::vector<SftExample>& examples, int64_t batch_size = 16);

// Trains in place. With finetune = "lora" the model must already carry adapters.
SftResult train_sft(llm::LlamaForCausalLM& model, const std::vector<SftExample>& examples, const SftConfig& config,
                    const std::function<void(const SftStepLog&)>& on_step = {});

}  // namespace rlrf
