// The rerank models against the plain-PyTorch reference (tools/ref/rerank_ref.py): same weights and
// inputs, compare scores in eval and train mode, the BCE loss, every parameter's gradient and the
// batch-norm running statistics. Plus shapes of the adapter at the paper's sizes.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <functional>
#include <tuple>

#include "runtime/autocast.h"
#include <torch/csrc/autograd/autograd.h>
#include <torch/nn/modules/rnn.h>

#include "rerank/adapter.h"
#include "rerank/batch_norm_rows.h"
#include "rerank/expert_mixture.h"
#include "rerank/gru.h"
#include "rerank/model.h"
#include "rerank/prm.h"
#include "rerank/prm_attention.h"
#include "rerank/slot_input.h"
#include "util/error.h"
#include "util/files.h"
#include "runtime/runtime.h"

using namespace rlrf;
using nlohmann::json;

namespace {

json load_golden(const std::string& name) {
  fs::path p = source_dir() / "tests" / "data" / "rerank" / name;
  return json::parse(read_file(p));
}

at::Tensor tensor_of(const json& j, at::ScalarType st = at::kFloat) {
  // Nested lists -> tensor (shape from nesting).
  std::vector<int64_t> shape;
  const json* cur = &j;
  while (cur->is_array()) {
    shape.push_back(static_cast<int64_t>(cur->size()));
    if (cur->empty()) break;
    cur = &(*cur)[0];
  }
  std::vector<double> flat;
  std::function<void(const json&)> walk = [&](const json& x) {
    if (x.is_array()) for (const auto& e : x) walk(e);
    else flat.push_back(x.get<double>());
  };
  walk(j);
  return at::tensor(flat, at::kDouble).reshape(shape).to(st);
}

at::Tensor flat_of(const json& j, at::IntArrayRef shape, at::ScalarType st) {
  return tensor_of(j, st).reshape(shape);
}

double max_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

RerankerShape shape_of(const json& s) {
  RerankerShape r;
  r.model = s["model"];
  r.n_items = s["n_items"];
  r.attribute_cardinality = s["attribute_cardinality"].get<std::vector<int64_t>>();
  r.embed_dim = s["embed_dim"];
  r.user_dim = s["user_dim"];
  r.item_dim = s["item_dim"];
  r.shared_experts = s["shared_experts"];
  r.specific_experts = s["specific_experts"];
  r.expert_hidden = s["expert_hidden"];
  r.expert_out = s["expert_out"];
  r.gru_hidden = s["gru_hidden"];
  r.heads = s["heads"];
  r.prm_mlp = s["prm_mlp"].get<std::vector<int64_t>>();
  return r;
}

// Loads every parameter and buffer by name; fails on any name the golden and the model do not share.
void load_weights(RerankerModelImpl& m, const json& g) {
  torch::NoGradGuard guard;
  auto params = m.named_parameters();
  EXPECT_EQ(params.size(), g["params"].size()) << "parameter count differs from the reference";
  for (auto& p : params) {
    ASSERT_TRUE(g["params"].contains(p.key())) << "reference lacks parameter " << p.key();
    const json& e = g["params"][p.key()];
    ASSERT_EQ(p.value().sizes(), at::IntArrayRef(e["shape"].get<std::vector<int64_t>>())) << p.key();
    p.value().copy_(flat_of(e["data"], p.value().sizes(), at::kFloat));
  }
  for (auto& b : m.named_buffers()) {
    if (!g["buffers"].contains(b.key())) {
      ADD_FAILURE() << "reference lacks buffer " << b.key();
      continue;
    }
    const json& e = g["buffers"][b.key()];
    b.value().copy_(flat_of(e["data"], b.value().sizes(), b.value().scalar_type()));
  }
}

struct Inputs {
  at::Tensor items, attrs, user_vec, item_vec, labels;
};

Inputs inputs_of(const json& g) {
  const json& in = g["inputs"];
  return {tensor_of(in["items"], at::kLong), tensor_of(in["attrs"], at::kLong), tensor_of(in["user_vec"]),
          tensor_of(in["item_vec"]), tensor_of(in["labels"])};
}

// tables: the knowledge features as tables read through an index (rows in reverse order), as the
// trainer passes a batch's distinct users and items; otherwise one row per list and per slot.
at::Tensor logits_of(RerankerModelImpl& m, const Inputs& in, bool tables) {
  const int64_t b = in.items.size(0), l = in.items.size(1);
  if (tables) {
    const at::Tensor users_reversed = at::arange(b - 1, -1, -1, at::kLong);
    const at::Tensor slots_reversed = at::arange(b * l - 1, -1, -1, at::kLong);
    KnowledgeRows users{m.adapt_users(in.user_vec.index_select(0, users_reversed)), users_reversed};
    KnowledgeRows items{m.adapt_items(in.item_vec.reshape({b * l, -1}).index_select(0, slots_reversed)),
                        slots_reversed.view({b, l})};
    return m.forward(in.items, in.attrs, users, items);
  }
  at::Tensor uf = m.adapt_users(in.user_vec);
  at::Tensor itf = m.adapt_items(in.item_vec.reshape({b * l, -1})).view({b, l, -1});
  return m.forward(in.items, in.attrs, uf, itf);
}

void check_against_reference(const std::string& file, bool tables) {
  SCOPED_TRACE(tables ? "knowledge features as tables" : "knowledge features per slot");
  init_threads(1);
  json g = load_golden(file);
  RerankerModel m(shape_of(g["shape"]));
  load_weights(*m, g);
  Inputs in = inputs_of(g);

  m->eval();
  {
    torch::NoGradGuard ng;
    at::Tensor scores = at::sigmoid(logits_of(*m, in, tables));
    double d = max_diff(scores, tensor_of(g["eval_scores"]));
    EXPECT_LT(d, 2e-6) << file << " eval scores max diff " << d;
  }

  m->train();
  at::Tensor logits = logits_of(*m, in, tables);
  at::Tensor scores = at::sigmoid(logits);
  double d = max_diff(scores, tensor_of(g["train_scores"]));
  EXPECT_LT(d, 2e-6) << file << " train scores max diff " << d;
  at::Tensor loss = at::binary_cross_entropy_with_logits(logits, in.labels);
  EXPECT_NEAR(loss.item<double>(), g["train_loss"].get<double>(), 2e-6) << file << " loss";
  loss.backward();
  for (const auto& p : m->named_parameters()) {
    ASSERT_TRUE(p.value().grad().defined()) << p.key() << " got no gradient";
    at::Tensor want = flat_of(g["grads"][p.key()], p.value().sizes(), at::kFloat);
    double gd = max_diff(p.value().grad(), want);
    double scale = std::max(1.0, want.abs().max().item<double>());
    EXPECT_LT(gd / scale, 2e-5) << file << " grad of " << p.key() << " max diff " << gd;
  }
  for (const auto& b : m->named_buffers()) {
    if (!g["buffers_after_train"].contains(b.key())) continue;
    at::Tensor want = flat_of(g["buffers_after_train"][b.key()], b.value().sizes(), at::kFloat);
    EXPECT_LT(max_diff(b.value(), want), 2e-6) << file << " buffer " << b.key() << " after one train step";
  }
}

}  // namespace

