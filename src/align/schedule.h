// Learning-rate schedules of the alignment trainers (SFT, DPO): linear warm-up, then cosine,
// linear or constant, as transformers' get_*_schedule_with_warmup.
#pragma once
#include <cstdint>
#include <string>

namespace rlrf {

struct LrSchedule {
  std::string kind = "cosine";  // cosine | linear | constant
  double base_lr = 5e-5;
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;
  // Learning rate at optimizer step `step` (0-based).
  double at(int64_t step) const;
};

// Error naming `where` unless kind is cosine, linear or constant.
void check_schedule_kind(const std::string& kind, const std::string& where);

}  // namespace rlrf
