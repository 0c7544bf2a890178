// Generation: greedy goldens (tinystories and the tiny reference models), batched equals
// unbatched, per-sequence stops, seeded sampling reproducible and independent of the batch, and
// the sampler's distribution checked against hand-computed probabilities.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "llm/causal_lm.h"
#include "llm/generate.h"
#include "llm/llm_test_util.h"
#include "llm/sampler.h"
#include "util/error.h"

using namespace rlrf::llm;
using namespace rlrf::llm::testing;

namespace {

std::vector<GenerateRequest> golden_requests() {
  std::vector<GenerateRequest> reqs;
  for (const json& ref : greedy_reference()) reqs.push_back({to_ids(ref["prompt_ids"])});
  return reqs;
}

GenerateOptions greedy_options(int64_t n) {
  GenerateOptions o;
  o.max_new_tokens = n;
  o.sampling.temperature = 0;
  return o;
}

double max_diff(const std::vector<float>& a, const json& b) {
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) d = std::max(d, std::abs(a[i] - b[i].get<double>()));
  return d;
}

}  // namespace

TEST(Generate, GreedyReproducesTinyStoriesReference) {
  RLRF_REQUIRE_TINYSTORIES();
  LlamaForCausalLM model = load(tinystories_dir());
  auto out = generate(model, golden_requests(), greedy_options(64));  // both prompts in one batch
  for (size_t i = 0; i < out.size(); ++i) {
    const json& ref = greedy_reference()[i];
    EXPECT_EQ(out[i].ids, to_ids(ref["greedy_ids"])) << ref["prompt"];
    EXPECT_EQ(out[i].finish_reason, "length");
    double d = max_diff(out[i].logprobs, ref["greedy_token_logprobs"]);
    double sum = 0;
    for (int k = 0; k < 32; ++k) sum += out[i].logprobs[k];
    std::printf("  %-48s ids equal; max |dlogprob| %.3g; sum32 %.6f (ref %.6f)\n",
                ref["prompt"].get<std::string>().c_str(), d, sum, ref["greedy_logprob_sum_first32"].get<double>());
    EXPECT_LT(d, 1e-3);
    EXPECT_NEAR(sum, ref["greedy_logprob_sum_first32"].get<double>(), 1e-3);
  }
}

TEST(Generate, GreedyMatchesReferenceOnLlama31QwenAndMistralShapes) {
  for (const char* name : {"tiny-llama31", "tiny-qwen2", "tiny-mistral"}) {
    LlamaForCausalLM model = load(data_dir() / name);
    const json& g = goldens()[name]["greedy"];
    auto out = generate(model, {{to_ids(g["prompt"])}}, greedy_options(static_cast<int64_t>(g["ids"].size())));
    EXPECT_EQ(out[0].ids, to_ids(g["ids"])) << name;  // Mistral: 13 tokens > window of 4
    EXPECT_LT(max_diff(out[0].logprobs, g["logprobs"]), 1e-4) << name;
  }
}

TEST(Generate, BatchedEqualsUnbatched) {
  RLRF_REQUIRE_TINYSTORIES();
  LlamaForCausalLM model = load(tinystories_dir());
  std::vector<GenerateRequest> reqs = golden_requests();
  reqs.push_back({{1, 80}});                          // very short prompt: much left padding
  reqs.push_back({{1, 80, 875, 231, 401, 1844}});
  GenerateOptions o = greedy_options(40);
  o.batch_size = 4;
  auto batched = generate(model, reqs, o);
  for (size_t i = 0; i < reqs.size(); ++i) {
    auto alone = generate(model, {reqs[i]}, o);
    EXPECT_EQ(batched[i].ids, alone[0].ids) << "request " << i;
    double d = 0;
    for (size_t k = 0; k < alone[0].logprobs.size(); ++k) d = std::max<double>(d, std::abs(batched[i].logprobs[k] - alone[0].logprobs[k]));
    EXPECT_LT(d, 1e-4) << "request " << i;
  }
}

TEST(Generate, PerSequenceStopTokensEndOnlyTheirSequence) {
  RLRF_REQUIRE_TINYSTORIES();
  LlamaForCausalLM model = load(tinystories_dir());
  auto reqs = golden_requests();
  std::vector<int32_t> ref0 = to_ids(greedy_reference()[0]["greedy_ids"]);
  std::vector<int32_t> ref1 = to_ids(greedy_reference()[1]["greedy_ids"]);
  reqs[0].stop_ids = {ref0[5]};  // "named": request 0 stops at its 6th token
  auto out = generate(model, reqs, greedy_options(64));
  EXPECT_EQ(out[0].finish_reason, "stop");
  EXPECT_EQ(out[0].ids, std::vector<int32_t>(ref0.begin(), ref0.begin() + 6));
  EXPECT_EQ(out[1].ids, ref1);
  EXPECT_EQ(out[1].finish_reason, "length");

  // A stop token for every sequence; streaming sees each token once, in order.
  GenerateOptions o = greedy_options(64);
  o.stop_ids = {ref1[3]};
  std::map<size_t, std::vector<int32_t>> streamed;
  out = generate(model, golden_requests(), o, [&](size_t r, int32_t id) { streamed[r].push_back(id); });
  EXPECT_EQ(out[1].ids, std::vector<int32_t>(ref1.begin(), ref1.begin() + 4));
  for (size_t r = 0; r < 2; ++r) EXPECT_EQ(streamed[r], out[r].ids);
}