TEST(RerankModel, DlcmMatchesReference) {
  check_against_reference("golden_dlcm.json", false);
  check_against_reference("golden_dlcm.json", true);
}
TEST(RerankModel, PrmMatchesReference) {
  check_against_reference("golden_prm.json", false);
  check_against_reference("golden_prm.json", true);
}

// The scorer's first layer from the input's pieces (rerank/slot_input.h) against the same layer on
// the concatenated rows in fp64: a piece already one row per slot, a small table read by index
// (projected, then gathered), a table with more rows than slots (gathered, then projected) and a
// piece over the whole row added to the others (PRM's positions). Outputs, and the gradients of the
// weight, the bias and every table, agree, through ATen's ops (fp64) and through the one-node path
// (fp32 CPU); the rows themselves are the concatenation.
TEST(RerankModel, SlotPiecesProjectAsTheirRows) {
  at::manual_seed(11);
  const int64_t b = 3, l = 4, s = b * l, d = 7, out = 5;
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  const std::vector<at::Tensor> values{at::randn({s, 2}, f64), at::randn({3, 2}, f64), at::randn({s + 5, 3}, f64),
                                       at::randn({l, d}, f64), at::randn({out, d}, f64), at::randn({out}, f64),
                                       at::randn({3, d + 2}, f64), at::randn({3}, f64)};
  const at::Tensor small_index = at::randint(0, 3, {s}, at::kLong), large_index = at::randint(0, s + 5, {s}, at::kLong);
  const at::Tensor position = at::arange(l, at::kLong).repeat({b});
  const at::Tensor mix = at::randn({s, out + 3}, f64);
  // params: rows, small, large, whole, w, bias, and a second layer (w2, bias2) that reads the row from
  // its column 2 (as PRM's MLP reads h after the attention's output).
  auto input_of = [&](const std::vector<at::Tensor>& p) {
    SlotInput in;
    in.lists = b;
    in.length = l;
    in.width = d;
    in.pieces = {{p[1], small_index, 0}, {p[0], {}, 2}, {p[2], large_index, 4}, {p[3], position, 0}};
    return in;
  };
  std::vector<at::Tensor> ref;
  for (const at::Tensor& v : values) ref.push_back(v.clone().requires_grad_(true));
  const at::Tensor want_rows =
      at::cat({ref[1].index_select(0, small_index), ref[0], ref[2].index_select(0, large_index)}, 1) +
      ref[3].index_select(0, position);
  const at::Tensor want =
      at::cat({at::addmm(ref[5], want_rows, ref[4].t()), at::addmm(ref[7], want_rows, ref[6].narrow(1, 2, d).t())}, 1);
  const auto want_grads = torch::autograd::grad({(want * mix).sum()}, ref);
  EXPECT_LT(max_diff(materialize_slots(input_of(ref)).view({s, d}), want_rows), 1e-14);
  for (at::ScalarType dtype : {at::kDouble, at::kFloat}) {
    SCOPED_TRACE(dtype == at::kDouble ? "fp64, ATen's ops" : "fp32, one node");
    const double tol = dtype == at::kDouble ? 1e-12 : 1e-5;
    std::vector<at::Tensor> params;
    for (const at::Tensor& v : values) params.push_back(v.to(dtype).requires_grad_(true));
    const std::vector<at::Tensor> layers =
        project_slots(input_of(params), {{params[4], params[5], 0}, {params[6], params[7], 2}});
    ASSERT_EQ(layers.size(), 2u);
    const at::Tensor got = at::cat(layers, 1);
    EXPECT_LT(max_diff(got, want) / want.abs().max().item<double>(), tol);
    const auto got_grads = torch::autograd::grad({(got * mix.to(dtype)).sum()}, params);
    for (size_t i = 0; i < params.size(); ++i)
      EXPECT_LT(max_diff(got_grads[i], want_grads[i]) / want_grads[i].abs().max().item<double>(), tol)
          << "gradient " << i << " (rows, small, large, whole, w, bias, w2, bias2)";
  }
  // Bad pieces name what is wrong.
  SlotInput bad = input_of(values);
  bad.pieces[0].index = small_index.narrow(0, 0, s - 1);
  EXPECT_THROW(project_slots(bad, values[4], values[5]), Error);
  bad = input_of(values);
  bad.pieces[2].column = 5;  // 3 columns from 5 overflow a row of 7
  EXPECT_THROW(project_slots(bad, values[4], values[5]), Error);
  bad = input_of(values);
  bad.pieces.erase(bad.pieces.begin() + 1);  // columns 2-3 left empty
  EXPECT_THROW(materialize_slots(bad), Error);
}

