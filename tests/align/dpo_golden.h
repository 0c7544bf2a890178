// The DPO goldens of tools/ref/align_dpo_ref.py (tests/data/align/dpo_golden.json): their pairs and
// the trainer settings that reproduce their steps. Shared by test_align and test_cuda.
#pragma once
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "align/dpo.h"
#include "align/pairs.h"
#include "util/files.h"

namespace rlrf::test {

inline std::filesystem::path dpo_golden_dir() { return source_dir() / "tests" / "data" / "align"; }

inline nlohmann::json dpo_golden() { return nlohmann::json::parse(read_file(dpo_golden_dir() / "dpo_golden.json")); }

inline std::vector<PreferencePair> dpo_golden_pairs(const nlohmann::json& g) {
  std::vector<PreferencePair> pairs;
  for (const auto& p : g["pairs"]) {
    PreferencePair pp;
    pp.prompt = p["prompt"].get<std::vector<int32_t>>();
    pp.chosen = p["chosen"].get<std::vector<int32_t>>();
    pp.rejected = p["rejected"].get<std::vector<int32_t>>();
    pairs.push_back(pp);
  }
  return pairs;
}

// The goldens' trainer settings on a DPO or SFT config: one epoch over the pairs in their order at a
// constant learning rate.
template <typename TrainerConfig>
void apply_golden_settings(TrainerConfig& c, const nlohmann::json& g) {
  c.lr = g["lr"];
  c.batch_size = g["batch_size"];
  c.grad_accum = g["grad_accum"];
  c.max_grad_norm = g["max_grad_norm"];
  c.epochs = 1;
  c.schedule = "constant";
  c.warmup_ratio = 0;
  c.shuffle = false;
}

// The DPO config of the goldens' steps, `finetune` "full" or "lora".
inline DpoConfig dpo_golden_config(const nlohmann::json& g, const std::string& finetune) {
  DpoConfig c;
  apply_golden_settings(c, g);
  c.beta = g["beta"];
  c.finetune = finetune;
  return c;
}

}  // namespace rlrf::test
