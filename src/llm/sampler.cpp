// Next-token choice: greedy, temperature, top-k, top-p; per-sequence random streams.
#include "llm/sampler.h"

#include <ATen/ATen.h>
#include <cstdint>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>

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

// Sum of p[0..n) in double with 8 independent partial sums (vectorisable; the order is fixed, so
// the result is the same on every run).
double sum_of(const float* p, int64_t n) {
  double part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int k = 0; k < 8; ++k) part[k] += p[j + k];
  double s = ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
  for (; j < n; ++j) s += p[j];
  return s;
}

// Probabilities as buckets of their float bits: for x >= 0 the bits grow with x, so bucket
// bits >> 19 (exponent and 4 mantissa bits, 16 buckets an octave) orders the vocabulary by
// probability up to ties inside a bucket. A row's nucleus and its draw then need the bucket masses
// and the sorted tokens of at most two buckets, not a sort of the vocabulary.
constexpr int kBucketShift = 18;  // 32 buckets an octave
constexpr int kBuckets = 1 << (31 - kBucketShift);

// Bucket masses are summed in 4 interleaved copies (token j adds to copy j % 4), so that runs of
// tokens in one bucket do not wait on each other's additions.
constexpr int kCopies = 4;

struct Scratch {
  std::vector<double> partial = std::vector<double>(static_cast<size_t>(kBuckets) * kCopies, 0.0);
  std::vector<uint16_t> bucket;  // per token
  std::vector<uint64_t> keys;    // a bucket's tokens, sorted
  std::vector<int32_t> in_cut, landed, idx;
  double mass(int b) const {
    const double* q = &partial[static_cast<size_t>(b) * kCopies];
    return (q[0] + q[1]) + (q[2] + q[3]);
  }
};

uint32_t bits_of(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  return bits;
}

// The tokens of bucket `b`, best first (ByProbDesc order: a key of the probability's bits above
// the complement of the id sorts descending as probability descending, id ascending).
void sorted_bucket(const float* p, Scratch& s, int64_t V, uint16_t b, std::vector<int32_t>& out) {
  s.keys.clear();
  for (int64_t j = 0; j < V; ++j)
    if (s.bucket[static_cast<size_t>(j)] == b)
      s.keys.push_back(uint64_t{bits_of(p[j] > 0 ? p[j] : 0.0f)} << 32 | (0xffffffffu - static_cast<uint32_t>(j)));
  std::sort(s.keys.begin(), s.keys.end(), std::greater<uint64_t>());
  out.clear();
  for (uint64_t k : s.keys) out.push_back(static_cast<int32_t>(0xffffffffu - static_cast<uint32_t>(k)));
}

// Top-p alone: the tokens kept are those whose more probable predecessors (in ByProbDesc order)
// hold less than top_p of the mass (the first always), drawn in that order; the same rule and
// order as a full sort, computed from the bucket masses.
int32_t draw_nucleus(const float* p, int64_t V, double top_p, Rng& rng, Scratch& s) {
  s.bucket.resize(static_cast<size_t>(V));
  int hi = 0, lo = kBuckets;
  for (int64_t j = 0; j < V; ++j) {
    const float x = p[j] > 0 ? p[j] : 0.0f;
    const uint16_t b = static_cast<uint16_t>(bits_of(x) >> kBucketShift);
    s.bucket[static_cast<size_t>(j)] = b;
    s.partial[static_cast<size_t>(b) * kCopies + static_cast<size_t>(j % kCopies)] += x;
    hi = std::max<int>(hi, b);
    lo = std::min<int>(lo, b);
  }
  const double limit = top_p * sum_of(p, V);
  // The bucket where the mass before a token reaches the limit, and how much of it is kept.
  double before = 0;
  int cut = lo - 1;
  for (int b = hi; b >= lo; --b) {
    const double m = s.mass(b);
    if (before + m >= limit) {
      cut = b;
      break;
    }
    before += m;
  }
  int64_t kept_in_cut = 0;
  double total = before;
  if (cut >= lo) {
    sorted_bucket(p, s, V, static_cast<uint16_t>(cut), s.in_cut);
    for (int32_t t : s.in_cut) {
      if ((cut < hi || kept_in_cut > 0) && total >= limit) break;  // the first token is always kept
      total += p[t];
      ++kept_in_cut;
    }
  }
  // The draw: walk the kept buckets best first, then the tokens of the bucket it lands in.
  const double target = rng.uniform() * total;
  double acc = 0;
  int32_t chosen = -1;
  for (int b = hi; b > cut && chosen < 0; --b) {
    const double m = s.mass(b);
    if (m == 0) continue;
    if (acc + m > target) {
      sorted_bucket(p, s, V, static_cast<uint16_t>(b), s.landed);
      for (int32_t t : s.landed) {
        acc += p[t];
        if (acc > target) {
          chosen = t;
          break;
        }
      }
      if (chosen < 0) chosen = s.landed.back();  // rounding: the bucket's sum fell short of its mass
    } else {
      acc += m;
    }
  }
  if (chosen < 0 && kept_in_cut > 0) {
    for (int64_t k = 0; k < kept_in_cut && chosen < 0; ++k) {
      acc += p[s.in_cut[static_cast<size_t>(k)]];
      if (acc > target) chosen = s.in_cut[static_cast<size_t>(k)];
    }
    if (chosen < 0) chosen = s.in_cut[static_cast<size_t>(kept_in_cut - 1)];  // the least probable kept
  }
  std::fill(s.partial.begin() + static_cast<std::ptrdiff_t>(lo) * kCopies,
            s.partial.begin() + static_cast<std::ptrdiff_t>(hi + 1) * kCopies, 0.0);
  return chosen < 0 ? 0 : chosen;
}