// DLCM's batch norm over rows as one node (rerank/batch_norm_rows.h) against torch::nn::BatchNorm1d
// run in fp64 on the same values: training outputs, the gradients of the input, weight and bias,
// the running statistics and num_batches_tracked after two steps; eval mode is the module itself.
TEST(RerankModel, BatchNormRowsMatchesBatchNorm1d) {
  at::manual_seed(5);
  // (Two rows normalise to -1 and 1 whatever x is: a zero input gradient, not a test of it.)
  for (auto [n, c] : {std::pair<int64_t, int64_t>{3, 5}, {64, 64}, {640, 64}}) {
    torch::nn::BatchNorm1d ours(c), ref(c);
    ref->to(at::kDouble);
    {
      torch::NoGradGuard ng;
      ours->weight.normal_();
      ours->bias.normal_();
      ref->weight.copy_(ours->weight);
      ref->bias.copy_(ours->bias);
    }
    for (int step = 0; step < 2; ++step) {
      const at::Tensor x = (at::randn({n, c}) * 3 + 1).requires_grad_(true);
      const at::Tensor x64 = x.detach().to(at::kDouble).requires_grad_(true);
      const at::Tensor mix = at::randn({n, c});
      const at::Tensor y = batch_norm_rows(*ours, x), want = ref->forward(x64);
      EXPECT_LT(max_diff(y, want), 2e-5) << n << "x" << c;
      const auto got = torch::autograd::grad({(y * mix).sum()}, {x, ours->weight, ours->bias});
      const auto exp = torch::autograd::grad({(want * mix.to(at::kDouble)).sum()}, {x64, ref->weight, ref->bias});
      for (size_t i = 0; i < got.size(); ++i)
        EXPECT_LT(max_diff(got[i], exp[i]) / (1e-3 + exp[i].abs().max().item<double>()), 2e-5)
            << "gradient " << i << " (x, weight, bias), " << n << "x" << c;
    }
    EXPECT_LT(max_diff(ours->running_mean, ref->running_mean), 1e-5);
    EXPECT_LT(max_diff(ours->running_var, ref->running_var), 1e-4);
    EXPECT_EQ(ours->num_batches_tracked.item<int64_t>(), 2);
    ours->eval();
    ref->eval();
    const at::Tensor x = at::randn({n, c});
    EXPECT_LT(max_diff(batch_norm_rows(*ours, x), ref->forward(x.to(at::kDouble))), 2e-5);
  }
}

