// DPO training: reference log-probs once, then micro-batches of pairs through the policy with grad,
// gradient accumulation, AdamW with a schedule; per-step loss, rewards, accuracy and margin.
#include "align/dpo.h"

#include <ATen/ATen.h>
#include <cstdint>
#include <torch/types.h>

#include <algorithm>
#include <chrono>
#include <numeric>
#include <optional>
#include <random>

#include "align/policy_optimizer.h"
#include "llm/logprob.h"
#include "util/config.h"
#include "util/error.h"
#include "runtime/runtime.h"
#include "util/log.h"

namespace rlrf {

void DpoConfig::read(const ConfigSection& s) {
  s.read("beta", beta);
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
  s.read("pack_pairs", pack_pairs);
  s.read("dtype", dtype);
  s.read("threads", threads);
  s.read("heldout_fraction", heldout_fraction);
  RLRF_CHECK(heldout_fraction >= 0 && heldout_fraction < 1, "{}: heldout_fraction must be in [0, 1), got {}", s.where(),
             heldout_fraction);
  int64_t seed_value = static_cast<int64_t>(seed);
  s.read("seed", seed_value);
  seed = static_cast<uint64_t>(seed_value);
  lora.read(s.sub("lora"));
  RLRF_CHECK(beta > 0, "{}: beta must be > 0", s.where());
  RLRF_CHECK(batch_size > 0 && grad_accum > 0 && epochs >= 0, "{}: batch_size, grad_accum must be > 0, epochs >= 0", s.where());
  RLRF_CHECK(finetune == "lora" || finetune == "full", "{}: finetune must be \"lora\" or \"full\", got \"{}\"", s.where(), finetune);
  if (finetune == "full")
    for (const std::string& key : s.sub("lora").keys())
      fail("{}: {} is a setting of finetune = \"lora\" (finetune is \"full\": nothing reads it)", s.sub("lora").where(), key);
  RLRF_CHECK(threads >= 0, "{}: threads must be >= 0 (0: automatic), got {}", s.where(), threads);
  if (!dtype.empty()) llm::parse_dtype(dtype);  // a clear error now rather than at load time
  check_schedule_kind(schedule, s.where());
  s.read("backend", backend);
  s.read("command", command);
  s.read("cutoff_len", cutoff_len);
  s.read("template", trainer_template);
  RLRF_CHECK(backend == "builtin" || backend == "command", "{}: backend must be \"builtin\" or \"command\", got \"{}\"",
             s.where(), backend);
  if (backend == "command") {
    RLRF_CHECK(!command.empty(), "{}: backend = \"command\" needs command = \"...\" (a shell command line; {{config}}, "
               "{{pairs}} and {{output_dir}} are replaced), e.g. \"llamafactory-cli train {{config}}\"", s.where());
    RLRF_CHECK(finetune == "lora", "{}: backend = \"command\" reads a PEFT adapter back: finetune must be \"lora\", got \"{}\"",
               s.where(), finetune);
    RLRF_CHECK(cutoff_len >= 0, "{}: cutoff_len must be >= 0 (0: the longest pair), got {}", s.where(), cutoff_len);
  } else {
    for (const char* key : {"command", "cutoff_len", "template"})
      RLRF_CHECK(!s.has(key), "{}: {} is a setting of backend = \"command\" (backend is \"{}\")", s.where(), key, backend);
  }
}

DpoBatchLoss dpo_loss(const at::Tensor& policy_chosen, const at::Tensor& policy_rejected, const at::Tensor& ref_chosen,
                      const at::Tensor& ref_rejected, double beta) {
  at::Tensor chosen_logratio = policy_chosen - ref_chosen;
  at::Tensor rejected_logratio = policy_rejected - ref_rejected;
  at::Tensor logits = beta * (chosen_logratio - rejected_logratio);
  DpoBatchLoss out;
  out.loss = -at::log_sigmoid(logits).mean();
  out.chosen_rewards = (beta * chosen_logratio).detach();
  out.rejected_rewards = (beta * rejected_logratio).detach();
  return out;
}

void reference_logprobs(llm::LlamaForCausalLM& model, const std::vector<PreferencePair>& pairs,
                        std::vector<double>& ref_chosen, std::vector<double>& ref_rejected, int64_t batch_size, bool pack) {
  std::vector<std::vector<int32_t>> prompts, chosen, rejected;
  for (const PreferencePair& p : pairs) {
    prompts.push_back(p.prompt);
    chosen.push_back(p.chosen);
    rejected.push_back(p.rejected);
  }
  bool lora = llm::has_lora(model);
  if (lora) llm::set_lora_enabled(model, false);
  try {
    if (pack) {
      llm::pair_logprob_sums(model, prompts, chosen, rejected, ref_chosen, ref_rejected, batch_size);
    } else {
      ref_chosen = llm::continuation_logprob_sums(model, prompts, chosen, batch_size);
      ref_rejected = llm::continuation_logprob_sums(model, prompts, rejected, batch_size);
    }
  } catch (...) {
    if (lora) llm::set_lora_enabled(model, true);
    throw;
  }
  if (lora) llm::set_lora_enabled(model, true);
}

PreferenceMetrics preference_metrics(llm::LlamaForCausalLM& model, const std::vector<PreferencePair>& pairs, double beta,
                                     llm::LlamaForCausalLM* reference, int64_t batch_size) {
  PreferenceMetrics m;
  if (pairs.empty()) return m;
  RLRF_CHECK(reference || llm::has_lora(model), "preference_metrics: no reference model and no adapters to turn off");
  std::vector<std::vector<int32_t>> prompts, chosen, rejected;
  for (const PreferencePair& p : pairs) {
    prompts.push_back(p.prompt);
    chosen.push_back(p.chosen);
    rejected.push_back(p.rejected);
  }
  std::vector<double> pc, pr, rc, rr;
  llm::pair_logprob_sums(model, prompts, chosen, rejected, pc, pr, batch_size);
  if (reference) llm::pair_logprob_sums(*reference, prompts, chosen, rejected, rc, rr, batch_size);
  else reference_logprobs(model, pairs, rc, rr, batch_size, true);
  m.pairs = static_cast<int64_t>(pairs.size());
  for (size_t i = 0; i < pairs.size(); ++i) {
    const double lc = pc[i] - rc[i], lr = pr[i] - rr[i];
    m.chosen_logratio += lc;
    m.rejected_logratio += lr;
    m.margin += beta * (lc - lr);
    m.accuracy += (lc - lr) > 0;
  }
  const double n = static_cast<double>(pairs.size());
  m.accuracy /= n;
  m.margin /= n;
  m.chosen_logratio /= n;
  m.rejected_logratio /= n;
  return m;
}

DpoResult train_dpo(llm::LlamaForCausalLM& model, const std::vector<PreferencePair>& pairs, const DpoConfig& config,
                    const std::function<void(const DpoStepLog&)>& on_step) {
  DpoResult result;
  if (pairs.empty() || config.epochs == 0) return result;
  if (config.finetune == "lora") {
    RLRF_CHECK(llm::has_lora(model), "dpo: finetune = \"lora\" but the model carries no adapters");
  } else {
    llm::enable_full_finetune(model);
  }
  const at::ScalarType compute = training_compute_dtype(model, config.dtype, "dpo");
  ScopedThreads threads(config.threads > 0 ? config.threads : llm::training_threads(*model, compute));
  auto start = std::chrono::steady_clock::now();
  std::vector<double> ref_c, ref_r;
  {
    AutocastScope precision(compute, model->device());
    reference_logprobs(model, pairs, ref_c, ref_r, 8, config.pack_pairs);
  }

  const int64_t n = static_cast<int64_t>(pairs.size());
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
      DpoStepLog log;
      log.step = optimizer.steps_done();
      log.epoch = epoch;
      log.lr = optimizer.current_lr();
      int64_t first_micro = s * config.grad_accum;
      int64_t last_micro = std::min(micro_per_epoch, first_micro + config.grad_accum);
      int64_t pairs_in_step = 0;
      for (int64_t m = first_micro; m < last_micro; ++m) {
        int64_t lo = m * config.batch_size, hi = std::min(n, lo + config.batch_size);
        std::vector<std::vector<int32_t>> prompts, chosen, rejected;
        std::vector<float> rc, rr;
        for (int64_t k = lo; k < hi; ++k) {
          const size_t idx = static_cast<size_t>(order[static_cast<size_t>(k)]);
          const PreferencePair& p = pairs[idx];
          prompts.push_back(p.prompt);
          chosen.push_back(p.chosen);
          rejected.push_back(p.rejected);
          rc.push_back(static_cast<float>(ref_c[idx]));
          rr.push_back(static_cast<float>(ref_r[idx]));
          log.tokens += static_cast<int64_t>(p.prompt.size() + p.chosen.size() + p.rejected.size());
        }
        int64_t b = hi - lo;
        at::Tensor policy_chosen, policy_rejected;
        std::optional<AutocastScope> precision(std::in_place, compute, model->device());  // the forward only
        if (config.pack_pairs) {  // chosen and rejected share one pass over their prompt (llm/logprob.h)
          llm::PairLogprobs lp = llm::pair_logprobs(model, prompts, chosen, rejected);
          policy_chosen = lp.a_sum.to(at::kFloat);
          policy_rejected = lp.b_sum.to(at::kFloat);
        } else {  // 2b rows: the prompt of each pair twice
          std::vector<std::vector<int32_t>> twice = prompts;
          twice.insert(twice.end(), prompts.begin(), prompts.end());
          chosen.insert(chosen.end(), rejected.begin(), rejected.end());
          at::Tensor sums = llm::continuation_logprobs(model, twice, chosen).sum.to(at::kFloat);
          policy_chosen = sums.slice(0, 0, b);
          policy_rejected = sums.slice(0, b, 2 * b);
          for (int64_t k = lo; k < hi; ++k) log.tokens += static_cast<int64_t>(pairs[static_cast<size_t>(order[static_cast<size_t>(k)])].prompt.size());
        }
        at::Tensor ref_chosen = torch::tensor(rc).to(policy_chosen.device());
        at::Tensor ref_rejected = torch::tensor(rr).to(policy_chosen.device());
        precision.reset();
        DpoBatchLoss l = dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, config.beta);
        // Each micro-batch's mean loss weighs by its share of the step's pairs.
        int64_t step_pairs = std::min(n, last_micro * config.batch_size) - first_micro * config.batch_size;
        (l.loss * (double(b) / double(step_pairs))).backward();
        pairs_in_step += b;
        log.loss += l.loss.item<double>() * double(b);
        log.chosen_reward += l.chosen_rewards.sum().item<double>();
        log.rejected_reward += l.rejected_rewards.sum().item<double>();
        log.accuracy += (l.chosen_rewards > l.rejected_rewards).to(at::kFloat).sum().item<double>();
        log.margin += (l.chosen_rewards - l.rejected_rewards).sum().item<double>();
      }
      log.grad_norm = optimizer.step();
      double k = double(std::max<int64_t>(1, pairs_in_step));
      log.loss /= k;
      log.chosen_reward /= k;
      log.rejected_reward /= k;
      log.accuracy /= k;
      log.margin /= k;
      log.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      result.tokens += log.tokens;
      result.steps.push_back(log);
      log_info("dpo step {}: loss {:.4f} reward chosen {:+.4f} rejected {:+.4f} acc {:.2f} margin {:+.4f} lr {:.2e} ({:.0f} ms)",
               log.step, log.loss, log.chosen_reward, log.rejected_reward, log.accuracy, log.margin, log.lr, log.ms);
      if (on_step) on_step(log);
    }
  }
  model->eval();
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace rlrf