TEST(Generate, SeededSamplingIsReproducibleAndIndependentOfTheBatch) {
  RLRF_REQUIRE_TINYSTORIES();
  LlamaForCausalLM model = load(tinystories_dir());
  GenerateOptions o;
  o.max_new_tokens = 48;
  o.sampling = {0.9, 40, 0.95, 1234};
  std::vector<GenerateRequest> reqs = {{to_ids(greedy_reference()[0]["prompt_ids"]), 0},
                                       {to_ids(greedy_reference()[0]["prompt_ids"]), 1},
                                       {to_ids(greedy_reference()[1]["prompt_ids"]), 0},
                                       {{1, 80}, 0}};
  auto a = generate(model, reqs, o);
  auto b = generate(model, reqs, o);
  for (size_t i = 0; i < reqs.size(); ++i) EXPECT_EQ(a[i].ids, b[i].ids) << i;
  EXPECT_NE(a[0].ids, a[1].ids);  // two samples of one prompt differ
  // Alone, in another order, with another batch size: the same text.
  o.batch_size = 1;
  auto c = generate(model, {reqs[2]}, o);
  EXPECT_EQ(c[0].ids, a[2].ids);
  std::vector<GenerateRequest> reordered = {reqs[3], reqs[1], reqs[2], reqs[0]};
  o.batch_size = 3;
  auto d = generate(model, reordered, o);
  EXPECT_EQ(d[0].ids, a[3].ids);
  EXPECT_EQ(d[1].ids, a[1].ids);
  EXPECT_EQ(d[3].ids, a[0].ids);
  // Another seed, another text.
  o.sampling.seed = 99;
  auto e = generate(model, {reqs[0]}, o);
  EXPECT_NE(e[0].ids, a[0].ids);
}

// The N samples of one prompt share its prefill (one pass, cache rows copied); each must come out as
// it does when generated alone, next to a shorter prompt that forces left padding.
TEST(Generate, SamplesOfOnePromptSharePrefillAndMatchGenerationAlone) {
  RLRF_REQUIRE_TINYSTORIES();
  LlamaForCausalLM model = load(tinystories_dir());
  GenerateOptions o;
  o.max_new_tokens = 32;
  o.sampling = {1.0, 0, 0.95, 77};
  o.batch_size = 8;
  const std::vector<int32_t> p = to_ids(greedy_reference()[0]["prompt_ids"]);
  std::vector<GenerateRequest> reqs;
  for (int s = 0; s < 4; ++s) reqs.push_back({p, s});
  reqs.push_back({{1, 80}, 0});
  reqs.push_back({p, 4});
  auto together = generate(model, reqs, o);
  o.batch_size = 1;
  for (size_t i = 0; i < reqs.size(); ++i) {
    auto alone = generate(model, {reqs[i]}, o);
    EXPECT_EQ(together[i].ids, alone[0].ids) << "request " << i;
    ASSERT_EQ(together[i].logprobs.size(), alone[0].logprobs.size());
    double d = 0;
    for (size_t k = 0; k < alone[0].logprobs.size(); ++k)
      d = std::max<double>(d, std::abs(together[i].logprobs[k] - alone[0].logprobs[k]));
    EXPECT_LT(d, 1e-4) << "request " << i;
  }
  EXPECT_NE(together[0].ids, together[1].ids);
}

TEST(Generate, TopKOneAndTinyTopPAreGreedy) {
  RLRF_REQUIRE_TINYSTORIES();
  LlamaForCausalLM model = load(tinystories_dir());
  auto ref = generate(model, golden_requests(), greedy_options(24));
  GenerateOptions o = greedy_options(24);
  o.sampling = {1.3, 1, 1.0, 5};
  auto k1 = generate(model, golden_requests(), o);
  o.sampling = {1.0, 0, 1e-6, 5};
  auto p0 = generate(model, golden_requests(), o);
  for (size_t i = 0; i < ref.size(); ++i) {
    EXPECT_EQ(k1[i].ids, ref[i].ids);
    EXPECT_EQ(p0[i].ids, ref[i].ids);
    // Reported log-probs are the model's own (raw logits), whatever the sampling settings.
    for (size_t t = 0; t < ref[i].logprobs.size(); ++t) EXPECT_NEAR(k1[i].logprobs[t], ref[i].logprobs[t], 1e-5);
  }
}