TEST(RerankModel, PositionTableMatchesReference) {
  json g = load_golden("golden_prm.json");
  at::Tensor want = tensor_of(g["position_table_10x6"]);
  EXPECT_LT(max_diff(prm_position_table(10, 6), want), 1e-6);
  EXPECT_EQ(prm_position_table(3, 4)[0].abs().sum().item<float>(), 0.0f);  // row 0 is zeros (KAR)
}

TEST(RerankModel, AdapterShapesAtPaperSizes) {
  AdapterOptions o;
  o.in_dim = 100;  // GloVe 100-d
  HybridExpertAdapter a(o);
  EXPECT_EQ(a->shared->size(), 2u);
  EXPECT_EQ(a->specific->size(), 2u);
  EXPECT_EQ(a->specific[0]->as<torch::nn::ModuleListImpl>()->size(), 5u);
  auto out = a->forward({at::randn({3, 100}), at::randn({7, 100})});
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].sizes(), at::IntArrayRef({3, 32}));
  EXPECT_EQ(out[1].sizes(), at::IntArrayRef({7, 32}));
  EXPECT_GE(out[0].min().item<float>(), 0.0f);  // convex mix of ReLU outputs
  EXPECT_THROW(a->forward_tower(0, at::randn({3, 99})), Error);

  RerankerShape s;
  s.n_items = 10;
  s.attribute_cardinality = {5};
  s.user_dim = s.item_dim = 100;
  EXPECT_EQ(s.input_dim(), 32 + 32 + 64);  // item id + one attribute + adapter (2 x 32)
  RerankerModel m(s);
  at::Tensor items = at::randint(0, 10, {4, 10}, at::kLong), attrs = at::randint(0, 5, {4, 10, 1}, at::kLong);
  at::Tensor uf = m->adapt_users(at::randn({4, 100}));
  at::Tensor itf = m->adapt_items(at::randn({40, 100})).view({4, 10, -1});
  EXPECT_EQ(itf.sizes(), at::IntArrayRef({4, 10, 32}));
  EXPECT_EQ(m->forward(items, attrs, uf, itf).sizes(), at::IntArrayRef({4, 10}));
  s.user_dim = s.item_dim = 0;  // no knowledge: no adapter at all
  RerankerModel base(s);
  EXPECT_FALSE(base->adapter);
  EXPECT_EQ(s.input_dim(), 64);
  s.model = "prm";
  RerankerModel prm(s);
  EXPECT_EQ(prm->forward(items, attrs, at::Tensor{}, at::Tensor{}).sizes(), at::IntArrayRef({4, 10}));
  s.user_dim = 100;
  s.item_dim = 50;
  EXPECT_THROW(RerankerModel{s}, Error);  // shared experts need one input size
}

