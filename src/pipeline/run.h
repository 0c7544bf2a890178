// `rlrf run`: every stage of the paper's loop in order, each skipped when its outputs are current.
#pragma once
#include <string>

#include "pipeline/run_config.h"

namespace rlrf {

struct RunOptions {
  // Stop after this stage: prepare | sft | generate | reward | pairs | dpo | evaluate | report
  // ("generate" stops after round 0's generation). Empty: run everything.
  std::string until;
};

void run_pipeline(const RunConfig& config, const RunOptions& options = {});

}  // namespace rlrf