TEST(Generate, BadRequestsAreRefused) {
  LlamaForCausalLM model = load(data_dir() / "tiny-mistral");
  EXPECT_THROW(generate(model, {{{}}}, greedy_options(4)), rlrf::Error);
  EXPECT_THROW(generate(model, {{{1, 999}}}, greedy_options(4)), rlrf::Error);
  auto out = generate(model, {{{1, 5}}}, greedy_options(0));
  EXPECT_TRUE(out[0].ids.empty());
  EXPECT_EQ(out[0].finish_reason, "length");
}

// The sampler against hand-computed distributions: 20000 draws per setting.
TEST(Sampler, FrequenciesFollowTemperatureTopKAndTopP) {
  const std::vector<float> row = {2.0f, 1.0f, 0.5f, 0.0f, -1.0f};
  at::Tensor logits = at::tensor(row).unsqueeze(0);
  auto softmax = [](std::vector<double> l, double t) {
    double m = *std::max_element(l.begin(), l.end()), s = 0;
    for (double& v : l) s += (v = std::exp((v - m) / t));
    for (double& v : l) v /= s;
    return l;
  };
  std::vector<double> l(row.begin(), row.end());
  struct Case {
    SamplingOptions opt;
    std::vector<double> expected;
  };
  std::vector<double> t07 = softmax(l, 0.7);
  std::vector<double> top3 = softmax({2.0, 1.0, 0.5}, 1.0);
  top3.resize(5, 0.0);
  // top_p = 0.8 at t = 1: p = [.5745 .2113 .1282 .0778 .0286]; mass before token 3 is .914 >= .8,
  // before token 2 it is .786 < .8: keep tokens 0..2, renormalised.
  std::vector<double> p = softmax(l, 1.0), nucleus = {p[0], p[1], p[2], 0, 0};
  double z = p[0] + p[1] + p[2];
  for (double& v : nucleus) v /= z;
  std::vector<Case> cases = {{{0.7, 0, 1.0, 1}, t07}, {{1.0, 3, 1.0, 2}, top3}, {{1.0, 0, 0.8, 3}, nucleus}};
  const int kDraws = 20000;
  for (const Case& c : cases) {
    std::vector<Rng> rngs = {Rng(c.opt.seed)};
    std::vector<int> counts(5, 0);
    std::vector<int32_t> tok;
    std::vector<float> lp;
    for (int i = 0; i < kDraws; ++i) {
      sample_tokens(logits, c.opt, rngs, tok, lp);
      counts[tok[0]]++;
      EXPECT_NEAR(lp[0], std::log(p[tok[0]]), 1e-5);
    }
    for (int v = 0; v < 5; ++v) {
      double f = static_cast<double>(counts[v]) / kDraws;
      double sd = std::sqrt(c.expected[v] * (1 - c.expected[v]) / kDraws);
      EXPECT_NEAR(f, c.expected[v], 5 * sd + 1e-9) << "token " << v << " T=" << c.opt.temperature << " k=" << c.opt.top_k
                                                   << " p=" << c.opt.top_p;
    }
  }
}

TEST(Sampler, SequenceSeedsDependOnSeedPromptAndSample) {
  uint64_t a = sequence_seed(1, {1, 2, 3}, 0);
  EXPECT_EQ(a, sequence_seed(1, {1, 2, 3}, 0));
  EXPECT_NE(a, sequence_seed(2, {1, 2, 3}, 0));
  EXPECT_NE(a, sequence_seed(1, {1, 2, 4}, 0));
  EXPECT_NE(a, sequence_seed(1, {1, 2, 3}, 1));
  Rng r(7);
  double lo = 1, hi = 0;
  for (int i = 0; i < 1000; ++i) {
    double u = r.uniform();
    lo = std::min(lo, u);
    hi = std::max(hi, u);
  }
  EXPECT_GE(lo, 0.0);
  EXPECT_LT(hi, 1.0);
  EXPECT_LT(lo, 0.01);
  EXPECT_GT(hi, 0.99);
}