// DLCM's GRU as one autograd node (rerank/gru.h) against torch::nn::GRU: the same states and the
// same gradients for the input and the four parameters, whether the loss reads every state, the
// last one, or both; one-step lists too. Not taken under bf16 autocast or for other dtypes.
TEST(RerankModel, GruSequenceMatchesTorchGru) {
  at::manual_seed(7);
  for (auto [b, l, d, h] : {std::tuple<int64_t, int64_t, int64_t, int64_t>{3, 5, 7, 4}, {2, 1, 3, 6}, {64, 10, 64, 64}}) {
    torch::nn::GRU gru(torch::nn::GRUOptions(d, h).batch_first(true));
    const std::vector<at::Tensor> w = gru->all_weights();
    ASSERT_EQ(w.size(), 4u);
    for (int use = 0; use < 3; ++use) {  // 0: every state, 1: the last, 2: both
      at::Tensor x = at::randn({b, l, d}).requires_grad_(true);
      at::Tensor mix_seq = at::randn({b, l, h}), mix_last = at::randn({b, h});
      auto loss_of = [&](const at::Tensor& seq, const at::Tensor& last) {
        at::Tensor loss = at::zeros({});
        if (use != 1) loss = loss + (seq * mix_seq).sum();
        if (use != 0) loss = loss + (last * mix_last).sum();
        return loss;
      };
      auto grads = [&](const at::Tensor& loss) {
        std::vector<at::Tensor> inputs{x, w[0], w[1], w[2], w[3]};
        return torch::autograd::grad({loss}, inputs);
      };
      auto [seq_ref, last_ref] = gru->forward(x);
      const auto want = grads(loss_of(seq_ref, last_ref.squeeze(0)));
      ASSERT_TRUE(gru_sequence_applies(x, w[0]));
      auto [seq, last] = gru_sequence(x, w[0], w[1], w[2], w[3]);
      EXPECT_LT(max_diff(seq, seq_ref), 1e-6) << b << "x" << l;
      EXPECT_LT(max_diff(last, last_ref.squeeze(0)), 1e-6);
      const auto got = grads(loss_of(seq, last));
      for (size_t i = 0; i < got.size(); ++i)
        EXPECT_LT(max_diff(got[i], want[i]) / (1e-3 + want[i].abs().max().item<double>()), 1e-5)
            << "gradient " << i << " (0: input, 1-4: w_ih, w_hh, b_ih, b_hh), use " << use << ", " << b << "x" << l;
    }
  }
  at::Tensor x = at::randn({2, 3, 4});
  EXPECT_FALSE(gru_sequence_applies(x.to(at::kBFloat16), at::randn({12, 4})));
  {
    AutocastScope bf16(at::kBFloat16, at::kCPU);
    EXPECT_FALSE(gru_sequence_applies(x, at::randn({12, 4})));
  }
  EXPECT_TRUE(gru_sequence_applies(x, at::randn({12, 4})));
}

