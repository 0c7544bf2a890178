// The pieces reranker training is made of, each on its own: the cosine learning rate (values by
// hand), AdamW's parameter groups and its flat buffers against libtorch's AdamW, early stopping (stops after `patience` epochs without a better
// score, restores the best epoch's parameters and buffers), batching by list length (every list
// once) and the row chunks of adapter passes; and the split of [rerank] into the trainer's
// settings and the verb's.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/linear.h>
#include <torch/optim/adamw.h>
#include <torch/utils.h>

#include <cmath>
#include <set>

#include "error_of.h"
#include "rerank/batches.h"
#include "rerank/early_stopping.h"
#include "rerank/optimizer.h"
#include "rerank/reranker.h"
#include "util/config.h"

using namespace rlrf;

TEST(CosineLr, PeakAtTheStartHalfWayHalfZeroAtTheEnd) {
  const double peak = 1e-3;
  EXPECT_EQ(cosine_lr(peak, 0, 8), peak);                                 // cos 0 = 1
  EXPECT_NEAR(cosine_lr(peak, 2, 8), 8.5355339059327373e-4, 1e-18);       // (1 + cos(pi/4)) / 2 = 0.853553...
  EXPECT_NEAR(cosine_lr(peak, 4, 8), 5e-4, 1e-18);                        // cos(pi/2) = 0
  EXPECT_NEAR(cosine_lr(peak, 6, 8), 1.4644660940672627e-4, 1e-18);       // (1 - cos(pi/4)) / 2 = 0.146446...
  EXPECT_EQ(cosine_lr(peak, 8, 8), 0.0);                                  // cos(pi) = -1
  EXPECT_EQ(cosine_lr(2.0, 0, 1), 2.0);
  // Decreasing over the steps.
  for (int64_t s = 1; s <= 100; ++s) EXPECT_LT(cosine_lr(peak, s, 100), cosine_lr(peak, s - 1, 100));
}

TEST(RerankOptimizer, BiasesAreNotDecayedAndParametersLiveInTheGroupsBuffers) {
  torch::nn::Linear lin(3, 2);
  const at::Tensor w0 = lin->weight.detach().clone(), b0 = lin->bias.detach().clone();
  auto opt = make_optimizer(*lin, 0.01, 0.1);
  ASSERT_EQ(opt->groups().size(), 2u);
  const auto& decayed = opt->groups()[0];
  const auto& undecayed = opt->groups()[1];
  ASSERT_EQ(decayed.members.size(), 1u);
  ASSERT_EQ(undecayed.members.size(), 1u);
  EXPECT_TRUE(decayed.members[0].is_same(lin->weight));
  EXPECT_TRUE(undecayed.members[0].is_same(lin->bias));
  EXPECT_EQ(decayed.weight_decay, 0.1);
  EXPECT_EQ(undecayed.weight_decay, 0.0);
  // The module's tensors kept their values and now share the group's storage.
  EXPECT_TRUE(at::equal(lin->weight, w0));
  EXPECT_TRUE(at::equal(lin->bias, b0));
  EXPECT_EQ(lin->weight.data_ptr(), decayed.params.data_ptr());
  EXPECT_EQ(lin->bias.data_ptr(), undecayed.params.data_ptr());
  EXPECT_EQ(opt->lr(), 0.01);
  opt->set_lr(0.5);
  EXPECT_EQ(opt->lr(), 0.5);
}

