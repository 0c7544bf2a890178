// Learning-rate schedules: linear warm-up, then cosine / linear decay to 0, or constant.
#include "align/schedule.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "util/error.h"

namespace rlrf {

double LrSchedule::at(int64_t step) const {
  if (warmup_steps > 0 && step < warmup_steps) return base_lr * double(step + 1) / double(warmup_steps + 1);
  if (kind == "constant") return base_lr;
  int64_t decay = std::max<int64_t>(1, total_steps - warmup_steps);
  double progress = std::clamp(double(step - warmup_steps) / double(decay), 0.0, 1.0);
  if (kind == "linear") return base_lr * (1.0 - progress);
  return base_lr * 0.5 * (1.0 + std::cos(M_PI * progress));
}

void check_schedule_kind(const std::string& kind, const std::string& where) {
  RLRF_CHECK(kind == "cosine" || kind == "linear" || kind == "constant",
             "{}: schedule must be cosine, linear or constant, got \"{}\"", where, kind);
}

}  // namespace rlrf