// PRM's attention core (one autograd node, plain loops) against ATen's matmul and softmax in fp64:
// outputs and the gradients of q, k and v, on several list lengths and head widths (odd ones too).
// The adapter tower as one node (fp32 CPU) against the same adapter through ATen's ops in fp64:
// outputs and the gradients of every parameter and of the input.
TEST(RerankModel, ExpertMixtureMatchesATenInFp64) {
  torch::manual_seed(11);
  struct Case {
    int64_t n, in, shared, specific, hidden, out, towers;
  };
  for (const Case& c : {Case{1, 5, 0, 1, 3, 2, 1}, Case{7, 9, 1, 2, 6, 4, 2}, Case{400, 100, 2, 5, 128, 32, 2},
                        Case{64, 17, 2, 0, 33, 5, 2}}) {
    AdapterOptions o;
    o.in_dim = c.in;
    o.towers = c.towers;
    o.shared_experts = c.shared;
    o.specific_experts = c.specific;
    o.hidden = c.hidden;
    o.out = c.out;
    HybridExpertAdapter a32(o), a64(o);
    {
      torch::NoGradGuard ng;
      auto src = a32->named_parameters();
      for (auto& p : src)  // biases too, so some ReLUs are off
        p.value().normal_(0, p.value().dim() == 2 ? 1.0 / std::sqrt(static_cast<double>(p.value().size(1))) : 0.5);
      for (auto& p : a64->named_parameters()) p.value().copy_(src[p.key()]);
    }
    a64->to(at::kDouble);
    const std::string shape = fmt::format("n {} in {} experts {}+{} hidden {} out {}", c.n, c.in, c.shared, c.specific,
                                          c.hidden, c.out);
    for (int64_t t = 0; t < c.towers; ++t) {
      at::Tensor x = at::randn({c.n, c.in}), gy = at::randn({c.n, c.out});
      at::Tensor x32 = x.clone().requires_grad_(true), x64 = x.to(at::kDouble).requires_grad_(true);
      ASSERT_TRUE(expert_mixture_applies(x32));
      ASSERT_FALSE(expert_mixture_applies(x64));  // the reference takes ATen's ops
      at::Tensor got = a32->forward_tower(t, x32), want = a64->forward_tower(t, x64);
      {  // the first expert's layer-1 ReLU is on for some units and off for others
        auto* e0 = (c.shared > 0 ? a64->shared[0] : a64->specific[t]->as<torch::nn::ModuleListImpl>()->ptr(0))
                       ->as<ExpertMlpImpl>();
        at::Tensor pre = e0->fc1->forward(x64.detach());
        EXPECT_GT((pre > 0).sum().item<int64_t>(), 0) << shape;
        EXPECT_GT((pre < 0).sum().item<int64_t>(), 0) << shape;
      }
      got.backward(gy);
      want.backward(gy.to(at::kDouble));
      auto rel = [](const at::Tensor& g, const at::Tensor& w) {
        return max_diff(g, w) / std::max(1.0, w.abs().max().item<double>());
      };
      EXPECT_LT(rel(got, want), 1e-5) << shape << " tower " << t;
      EXPECT_LT(rel(x32.grad(), x64.grad()), 1e-5) << shape << " tower " << t << " grad of x";
      auto want_p = a64->named_parameters();
      for (auto& p : a32->named_parameters()) {
        const at::Tensor& wg = want_p[p.key()].grad();
        if (!wg.defined()) {
          EXPECT_FALSE(p.value().grad().defined()) << p.key();
          continue;
        }
        ASSERT_TRUE(p.value().grad().defined()) << shape << " " << p.key() << " got no gradient";
        EXPECT_LT(rel(p.value().grad(), wg), 1e-5) << shape << " tower " << t << " grad of " << p.key();
      }
      a32->zero_grad();
      a64->zero_grad();
    }
  }
  at::Tensor x = at::randn({3, 4});
  EXPECT_FALSE(expert_mixture_applies(x.to(at::kBFloat16)));
  EXPECT_FALSE(expert_mixture_applies(at::randn({0, 4})));
  {
    AutocastScope bf16(at::kBFloat16, at::kCPU);
    EXPECT_FALSE(expert_mixture_applies(x));
  }
  EXPECT_THROW(expert_mixture(x, {at::randn({2, 4}), at::randn({2}), at::randn({3, 2}), at::randn({3}), at::randn({1, 5}),
                                  at::randn({1})}),
               rlrf::Error);  // the gate's width is not the input's
}

TEST(RerankModel, PrmAttentionCoreMatchesATenInFp64) {
  torch::manual_seed(5);
  for (auto [n, l, d] : {std::tuple<int64_t, int64_t, int64_t>{3, 1, 5}, {4, 10, 48}, {2, 13, 7}, {128, 10, 16}}) {
    at::Tensor q = at::randn({n, l, d}), k = at::randn({n, l, d}), v = at::randn({n, l, d}), go = at::randn({n, l, d});
    auto ref_in = [](const at::Tensor& t) { return t.to(at::kDouble).requires_grad_(true); };
    at::Tensor q64 = ref_in(q), k64 = ref_in(k), v64 = ref_in(v);
    at::Tensor want = at::matmul(at::softmax(at::matmul(q64, k64.transpose(1, 2)), -1), v64);
    want.backward(go.to(at::kDouble));
    at::Tensor q32 = q.clone().requires_grad_(true), k32 = k.clone().requires_grad_(true), v32 = v.clone().requires_grad_(true);
    ASSERT_TRUE(attention_core_applies(q32));
    at::Tensor got = attention_core(q32, k32, v32);
    got.backward(go);
    const std::string shape = std::to_string(n) + "x" + std::to_string(l) + "x" + std::to_string(d);
    EXPECT_LT(max_diff(got, want), 1e-5) << shape;
    EXPECT_LT(max_diff(q32.grad(), q64.grad()), 1e-5) << shape;
    EXPECT_LT(max_diff(k32.grad(), k64.grad()), 1e-5) << shape;
    EXPECT_LT(max_diff(v32.grad(), v64.grad()), 1e-5) << shape;
  }
  at::Tensor x = at::randn({2, 3, 4});
  EXPECT_FALSE(attention_core_applies(x.to(at::kBFloat16)));
  {
    AutocastScope bf16(at::kBFloat16, at::kCPU);
    EXPECT_FALSE(attention_core_applies(x));
  }
  EXPECT_THROW(attention_core(x, x, at::randn({2, 3, 5})), rlrf::Error);
}
