// Next-token choice: greedy, temperature, top-k, top-p; per-sequence random streams.
#include "llm/sampler.h"

#include <ATen/ATen.h>

#include <algorithm>

#include "util/error.h"

namespace rlrf::llm {

uint64_t Rng::next_u64() {
  uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

double Rng::uniform() { return static_cast<double>(next_u64() >> 11) * (1.0 / 9007199254740992.0); }

uint64_t sequence_seed(uint64_t seed, const std::vector<int32_t>& prompt, int64_t sample_index) {
  // FNV-1a over the prompt ids, then splitmix rounds with the seed and the sample index.
  uint64_t h = 1469598103934665603ull;
  for (int32_t id : prompt) {
    uint32_t u = static_cast<uint32_t>(id);
    for (int i = 0; i < 4; ++i) {
      h ^= (u >> (8 * i)) & 0xff;
      h *= 1099511628211ull;
    }
  }
  Rng mix(seed ^ 0x5851f42d4c957f2dull);
  uint64_t a = mix.next_u64() ^ h;
  Rng mix2(a);
  uint64_t b = mix2.next_u64() ^ static_cast<uint64_t>(sample_index) * 0xd1342543de82ef95ull;
  Rng mix3(b);
  return mix3.next_u64();
}

namespace {

// Candidate order: more probable first, lower id first among equals (deterministic ties).
struct ByProbDesc {
  const float* p;
  bool operator()(int32_t a, int32_t b) const { return p[a] > p[b] || (p[a] == p[b] && a < b); }
};

// Draws one token of a row of probabilities `p` [V] (temperature applied, summing to ~1).
int32_t draw(const float* p, int64_t V, const SamplingOptions& o, Rng& rng, std::vector<int32_t>& idx) {
  const bool top_k = o.top_k > 0 && o.top_k < V, top_p = o.top_p < 1.0;
  if (!top_k && !top_p) {  // the whole distribution
    double total = 0;
    for (int64_t j = 0; j < V; ++j) total += p[j];
    double target = rng.uniform() * total, acc = 0;
    int32_t last = 0;
    for (int64_t j = 0; j < V; ++j) {
      if (p[j] <= 0) continue;
      last = static_cast<int32_t>(j);
      acc += p[j];
      if (acc > target) return last;
    }
    return last;
  }
  // Candidates, best first: the top k, or for top-p alone the top m with m doubled until their
  // mass reaches top_p (the same nucleus a full sort gives, without sorting the vocabulary).
  idx.resize(V);
  for (int64_t j = 0; j < V; ++j) idx[j] = static_cast<int32_t>(j);
  ByProbDesc cmp{p};
  double z_all = 0;
  if (!top_k)
    for (int64_t j = 0; j < V; ++j) z_all += p[j];
  int64_t m = top_k ? o.top_k : std::min<int64_t>(V, 256);
  for (;;) {
    std::nth_element(idx.begin(), idx.begin() + (m - 1), idx.end(), cmp);
    std::sort(idx.begin(), idx.begin() + m, cmp);
    if (top_k || m == V) break;
    double mass = 0;
    for (int64_t j = 0; j < m; ++j) mass += p[idx[j]];
    if (mass >= o.top_p * z_all) break;  // the nucleus ends inside the candidates
    m = std::min<int64_t>(V, 2 * m);
  }
  // top-p's mass is relative to what top-k kept (HF renormalises after top-k), else to the
  // whole distribution.
  double z = z_all;
  if (top_k)
    for (int64_t j = 0; j < m; ++j) z += p[idx[j]];
  int64_t n = m;
  if (top_p) {
    // Keep a token while the mass of the more probable tokens before it is below top_p.
    double before = 0;
    for (int64_t j = 0; j < m; ++j) {
      if (j > 0 && before >= o.top_p * z) {
        n = j;
        break;
      }
      before += p[idx[j]];
    }
  }
  double total = 0;
  for (int64_t j = 0; j < n; ++j) total += p[idx[j]];
  double target = rng.uniform() * total, acc = 0;
  for (int64_t j = 0; j < n; ++j) {
    acc += p[idx[j]];
    if (acc > target) return idx[j];
  }
  return idx[n - 1];
}

}  // namespace

void sample_tokens(const at::Tensor& logits, const SamplingOptions& options, std::vector<Rng>& rngs,
                   std::vector<int32_t>& tokens, std::vector<float>& logprobs) {
  RLRF_CHECK(logits.dim() == 2, "sample_tokens: logits should be [batch, vocab], got {}", c10::str(logits.sizes()));
  const int64_t B = logits.size(0), V = logits.size(1);
  tokens.assign(B, 0);
  logprobs.assign(B, 0.0f);
  // The rows are small: choose on the CPU, with vectorised log-softmax / softmax from ATen.
  at::Tensor logp = at::log_softmax(logits.to(at::kCPU, at::kFloat), -1).contiguous();  // [B, V]
  const float* lp = logp.data_ptr<float>();
  if (options.greedy()) {
    for (int64_t b = 0; b < B; ++b) {
      const float* row = lp + b * V;
      tokens[b] = static_cast<int32_t>(std::max_element(row, row + V) - row);  // first maximum, as argmax
      logprobs[b] = row[tokens[b]];
    }
    return;
  }
  RLRF_CHECK(static_cast<int64_t>(rngs.size()) == B, "sample_tokens: {} random streams for {} rows", rngs.size(), B);
  // softmax(logits / T) = softmax(logp / T): log_softmax only shifts each row.
  at::Tensor probs = (options.temperature == 1.0 ? logp.exp() : at::softmax(logp / options.temperature, -1)).contiguous();
  const float* p = probs.data_ptr<float>();
  std::vector<int32_t> idx;
  for (int64_t b = 0; b < B; ++b) {
    tokens[b] = draw(p + b * V, V, options, rngs[b], idx);
    logprobs[b] = lp[b * V + tokens[b]];
  }
}

}  // namespace rlrf::llm