TEST(RerankOptimizer, FlatAdamWFollowsLibtorchsAdamW) {
  // Two copies of a small net (weights, biases, a 3-d weight), one stepped by libtorch's AdamW in
  // the same two groups, one by the flat AdamW, on the same batches at a changing learning rate:
  // every parameter the same after every step, to fp32 rounding (the same elementwise arithmetic).
  torch::manual_seed(3);
  torch::nn::Sequential a(torch::nn::Linear(5, 7), torch::nn::ReLU(), torch::nn::Linear(7, 2));
  torch::nn::Sequential b(torch::nn::Linear(5, 7), torch::nn::ReLU(), torch::nn::Linear(7, 2));
  {
    torch::NoGradGuard guard;
    for (size_t i = 0; i < a->parameters().size(); ++i) b->parameters()[i].copy_(a->parameters()[i]);
  }
  std::vector<at::Tensor> decay, no_decay;
  for (const auto& p : a->named_parameters()) (p.key().find("bias") != std::string::npos ? no_decay : decay).push_back(p.value());
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(0.01).weight_decay(0.1)));
  groups.emplace_back(no_decay, std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(0.01).weight_decay(0)));
  torch::optim::AdamW reference(groups, torch::optim::AdamWOptions(0.01));
  auto flat = make_optimizer(*b, 0.01, 0.1);
  double worst = 0;
  for (int step = 0; step < 25; ++step) {
    const double lr = cosine_lr(0.01, step, 25);
    for (auto& g : reference.param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
    flat->set_lr(lr);
    const at::Tensor x = at::randn({16, 5}), y = at::randn({16, 2});
    reference.zero_grad();
    (a->forward(x) - y).pow(2).mean().backward();
    reference.step();
    flat->zero_grad();
    (b->forward(x) - y).pow(2).mean().backward();
    flat->step();
    for (size_t i = 0; i < a->parameters().size(); ++i) {
      const at::Tensor pa = a->parameters()[i], pb = b->parameters()[i];
      worst = std::max(worst, (pa - pb).abs().max().item<double>() / (pa.abs().max().item<double>() + 1e-12));
    }
  }
  EXPECT_LT(worst, 1e-6) << "largest relative difference from libtorch's AdamW over 25 steps";
  EXPECT_EQ(flat->steps(), 25);
  std::printf("  largest relative difference from libtorch's AdamW over 25 steps: %.3g\n", worst);
  // The gradients accumulate into the buffer: a second backward without zero_grad doubles them.
  flat->zero_grad();
  const at::Tensor x = at::randn({4, 5});
  b->forward(x).sum().backward();
  const at::Tensor once = flat->groups()[0].grads.clone();
  b->forward(x).sum().backward();
  EXPECT_TRUE(at::allclose(flat->groups()[0].grads, once * 2));
  EXPECT_GT(once.abs().sum().item<double>(), 0.0);
}

namespace {

// Every parameter and buffer of `bn` set to `v`: the state "of epoch v".
void set_state(torch::nn::BatchNorm1d& bn, double v) {
  torch::NoGradGuard guard;
  for (auto& p : bn->parameters()) p.fill_(v);
  for (auto& b : bn->buffers()) b.fill_(v);
}

void expect_state(torch::nn::BatchNorm1d& bn, double v) {
  for (const auto& p : bn->parameters()) EXPECT_TRUE(at::all(p == v).item<bool>()) << "parameter, want " << v;
  for (const auto& b : bn->buffers()) EXPECT_TRUE(at::all(b == v).item<bool>()) << "buffer, want " << v;
}

}  // namespace

TEST(EarlyStopping, StopsAfterPatienceEpochsWithoutABetterScoreAndRestoresTheBest) {
  torch::nn::BatchNorm1d bn(3);  // parameters and buffers (running statistics, batch count)
  set_state(bn, 0);
  EarlyStopping stop(*bn, /*patience=*/3);
  EXPECT_EQ(stop.best_epoch(), 0);
  const double scores[] = {0.2, 0.5, 0.4, 0.5, 0.3, 0.9};
  const bool best[] = {true, true, false, false, false};
  int epoch = 1;
  for (; epoch <= 6; ++epoch) {
    set_state(bn, epoch);
    EXPECT_EQ(stop.after_epoch(epoch, scores[epoch - 1], *bn), best[epoch - 1]) << "epoch " << epoch;
    if (stop.should_stop()) break;
  }
  EXPECT_EQ(epoch, 5);  // epochs 3, 4 and 5 were not better than epoch 2 (a tie is not better)
  EXPECT_EQ(stop.best_epoch(), 2);
  EXPECT_EQ(stop.best_score(), 0.5);
  expect_state(bn, 5);
  stop.restore_best(*bn);
  expect_state(bn, 2);
}

