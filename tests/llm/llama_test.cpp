// The Llama-family forward against references: the shared tinystories greedy reference, and the
// goldens of tools/ref/llm_llama_ref.py (Llama-3.1-shaped sharded bf16 checkpoint with llama3
// rope scaling and GQA, Qwen2 with biases and tied F16 weights, Mistral with a sliding window).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <functional>
#include <set>
#include <torch/csrc/autograd/grad_mode.h>

#include "llm/checkpoint.h"
#include "llm/llm_test_util.h"
#include "llm/safetensors.h"

using namespace rlrf::llm;
using namespace rlrf::llm::testing;

namespace {

// Compares a golden case's logits; left-padded rows are compared at their real tokens only.
double check_case(LlamaForCausalLM& model, const json& c, double tol, const std::string& label) {
  at::Tensor ids = ids_tensor(c["ids"]), pos = ids_tensor(c["positions"]);
  at::Tensor valid = c["key_valid"].is_null() ? at::Tensor() : bool_tensor(c["key_valid"]);
  at::Tensor got = logits_of(model, ids, pos, valid);
  std::vector<float> flat;
  for (const json& v : c["logits"]) flat.push_back(v.get<float>());
  at::Tensor want = at::tensor(flat).view(got.sizes());
  if (valid.defined()) {
    at::Tensor m = valid.unsqueeze(-1).expand_as(got);
    got = got.masked_select(m);
    want = want.masked_select(m);
  }
  double d = max_abs_diff(got, want);
  std::printf("  %-28s max |logit - ref| = %.3g\n", label.c_str(), d);
  EXPECT_LT(d, tol) << label;
  return d;
}

}  // namespace

TEST(Llama, TinyStoriesNextTokenLogitsMatchGreedyReference) {
  RLRF_REQUIRE_TINYSTORIES();
  LlamaForCausalLM model = load(tinystories_dir());
  for (const json& ref : greedy_reference()) {
    std::vector<int64_t> ids;
    for (const json& v : ref["prompt_ids"]) ids.push_back(v.get<int64_t>());
    at::Tensor logits = logits_of(model, at::tensor(ids, at::kLong).unsqueeze(0)).select(1, ids.size() - 1)[0];
    double d = 0;
    for (size_t i = 0; i < 16; ++i) d = std::max(d, std::abs(logits[i].item<double>() - ref["next_token_logits_first16"][i].get<double>()));
    for (const json& p : ref["next_token_logits_top5"])
      d = std::max(d, std::abs(logits[p[0].get<int64_t>()].item<double>() - p[1].get<double>()));
    std::printf("  %-50s max |logit - ref| = %.3g\n", ref["prompt"].get<std::string>().c_str(), d);
    EXPECT_LT(d, 1e-3);
    EXPECT_EQ(logits.argmax().item<int64_t>(), ref["next_token_logits_top5"][0][0].get<int64_t>());
  }
}

TEST(Llama, ParametersCarryTheCheckpointNames) {
  RLRF_REQUIRE_TINYSTORIES();
  LlamaForCausalLM model = load(tinystories_dir());
  TensorStore store = TensorStore::open(tinystories_dir());
  std::set<std::string> params;
  for (auto& p : model->named_parameters()) params.insert(p.key());
  EXPECT_TRUE(params.count("model.embed_tokens.weight"));
  EXPECT_TRUE(params.count("model.layers.1.self_attn.q_proj.weight"));
  EXPECT_TRUE(params.count("model.layers.0.post_attention_layernorm.weight"));
  EXPECT_FALSE(params.count("lm_head.weight"));  // tied: one matrix
  for (const std::string& p : params) EXPECT_TRUE(store.contains(p)) << p;
  int64_t n = 0;
  for (auto& p : model->parameters()) n += p.numel();
  EXPECT_EQ(n, model->config().num_parameters());
}

