// Early stopping of reranker training on a validation score (higher is better): keeps a copy of the
// model's parameters and buffers at its best epoch, says when `patience` epochs in a row have not
// beaten it, and puts the best copy back at the end.
//
//   EarlyStopping stop(*model, patience);         // the untrained state is the best so far
//   for (epoch ...) {
//     train one epoch ...
//     bool best = stop.after_epoch(epoch, valid_map5, *model);   // std::nullopt: no validation
//     if (stop.should_stop()) break;
//   }
//   stop.restore_best(*model);
#pragma once
#include <ATen/core/Tensor.h>

#include <algorithm>
#include <optional>
#include <vector>

namespace torch::nn {
class Module;
}

namespace rlrf {

class EarlyStopping {
 public:
  // Keeps `m`'s current state as the best until an epoch beats it.
  EarlyStopping(torch::nn::Module& m, int patience);

  // After epoch `epoch` (1-based) with validation score `score`: when the score is above the best so
  // far (any score beats none; std::nullopt, no validation, always counts as the best: the last
  // epoch is kept) `m`'s state becomes the best and it returns true; otherwise it counts an epoch
  // without improvement and returns false.
  bool after_epoch(int epoch, std::optional<double> score, torch::nn::Module& m);
  // `patience` epochs in a row without improvement have passed (a patience below 1 counts as 1).
  bool should_stop() const { return bad_epochs_ >= std::max(1, patience_); }
  // Copies the best state back into `m` (the module the constructor was given).
  void restore_best(torch::nn::Module& m) const;

  int best_epoch() const { return best_epoch_; }          // 0: none yet
  std::optional<double> best_score() const { return best_score_; }

 private:
  int patience_;
  int bad_epochs_ = 0;
  int best_epoch_ = 0;
  std::optional<double> best_score_;
  std::vector<at::Tensor> best_;  // parameters, then buffers, in the module's order
};

}  // namespace rlrf
