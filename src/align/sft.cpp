// Supervised fine-tuning on (prompt, response) pairs: token-mean NLL of the responses.
#include "align/sft.h"

#include <ATen/ATen.h>
#include <cstdint>
#include <torch/types.h>

#include <algorithm>
#include <chrono>
#include <numeric>
#include <random>

#include "align/policy_optimizer.h"
#include "llm/logprob.h"
#include "util/config.h"
#include "util/error.h"
#include "util/log.h"
#include "runtime/runtime.h"
#include "util/strings.h"

namespace rlrf {

void SftConfig::read(const ConfigSection& s) {
  s.read("enabled", enabled);
  s.read("targets", targets);
  s.read("target_noise", target_noise);
  s.read("lr", lr);
  s.read("batch_size", batch_size);
  s.read("grad_accum", grad_accum);
  s.read("epochs", epochs);
  s.read("schedule", schedule);
  s.read("warmup_ratio", warmup_ratio);
  s.read("weight_decay", weight_decay);
  s.read("max_grad_norm", max_grad_norm);
  s.read("finetune", finetune);
  s.read("shuffle", shuffle);
  s.read("dtype", dtype);
  s.read("threads", threads);
  int64_t seed_value = static_cast<int64_t>(seed);
  s.read("seed", seed_value);
  seed = static_cast<uint64_t>(seed_value);
  lora.read(s.sub("lora"));
  RLRF_CHECK(batch_size > 0 && grad_accum > 0 && epochs >= 0, "{}: batch_size, grad_accum must be > 0, epochs >= 0", s.where());
  RLRF_CHECK(finetune == "lora" || finetune == "full", "{}: finetune must be \"lora\" or \"full\", got \"{}\"", s.where(), finetune);
  if (!enabled)
    for (const std::string& key : s.keys())
      RLRF_CHECK(key == "enabled", "{}: {} is a setting of enabled = true (with enabled = false nothing reads it)", s.where(),
                 key);
  if (finetune == "full")
    for (const std::string& key : s.sub("lora").keys())
      fail("{}: {} is a setting of finetune = \"lora\" (finetune is \"full\": nothing reads it)", s.sub("lora").where(), key);
  RLRF_CHECK(threads >= 0, "{}: threads must be >= 0 (0: automatic), got {}", s.where(), threads);
  if (!dtype.empty()) llm::parse_dtype(dtype);
  RLRF_CHECK(targets == "profile" || targets == "card" || starts_with(targets, "file:"),
             "{}: targets must be \"profile\", \"card\" or \"file:<path>\", got \"{}\"", s.where(), targets);
  RLRF_CHECK(target_noise >= 0 && target_noise <= 1, "{}: target_noise must be in [0, 1], got {}", s.where(), target_noise);
  RLRF_CHECK(target_noise == 0 || targets == "card", "{}: target_noise applies to targets = \"card\" only (targets is \"{}\")",
             s.where(), targets);
  check_schedule_kind(schedule, s.where());
}

// Sum of NLL and token count of one batch; differentiable when grad mode is on.
static std::pair<at::Tensor, int64_t> batch_nll(llm::LlamaForCausalLM& model, const std::vector<SftExample>& examples,
                                                const std::vector<int64_t>& idx, int64_t lo, int64_t hi,
                                                at::ScalarType compute) {
  std::vector<std::vector<int32_t>> prompts, conts;
  int64_t tokens = 0;
  for (int64_t k = lo; k < hi; ++k) {
    const SftExample& e = examples[static_cast<size_t>(idx[static_cast<size_t>(k)])];
    prompts.push_back(e.prompt);
    conts.push_back(e.response);
    tokens += static_cast<int64_t>(e.response.size());
  }
  AutocastScope precision(compute, model->device());  // the forward; backward runs after it
  llm::ContinuationLogprobs lp = llm::continuation_logprobs(model, prompts, conts);
  return {-lp.sum.to(at::kFloat).sum(), tokens};
}

double sft_eval_loss(llm::LlamaForCausalLM& model, const std::vector<SftExample>& examples, int64_t batch_size) {
  if (examples.empty()) return 0;
  bool was_training = model->is_training();
  model->eval();
  at::NoGradGuard guard;
  std::vector<int64_t> idx(examples.size());
  std::iota(idx.begin(), idx.end(), 0);
  double nll = 0;
  int64_t tokens = 0;
  for (int64_t lo = 0; lo < static_cast<int64_t>(examples.size()); lo += batch_size) {
    auto [sum, n] = batch_nll(model, examples, idx, lo, std::min<int64_t>(lo + batch_size, static_cast<int64_t>(examples.size())),
                              model->dtype());
    nll += sum.item<double>();
    tokens += n;
  }
  if (was_training) model->train();
  return tokens ? nll / double(tokens) : 0;
}

SftResult train_sft(llm::LlamaForCausalLM& model, const std::vector<SftExample>& examples, const SftConfig& config,
                    const std::function<void(const SftStepLog&)>& on_step) {
  SftResult result;
  if (examples.empty() || config.epochs == 0) return result;
  if (config.finetune == "lora") {
    RLRF_CHECK(llm::has_lora(model), "sft: finetune = \"lora\" but the model carries no adapters");
  } else {
    llm::enable_full_finetune(model);
  }
  const at::ScalarType compute = training_compute_dtype(model, config.dtype, "sft");
  ScopedThreads threads(config.threads > 0 ? config.threads : llm::training_threads(*model, compute));
  auto start = std::chrono::steady_clock::now();
  const int64_t n = static_cast<int64_t>(examples.size());
  const int64_t micro_per_epoch = (n + config.batch_size - 1) / config.batch_size;
  const int64_t steps_per_epoch = (micro_per_epoch + config.grad_accum - 1) / config.grad_accum;
  LrSchedule schedule;
  schedule.kind = config.schedule;
  schedule.base_lr = config.lr;
  schedule.total_steps = steps_per_epoch * config.epochs;
  schedule.warmup_steps = static_cast<int64_t>(config.warmup_ratio * double(schedule.total_steps));
  PolicyOptimizerOptions opt_options;
  opt_options.weight_decay = config.weight_decay;
  opt_options.max_grad_norm = config.max_grad_norm;
  PolicyOptimizer optimizer(llm::trainable_parameters(model), schedule, opt_options);

  std::mt19937_64 rng(config.seed);
  std::vector<int64_t> order(static_cast<size_t>(n));
  model->train();
  for (int epoch = 0; epoch < config.epochs; ++epoch) {
    std::iota(order.begin(), order.end(), 0);
    if (config.shuffle) std::shuffle(order.begin(), order.end(), rng);
    for (int64_t s = 0; s < steps_per_epoch; ++s) {
      auto t0 = std::chrono::steady_clock::now();
      SftStepLog log;
      log.step = optimizer.steps_done();
      log.epoch = epoch;
      log.lr = optimizer.current_lr();
      int64_t first = s * config.grad_accum * config.batch_size;
      int64_t last = std::min(n, first + config.grad_accum * config.batch_size);
      int64_t step_tokens = 0;
      for (int64_t k = first; k < last; ++k) step_tokens += static_cast<int64_t>(examples[static_cast<size_t>(order[static_cast<size_t>(k)])].response.size());
      double nll = 0;
      for (int64_t lo = first; lo < last; lo += config.batch_size) {
        auto [sum, tokens] = batch_nll(model, examples, order, lo, std::min(last, lo + config.batch_size), compute);
        (sum / double(std::max<int64_t>(1, step_tokens))).backward();
        nll += sum.item<double>();
        log.tokens += tokens;
      }
      for (int64_t k = first; k < last; ++k) log.tokens += static_cast<int64_t>(examples[static_cast<size_t>(order[static_cast<size_t>(k)])].prompt.size());
      log.grad_norm = optimizer.step();
      log.loss = nll / double(std::max<int64_t>(1, step_tokens));
      log.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      result.tokens += log.tokens;
      result.steps.push_back(log);
      if (log.step % 10 == 0 || s + 1 == steps_per_epoch)
        log_info("sft step {} (epoch {}): loss {:.4f} lr {:.2e} ({:.0f} ms)", log.step, epoch, log.loss, log.lr, log.ms);
      if (on_step) on_step(log);
    }
  }
  model->eval();
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace rlrf