TEST(EarlyStopping, ABetterScoreResetsTheCountAndNoValidationKeepsTheLastEpoch) {
  torch::nn::BatchNorm1d bn(2);
  set_state(bn, 0);
  EarlyStopping stop(*bn, 2);
  for (auto [epoch, score] : {std::pair{1, 0.3}, {2, 0.2}, {3, 0.4}, {4, 0.1}}) {
    set_state(bn, epoch);
    stop.after_epoch(epoch, score, *bn);
    EXPECT_FALSE(stop.should_stop()) << "epoch " << epoch;
  }
  set_state(bn, 5);
  EXPECT_FALSE(stop.after_epoch(5, 0.35, *bn));
  EXPECT_TRUE(stop.should_stop());
  stop.restore_best(*bn);
  expect_state(bn, 3);

  EarlyStopping none(*bn, 1);  // no validation scores: every epoch is the best so far
  for (int epoch = 1; epoch <= 3; ++epoch) {
    set_state(bn, 10 + epoch);
    EXPECT_TRUE(none.after_epoch(epoch, std::nullopt, *bn));
    EXPECT_FALSE(none.should_stop());
  }
  none.restore_best(*bn);
  expect_state(bn, 13);

  EarlyStopping untrained(*bn, 1);  // before any epoch the state given at construction is the best
  set_state(bn, 99);
  untrained.restore_best(*bn);
  expect_state(bn, 13);
}

namespace {

PreparedData lists_of_lengths(const std::vector<int>& lengths) {
  PreparedData d;
  for (int n : lengths) {
    RerankList l;
    l.items.assign(static_cast<size_t>(n), 0);
    l.labels.assign(static_cast<size_t>(n), 0);
    d.lists.push_back(l);
  }
  return d;
}

}  // namespace

TEST(LengthBatches, InOrderByLengthWithoutRng) {
  PreparedData d = lists_of_lengths({10, 10, 5, 10, 5, 10, 10});
  std::vector<int64_t> all = {0, 1, 2, 3, 4, 5, 6};
  using B = std::vector<std::vector<int64_t>>;
  EXPECT_EQ(length_batches(d, all, 2), (B{{2, 4}, {0, 1}, {3, 5}, {6}}));
  // Positions into `lists`, not list indices; a list may be asked for twice.
  EXPECT_EQ(length_batches(d, {6, 2, 6}, 4), (B{{1}, {0, 2}}));
  EXPECT_TRUE(length_batches(d, {}, 4).empty());
}

TEST(LengthBatches, ShuffledBatchesCoverEveryListOnceWithoutSingletons) {
  std::vector<int> lengths;
  for (int i = 0; i < 103; ++i) lengths.push_back(i % 3 == 0 ? 10 : i % 3 == 1 ? 20 : 7);
  PreparedData d = lists_of_lengths(lengths);
  std::vector<int64_t> lists;
  for (int64_t i = 0; i < 103; ++i) lists.push_back(i);
  for (int batch : {2, 4, 5, 16, 64}) {
    std::mt19937_64 rng(7);
    for (int round = 0; round < 3; ++round) {
      auto batches = length_batches(d, lists, batch, &rng);
      std::multiset<int64_t> seen;
      for (const auto& b : batches) {
        ASSERT_FALSE(b.empty());
        EXPECT_GE(b.size(), 2u) << "batch " << batch;  // a batch of one is merged into its neighbour
        EXPECT_LE(b.size(), static_cast<size_t>(batch) + 1);
        for (int64_t p : b) {
          seen.insert(p);
          EXPECT_EQ(d.lists[static_cast<size_t>(lists[static_cast<size_t>(p)])].items.size(),
                    d.lists[static_cast<size_t>(lists[static_cast<size_t>(b[0])])].items.size());
        }
      }
      EXPECT_EQ(seen, std::multiset<int64_t>(lists.begin(), lists.end())) << "batch " << batch;
    }
  }
}

