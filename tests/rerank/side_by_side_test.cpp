// Trainings side by side. The evaluation stage and `rlrf rerank` train many rerankers at once. In
// one process with two threads, libtorch 1.13's bf16 matmuls (oneDNN 2.6, Debian 12) corrupt memory
// once oneDNN's primitive cache is full and evicting: the demo died with std::bad_array_new_length
// inside oneDNN's brgemm kernel creation, 35 trainings into its evaluation. run_trainings gives each
// training a process of its own; these tests put the same load on it that broke threads.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include "runtime/autocast.h"
#include <torch/nn/modules/linear.h>

#include <random>
#include <string>
#include <vector>

#include "rerank/reranker.h"
#include "runtime/runtime.h"

using namespace rlrf;

namespace {

// The reranker's load on oneDNN, distilled: bf16 (autocast) linear layers, forward and backward, on
// row counts that change every step (the adapter sees each batch's distinct users and items), so
// nearly every step creates new matmul primitives and the cache turns over. Returns a checksum.
std::string bf16_many_shapes(int64_t job, int steps) {
  torch::manual_seed(static_cast<uint64_t>(job) + 1);
  torch::nn::Linear a(100, 128), b(128, 32);
  std::mt19937 rng(static_cast<uint32_t>(job) * 7919u + 1u);
  std::uniform_int_distribution<int64_t> rows(1, 3000);
  double sum = 0;
  for (int s = 0; s < steps; ++s) {
    at::Tensor x = at::randn({rows(rng), 100});
    at::Tensor y;
    {
      AutocastScope bf16(at::kBFloat16, at::kCPU);
      y = b->forward(at::relu(a->forward(x)));
    }
    at::Tensor loss = y.to(at::kFloat).mean();
    loss.backward();
    sum += loss.item<double>();
  }
  return std::to_string(sum);
}

constexpr int kSteps = 3000;

}  // namespace

// What the evaluation stage and `rlrf rerank` do with the demo's [rerank] (bf16, two side by side).
TEST(SideBySide, Bf16TrainingsOfManyShapesScheduledAsTheEvaluationDoesFinish) {
  init_threads();
  RerankConfig config;
  config.train.dtype = "bf16";
  config.jobs = 2;
  std::vector<std::string> results(4);
  run_trainings(4, config, [](int64_t i) { return bf16_many_shapes(i, kSteps); },
                [&](int64_t i, const std::string& r) { results[static_cast<size_t>(i)] = r; });
  for (size_t i = 0; i < results.size(); ++i) {
    ASSERT_FALSE(results[i].empty()) << "job " << i;
    // A worker computes what the job computes alone, in this process.
    if (i == 0) EXPECT_EQ(results[i], bf16_many_shapes(0, kSteps));
  }
}

// The same load on two threads of this process: what crashed the demo (a segfault or
// std::bad_array_new_length within a minute, or a hang: 5 runs of 5 failed here). Kept as the
// reproduction:
//   build/test_rerank --gtest_also_run_disabled_tests --gtest_filter='SideBySide.DISABLED_*'
TEST(SideBySide, DISABLED_Bf16TrainingsOfManyShapesInTwoThreadsCrashLibtorch) {
  init_threads();
  run_parallel(4, 2, [](int64_t i) { bf16_many_shapes(i, kSteps); });
}