TEST(Llama, Llama31ShapedShardedBf16CheckpointMatchesReference) {
  LlamaForCausalLM model = load(data_dir() / "tiny-llama31");  // bf16 weights, fp32 compute
  EXPECT_EQ(model->model->layer_list[0]->self_attn->q_proj->weight.sizes(), (at::IntArrayRef{64, 32}));
  int64_t n = 0;
  for (auto& p : model->parameters()) n += p.numel();
  EXPECT_EQ(n, model->config().num_parameters());
  for (const json& c : goldens()["tiny-llama31"]["cases"]) {
    const std::string name = c["name"];
    if (name == "lora") continue;  // lora_test
    if (name == "bf16") {
      // bf16 compute follows HF's bf16 op order: equal up to one bf16 ulp (1/64 at |logit| < 4),
      // while the fp32 model differs from the bf16 reference visibly.
      LlamaForCausalLM m16 = load(data_dir() / "tiny-llama31", at::kBFloat16);
      check_case(m16, c, 0.02, "tiny-llama31/bf16 compute");
      EXPECT_GT(check_case(model, c, 0.1, "tiny-llama31/fp32 vs bf16 ref"), 1e-3);
      continue;
    }
    check_case(model, c, 1e-4, "tiny-llama31/" + name);
  }
}

TEST(Llama, Qwen2AndMistralMatchReference) {
  for (const char* name : {"tiny-qwen2", "tiny-mistral"}) {
    LlamaForCausalLM model = load(data_dir() / name);
    for (const json& c : goldens()[name]["cases"]) check_case(model, c, 1e-4, std::string(name) + "/" + c["name"].get<std::string>());
  }
}

TEST(Llama, Bf16ComputeStaysCloseToFp32) {
  RLRF_REQUIRE_TINYSTORIES();
  LlamaForCausalLM m32 = load(tinystories_dir());
  LlamaForCausalLM m16 = load(tinystories_dir(), at::kBFloat16);
  EXPECT_EQ(m16->model->embed_tokens->weight.scalar_type(), at::kBFloat16);
  at::Tensor ids = ids_tensor(json::array({greedy_reference()[1]["prompt_ids"]}));
  at::Tensor a = logits_of(m32, ids), b = logits_of(m16, ids);
  double d = max_abs_diff(a, b);
  std::printf("  tinystories bf16 vs fp32: max |dlogit| = %.3g (logits span %.1f)\n", d,
              (a.max() - a.min()).item<double>());
  EXPECT_LT(d, 0.5);
  EXPECT_TRUE(at::equal(a.argmax(-1), b.argmax(-1)));
}

TEST(Llama, KVCacheStepsEqualOneFullForward) {
  RLRF_REQUIRE_TINYSTORIES();
  LlamaForCausalLM model = load(tinystories_dir());
  at::Tensor ids = ids_tensor(json::array({greedy_reference()[1]["prompt_ids"]}));  // [1, 9]
  at::Tensor full = logits_of(model, ids);
  c10::InferenceMode guard;
  KVCache cache = KVCache::allocate(model->config(), 1, 16, model->options().tensor_options());
  at::Tensor part = model->forward(ids.narrow(1, 0, 4), {}, {}, &cache);  // prefill 4
  EXPECT_EQ(cache.length, 4);
  std::vector<at::Tensor> steps = {part};
  for (int64_t t = 4; t < 9; ++t) steps.push_back(model->forward(ids.narrow(1, t, 1), {}, {}, &cache));
  EXPECT_EQ(cache.length, 9);
  double d = max_abs_diff(at::cat(steps, 1), full);
  EXPECT_LT(d, 1e-4) << d;
}