TEST(InRowChunks, ConsecutiveChunksCoverEveryRowOnceInOrder) {
  at::Tensor rows = at::arange(20, at::kFloat).view({10, 2});
  std::vector<int64_t> sizes, firsts;
  at::Tensor out = in_row_chunks(rows, 4, [&](const at::Tensor& x) {
    sizes.push_back(x.size(0));
    firsts.push_back(static_cast<int64_t>(x[0][0].item<float>()) / 2);
    return x * 3;
  });
  EXPECT_EQ(sizes, (std::vector<int64_t>{4, 4, 2}));
  EXPECT_EQ(firsts, (std::vector<int64_t>{0, 4, 8}));
  EXPECT_TRUE(at::equal(out, rows * 3));
  EXPECT_TRUE(at::equal(in_row_chunks(rows, 100, [](const at::Tensor& x) { return x + 1; }), rows + 1));
  EXPECT_FALSE(in_row_chunks(at::empty({0, 2}), 4, [](const at::Tensor& x) { return x; }).defined());
}

TEST(RerankConfigTest, TrainerKeysGoToTrainTheRestStayWithTheVerb) {
  ConfigFile f = ConfigFile::parse(
      "[rerank]\nthreads = 2\njobs = 3\nseed = 9\ndevice = \"cpu\"\ndtype = \"bf16\"\nknowledge_norm = \"none\"\n"
      "patience = 4\nweight_decay = 0.0\nembed_dim = 8\neval_batch = 16\n"
      "knowledge = \"none\"\ncache_dir = \"c\"\n",
      "t.toml");
  RerankConfig c;
  c.read(f.section("rerank"));
  EXPECT_EQ(c.train.threads, 2);
  EXPECT_EQ(c.train.seed, 9);
  EXPECT_EQ(c.train.device, "cpu");
  EXPECT_EQ(c.train.dtype, "bf16");
  EXPECT_EQ(c.train.knowledge_norm, "none");
  EXPECT_EQ(c.train.patience, 4);
  EXPECT_EQ(c.train.weight_decay, 0.0);
  EXPECT_EQ(c.train.embed_dim, 8);
  EXPECT_EQ(c.train.eval_batch, 16);
  EXPECT_EQ(c.jobs, 3);
  EXPECT_EQ(c.knowledge, "none");
  EXPECT_EQ(c.cache_dir, "c");
  auto read = [](const std::string& text) {
    RerankConfig r;
    r.read(ConfigFile::parse(text, "t.toml").section("rerank"));
  };
  EXPECT_NE(test::error_of([&] { read("[rerank]\nthreads = -1\n"); }).find("threads must be >= 0"), std::string::npos);
  EXPECT_NE(test::error_of([&] { read("[rerank]\njobs = -1\n"); }).find("jobs must be >= 0"), std::string::npos);
  EXPECT_NE(test::error_of([&] { read("[rerank]\npatience = 0\n"); }).find("t.toml [rerank]: patience"),
            std::string::npos);
  // Keys whose home is another section name it; unknown keys are found before values are checked.
  EXPECT_NE(test::error_of([&] { read("[rerank]\nseeds = [1]\n"); }).find("use [eval] seeds"), std::string::npos);
  EXPECT_NE(test::error_of([&] { read("[rerank]\nencoder = \"hash\"\n"); }).find("use [knowledge] encoder"),
            std::string::npos);
  EXPECT_NE(test::error_of([&] { read("[rerank]\npatience = 0\nepoch = 3\n"); }).find("epoch"), std::string::npos);
}