// Draws one token of a row of probabilities `p` [V] (temperature applied, summing to ~1).
int32_t draw(const float* p, int64_t V, const SamplingOptions& o, Rng& rng, Scratch& s) {
  const bool top_k = o.top_k > 0 && o.top_k < V, top_p = o.top_p < 1.0;
  if (!top_k && !top_p) {  // the whole distribution, in id order, 64-token blocks at a time
    const double target = rng.uniform() * sum_of(p, V);
    double acc = 0;
    int64_t j = 0;
    for (; j + 64 <= V; j += 64) {
      const double block = sum_of(p + j, 64);
      if (acc + block > target) break;
      acc += block;
    }
    for (; j < V; ++j) {
      if (p[j] <= 0) continue;
      acc += p[j];
      if (acc > target) return static_cast<int32_t>(j);
    }
    for (j = V - 1; j > 0 && p[j] <= 0; --j) {
    }
    return static_cast<int32_t>(j);  // rounding: the last token with mass
  }
  if (!top_k) return draw_nucleus(p, V, o.top_p, rng, s);
  // Top-k (then top-p on what it kept): the k best, sorted.
  std::vector<int32_t>& idx = s.idx;
  idx.resize(static_cast<size_t>(V));
  for (int64_t j = 0; j < V; ++j) idx[static_cast<size_t>(j)] = static_cast<int32_t>(j);
  ByProbDesc cmp{p};
  const int64_t m = o.top_k;
  std::nth_element(idx.begin(), idx.begin() + (m - 1), idx.end(), cmp);
  std::sort(idx.begin(), idx.begin() + m, cmp);
  // top-p's mass is relative to what top-k kept (HF renormalises after top-k).
  double z = 0;
  for (int64_t j = 0; j < m; ++j) z += p[idx[static_cast<size_t>(j)]];
  int64_t n = m;
  if (top_p) {
    // Keep a token while the mass of the more probable tokens before it is below top_p.
    double before = 0;
    for (int64_t j = 0; j < m; ++j) {
      if (j > 0 && before >= o.top_p * z) {
        n = j;
        break;
      }
      before += p[idx[static_cast<size_t>(j)]];
    }
  }
  double total = 0;
  for (int64_t j = 0; j < n; ++j) total += p[idx[static_cast<size_t>(j)]];
  double target = rng.uniform() * total, acc = 0;
  for (int64_t j = 0; j < n; ++j) {
    acc += p[idx[static_cast<size_t>(j)]];
    if (acc > target) return idx[static_cast<size_t>(j)];
  }
  return idx[static_cast<size_t>(n - 1)];
}

}  // namespace

void sample_tokens(const at::Tensor& logits, const SamplingOptions& options, std::vector<Rng>& rngs,
                   std::vector<int32_t>& tokens, std::vector<float>& logprobs) {
  RLRF_CHECK(logits.dim() == 2, "sample_tokens: logits should be [batch, vocab], got {}", c10::str(logits.sizes()));
  const int64_t B = logits.size(0), V = logits.size(1);
  tokens.assign(B, 0);
  logprobs.assign(B, 0.0f);
  // The rows are small: choose on the CPU, with vectorised (log-)softmax from ATen.
  const at::Tensor l = logits.to(at::kCPU, at::kFloat);
  if (options.greedy()) {
    const at::Tensor logp = at::log_softmax(l, -1).contiguous();  // [B, V]
    const float* lp = logp.data_ptr<float>();
    for (int64_t b = 0; b < B; ++b) {
      const float* row = lp + b * V;
      tokens[b] = static_cast<int32_t>(std::max_element(row, row + V) - row);  // first maximum, as argmax
      logprobs[b] = row[tokens[b]];
    }
    return;
  }
  RLRF_CHECK(static_cast<int64_t>(rngs.size()) == B, "sample_tokens: {} random streams for {} rows", rngs.size(), B);
  // The draw's probabilities, softmax(logits / T). The log-probability reported is of the raw
  // logits: at T = 1 the log of the drawn token's probability (one softmax, no log-softmax pass).
  const bool plain = options.temperature == 1.0;
  const at::Tensor probs = at::softmax(plain ? l : l / options.temperature, -1).contiguous();
  const float* p = probs.data_ptr<float>();
  const at::Tensor raw = plain ? at::Tensor() : l.contiguous(), lse = plain ? at::Tensor() : at::logsumexp(raw, 1).contiguous();
  const float* x = plain ? nullptr : raw.data_ptr<float>();
  const float* z = plain ? nullptr : lse.data_ptr<float>();
  thread_local Scratch scratch;
  for (int64_t b = 0; b < B; ++b) {
    tokens[b] = draw(p + b * V, V, options, rngs[b], scratch);
    logprobs[b] = plain ? std::log(p[b * V + tokens[b]]) : x[b * V + tokens[b]] - z[b];
  }
}

}  // namespace rlrf::llm