TEST(Llama, FusedInferencePathEqualsSeparateProjections) {
  // Without grad, q/k/v and gate/up run as one matmul each over shared buffers; with grad they
  // run separately. Both must give the same logits, also after in-place weight updates.
  for (const char* name : {"tiny-llama31", "tiny-qwen2"}) {
    LlamaForCausalLM model = load(data_dir() / name);
    at::Tensor ids = ids_tensor(json::array({json::array({1, 17, 42, 5, 88, 63, 29})}));
    {
      torch::NoGradGuard no_grad;
      for (auto& p : model->parameters()) p.add_(at::randn_like(p) * 0.01);  // as an optimizer step would
    }
    at::Tensor fused = logits_of(model, ids);
    at::Tensor separate = model->forward(ids).detach();
    ASSERT_TRUE(separate.defined());
    double d = max_abs_diff(fused, separate);
    EXPECT_LT(d, 1e-5) << name << ": " << d;
  }
}

TEST(Llama, RmsNormInferenceLoopEqualsTheTensorExpression) {
  // Without grad on the CPU, RMSNorm runs as one loop per row; with grad, as the HF expression in
  // ATen ops (fp32 statistics, normalised rows rounded to the input dtype, then the weight). Both
  // must agree: fp32 to rounding, bf16 to one unit in the last place of the output.
  for (at::ScalarType dt : {at::kFloat, at::kBFloat16}) {
    RMSNorm norm(100, 1e-6, at::TensorOptions().dtype(dt));
    {
      torch::NoGradGuard no_grad;
      norm->weight.copy_(at::randn({100}) * 0.5 + 1);
    }
    const at::Tensor x = (at::randn({3, 5, 100}) * 4).to(dt);
    at::Tensor loop;
    {
      torch::NoGradGuard no_grad;
      loop = norm->forward(x);
    }
    const at::Tensor expression = norm->forward(x).detach();  // grad mode: the ATen path
    const double scale = expression.abs().max().item<double>();
    EXPECT_LT(max_abs_diff(loop.to(at::kFloat), expression.to(at::kFloat)), dt == at::kFloat ? 1e-6 * scale : 1e-2 * scale)
        << c10::toString(dt);
    EXPECT_EQ(loop.scalar_type(), dt);
  }
}

namespace {

// Left-padded prompts (row b padded by pad x b slots) and `steps` next tokens of random ids.
// decode(): a prefill into a cache and one decoding step a token; the logits in fp32, the prefill's
// first when asked ([B, P + steps, V]) or the steps' only ([B, steps, V]).
struct PaddedDecode {
  int64_t B, P, steps;
  at::Tensor prompt, next, valid, pos;
  PaddedDecode(int64_t vocab, int64_t rows, int64_t prompt_len, int64_t n_steps, int64_t pad)
      : B(rows), P(prompt_len), steps(n_steps) {
    prompt = at::randint(3, vocab, {B, P}, at::kLong);
    next = at::randint(3, vocab, {B, steps}, at::kLong);
    valid = at::zeros({B, P + steps}, at::kBool);
    pos = at::zeros({B, P}, at::kLong);
    for (int64_t b = 0; b < B; ++b) {
      valid[b].narrow(0, pad * b, P - pad * b).fill_(true);
      pos[b].narrow(0, pad * b, P - pad * b).copy_(at::arange(0, P - pad * b, at::kLong));
    }
  }
  at::Tensor decode(LlamaForCausalLM& model, bool with_prefill) const {
    c10::InferenceMode guard;
    KVCache cache = KVCache::allocate(model->config(), B, P + steps, model->options().tensor_options());
    at::Tensor first = model->forward(prompt, pos, valid.narrow(1, 0, P), &cache).to(at::kFloat);
    std::vector<at::Tensor> out;
    if (with_prefill) out.push_back(first);
    at::Tensor npos = pos.select(1, P - 1).unsqueeze(1) + 1;
    at::Tensor v = valid.clone();
    for (int64_t t = 0; t < steps; ++t) {
      v.select(1, cache.length).fill_(true);
      out.push_back(model->forward(next.narrow(1, t, 1), npos + t, v.narrow(1, 0, cache.length + 1), &cache).to(at::kFloat));
    }
    return at::cat(out, 1);
  }
};

}  // namespace