// The sampler's draws against a plain reference that sorts the whole vocabulary (HF's top-p: keep
// a token while the mass before it is below top_p, draw in that order) and walks the whole
// distribution in id order without top-p: the same random streams give the same tokens on rows
// of 2048 logits, peaked and flat, with ties, and the log-probabilities are the log-softmax.
TEST(Sampler, DrawsEqualAFullSortReference) {
  at::manual_seed(3);
  const int64_t V = 2048;
  auto reference = [&](const std::vector<double>& p, double top_p, Rng rng) {
    std::vector<int32_t> idx(V);
    for (int64_t j = 0; j < V; ++j) idx[j] = static_cast<int32_t>(j);
    if (top_p < 1) std::sort(idx.begin(), idx.end(), [&](int32_t a, int32_t b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
    double z = 0;
    for (double v : p) z += v;
    int64_t n = V;
    if (top_p < 1) {
      double before = 0;
      for (int64_t j = 0; j < V; ++j) {
        if (j > 0 && before >= top_p * z) {
          n = j;
          break;
        }
        before += p[idx[j]];
      }
    }
    double total = 0;
    for (int64_t j = 0; j < n; ++j) total += p[idx[j]];
    const double target = rng.uniform() * total;
    double acc = 0;
    for (int64_t j = 0; j < n; ++j)
      if ((acc += p[idx[j]]) > target) return idx[j];
    return idx[n - 1];
  };
  int compared = 0, differ = 0;
  for (double scale : {0.3, 3.0, 8.0}) {
    at::Tensor logits = (at::randn({16, V}) * scale).contiguous();
    logits.narrow(1, 0, 64).fill_(1.0f);  // ties
    at::Tensor probs = at::softmax(logits.to(at::kDouble), -1).contiguous();
    at::Tensor logp = at::log_softmax(logits, -1).contiguous();
    std::vector<std::vector<double>> rows(16);
    for (int b = 0; b < 16; ++b) rows[b].assign(probs[b].data_ptr<double>(), probs[b].data_ptr<double>() + V);
    for (double top_p : {1.0, 0.999, 0.95, 0.9, 0.5, 0.05}) {
      std::vector<Rng> rngs;
      for (int b = 0; b < 16; ++b) rngs.emplace_back(1000 + b);
      for (int draw = 0; draw < 10; ++draw) {
        std::vector<Rng> before = rngs;
        std::vector<int32_t> tok;
        std::vector<float> lp;
        sample_tokens(logits, SamplingOptions{1.0, 0, top_p, 0}, rngs, tok, lp);
        for (int b = 0; b < 16; ++b) {
          differ += tok[b] != reference(rows[b], top_p, before[b]);
          ++compared;
          EXPECT_NEAR(lp[b], logp[b][tok[b]].item<float>(), 1e-5);
        }
      }
    }
  }
  // Equal but for rounding in the last bits of a sum (a draw landing within ~1e-7 of a boundary).
  EXPECT_LE(differ, compared / 1000) << differ << " of " << compared << " draws differ";
  std::printf("%d of %d draws differ from the reference\n", differ, compared);
}

TEST(Sampler, NucleusWiderThanTheFirstCandidateBlockIsExact) {
  // 1000 nearly equal logits: the top-p = 0.5 nucleus holds about 500 tokens spread over many
  // probability buckets (and once, with the sampler's earlier candidate search, more than its
  // first block of 256); the draws must stay inside the nucleus computed here by brute force, and
  // reach its end.
  const int64_t V = 1000;
  std::vector<float> row(V);
  for (int64_t j = 0; j < V; ++j) row[j] = -0.001f * j;
  at::Tensor logits = at::tensor(row).unsqueeze(0);
  std::vector<double> p(V);
  double z = 0;
  for (int64_t j = 0; j < V; ++j) z += (p[j] = std::exp(static_cast<double>(row[j])));
  int64_t n = 0;
  for (double before = 0; n < V && before < 0.5; ++n) before += p[n] / z;
  ASSERT_GT(n, 256);
  SamplingOptions o{1.0, 0, 0.5, 0};
  std::vector<Rng> rngs = {Rng(9)};
  std::vector<int32_t> tok;
  std::vector<float> lp;
  int32_t hi = 0;
  for (int i = 0; i < 20000; ++i) {
    sample_tokens(logits, o, rngs, tok, lp);
    ASSERT_LT(tok[0], n);
    hi = std::max(hi, tok[0]);
  }
  EXPECT_GE(hi, n - 15);
}

TEST(CausalLM, TextInTextOutMatchesGreedyReference) {
  RLRF_REQUIRE_TINYSTORIES();
  CausalLM lm = load_causal_lm(tinystories_dir(), ModelOptions{});
  EXPECT_EQ(lm.stop_ids(), std::vector<int32_t>{2});
  for (const json& ref : greedy_reference()) {
    std::vector<int32_t> prompt = lm.encode_prompt(ref["prompt"].get<std::string>(), /*chat=*/false);
    EXPECT_EQ(prompt, to_ids(ref["prompt_ids"]));
    GenerateOptions o = greedy_options(64);
    o.stop_ids = lm.stop_ids();
    auto out = generate(lm.model, {{prompt}}, o);
    EXPECT_EQ(lm.tokenizer.decode(out[0].ids), ref["greedy_text"].get<std::string>());
  }
  EXPECT_THROW(lm.encode_prompt("x", /*chat=*/false, "a system message"), rlrf::Error);
}