TEST(Llama, OnePassSoftmaxEqualsATensOperators) {
  // bf16 CPU inference takes attention's mask add and softmax in one pass (attention_softmax.h):
  // a left-padded prefill and decoding steps after it must give the logits of ATen's operators to
  // bf16 rounding (the probabilities differ by at most one bf16 step, rarely).
  RLRF_REQUIRE_TINYSTORIES();
  LlamaForCausalLM model = load(tinystories_dir(), at::kBFloat16);
  const int64_t B = 3, P = 24, steps = 6;
  const PaddedDecode batch(model->config().vocab_size, B, P, steps, /*pad=*/5);
  const at::Tensor valid = batch.valid;
  auto run = [&](bool one_pass) {
    model->set_one_pass_softmax(one_pass);
    model->set_fused_attention(false);  // the decoding steps' softmax too
    return batch.decode(model, /*with_prefill=*/true);
  };
  const at::Tensor aten = run(false), one_pass = run(true);
  model->set_one_pass_softmax(true);
  model->set_fused_attention(true);
  at::Tensor m = at::cat({valid.narrow(1, 0, P), at::ones({B, steps}, at::kBool)}, 1).unsqueeze(-1).expand_as(aten);
  const double d = max_abs_diff(one_pass.masked_select(m), aten.masked_select(m));
  EXPECT_LT(d, 0.1) << "max |dlogit| " << d;
  EXPECT_GT(aten.masked_select(m).abs().max().item<double>(), 1.0);
  std::printf("  max |dlogit| %.3g (logits up to %.1f)\n", d, aten.masked_select(m).abs().max().item<double>());
}

namespace {

// A one-pass CPU inference path against ATen's operators, switched by `set(model, on)`: a
// left-padded prefill and eight decoding steps must give ATen's logits at every real position (pad
// positions are never read) in fp32 to summation-order noise. In bf16 ATen rounds intermediates to
// bf16 where the one pass does not: both are compared with the fp32 model's logits, and the one pass
// must be at least as close to them.
void expect_one_pass_equals_aten(const std::function<void(LlamaForCausalLM&, bool)>& set, uint64_t seed) {
  at::Tensor fp32_logits;
  for (at::ScalarType dt : {at::kFloat, at::kBFloat16}) {
    LlamaForCausalLM model = load(tinystories_dir(), dt);
    at::manual_seed(seed);
    const PaddedDecode batch(model->config().vocab_size, /*rows=*/3, /*prompt_len=*/24, /*n_steps=*/8, /*pad=*/7);
    const at::Tensor real =  // [B, P + steps, 1]: the prompt's real positions and every step
        at::cat({batch.valid.narrow(1, 0, batch.P), at::ones({batch.B, batch.steps}, at::kBool)}, 1).unsqueeze(-1);
    auto run = [&](bool one_pass) {
      set(model, one_pass);
      return batch.decode(model, /*with_prefill=*/true).masked_fill(real.logical_not(), 0.0);  // [B, P + steps, V]
    };
    const at::Tensor aten = run(false), one_pass = run(true);
    set(model, true);
    const double d = max_abs_diff(one_pass, aten), top = aten.abs().max().item<double>();
    EXPECT_GT(top, 1.0);
    std::printf("  %s: max |dlogit| %.3g against ATen (logits up to %.1f)\n", c10::toString(dt), d, top);
    if (dt == at::kFloat) {
      EXPECT_LT(d, 1e-4) << "fp32: max |dlogit| " << d;
      fp32_logits = aten;
      continue;
    }
    const double n = real.sum().item<double>() * static_cast<double>(model->config().vocab_size);
    const double err_one = (one_pass - fp32_logits).abs().sum().item<double>() / n;
    const double err_aten = (aten - fp32_logits).abs().sum().item<double>() / n;
    EXPECT_LT(d, 1.0) << "bf16: max |dlogit| " << d;
    EXPECT_LE(err_one, err_aten * 1.05) << "bf16 mean |dlogit| from fp32: one pass " << err_one << ", ATen " << err_aten;
    std::printf("  bf16 mean |dlogit| from the fp32 model: one pass %.4f, ATen %.4f\n", err_one, err_aten);
  }
}

}  // namespace

TEST(Llama, FusedAttentionEqualsATensOperators) {
  // CPU inference takes attention in one pass (cpu_attention.h), prefill and decoding steps alike;
  // in bf16 ATen rounds the scores and probabilities to bf16 and the kernel does not.
  RLRF_REQUIRE_TINYSTORIES();
  expect_one_pass_equals_aten([](LlamaForCausalLM& m, bool on) { m->set_fused_attention(on); }, 5);
}

TEST(Llama, OnePassSwigluEqualsATensOperators) {
  // CPU inference takes the MLP's silu(gate) * up in one pass (swiglu.h); in bf16 ATen rounds
  // silu's output before the product and the kernel does not.
  RLRF_REQUIRE_TINYSTORIES();
  expect_one_pass_equals_aten([](LlamaForCausalLM& m, bool on) { m->set_one_pass_swiglu(on); }, 9);
}

TEST(Llama, PrefillAttentionInRowGroupsEqualsAllRowsAtOnce) {
  // A bf16 CPU prefill without gradients computes attention a few batch rows at a time
  // (set_attention_chunk_bytes); left-padded prompts of different lengths, a cache as generation
  // uses it: the logits and the cached keys must equal those of all rows at once to
  // rounding (the batched matmuls may block a different number of rows differently).
  RLRF_REQUIRE_TINYSTORIES();
  for (at::ScalarType dt : {at::kBFloat16}) {
    LlamaForCausalLM model = load(tinystories_dir(), dt);
    model->set_fused_attention(false);  // the ATen path, whose row groups are tested here
    const int64_t B = 5, T = 40, V = model->config().vocab_size;
    at::Tensor ids = at::randint(3, V, {B, T}, at::kLong);
    at::Tensor valid = at::ones({B, T}, at::kBool), pos = at::zeros({B, T}, at::kLong);
    for (int64_t b = 0; b < B; ++b) {
      const int64_t pad = 7 * b;  // row b is left-padded by 7b slots
      valid[b].narrow(0, 0, pad).fill_(false);
      pos[b].narrow(0, pad, T - pad).copy_(at::arange(0, T - pad, at::kLong));
    }
    auto prefill = [&](int64_t chunk_bytes) {
      model->set_attention_chunk_bytes(chunk_bytes);
      c10::InferenceMode guard;
      KVCache cache = KVCache::allocate(model->config(), B, T + 4, model->options().tensor_options());
      at::Tensor logits = model->forward(ids, pos, valid, &cache).to(at::kFloat);
      return std::make_pair(logits, cache.keys[1].narrow(3, 0, T).to(at::kFloat));  // layer 1 reads layer 0's attention
    };
    const int64_t row_bytes = model->config().num_attention_heads * T * T * 4;
    const auto [all_logits, all_keys] = prefill(0);
    for (int64_t rows : {1, 2}) {
      const auto [logits, keys] = prefill(rows * row_bytes);
      at::Tensor m = valid.unsqueeze(-1).expand_as(logits);
      const double d = max_abs_diff(logits.masked_select(m), all_logits.masked_select(m));
      EXPECT_LT(d, 1e-2) << c10::toString(dt) << ", " << rows << " row(s) at a time: " << d;
      const double dk = max_abs_diff(keys, all_keys);
      EXPECT_LT(dk, 1e-2) << c10::toString(dt) << ", " << rows << " row(s): keys " << dk;
      std::printf("  %s, %lld row(s) at a time: max |dlogit| %.3g, max |dkey| %.3g\n", c10::toString(dt),
                  static_cast<long long>(rows), d, dk);
    }
    model->set_attention_chunk_bytes(LlamaForCausalLMImpl::kDefaultAttentionChunkBytes);
  }
}
