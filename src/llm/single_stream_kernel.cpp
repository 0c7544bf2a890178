// The single-stream decoding step's arithmetic (see single_stream_kernel.h).
#include "llm/single_stream_kernel.h"

#include <cstdint>

#ifdef _OPENMP
#include <omp.h>
#endif

#include <algorithm>
#include <cmath>
#include <utility>

#include "llm/cpu_clones.h"
#include "llm/cpu_attention.h"
#include "util/error.h"

namespace rlrf::llm {


namespace {

// y[r] = W[r, :] x (+ bias[r]) for rows r in [begin, end) of W [n, k] (y += with `accumulate`).
// Four rows at a time: four independent vector sums keep the FMA units busy where one would wait
// on its own latency.
RLRF_CPU_CLONES
void matvec(const float* __restrict w, const float* __restrict x, const float* __restrict bias, float* __restrict y,
            int64_t k, int64_t begin, int64_t end, bool accumulate) {
  int64_t i = begin;
  float s[4];
  for (; i + 4 <= end; i += 4) {
    const float *w0 = w + i * k, *w1 = w0 + k, *w2 = w1 + k, *w3 = w2 + k;
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
    for (int64_t j = 0; j < k; ++j) {
      s0 += w0[j] * x[j];
      s1 += w1[j] * x[j];
      s2 += w2[j] * x[j];
      s3 += w3[j] * x[j];
    }
    s[0] = s0, s[1] = s1, s[2] = s2, s[3] = s3;
    for (int r = 0; r < 4; ++r) {
      const float v = bias ? s[r] + bias[i + r] : s[r];
      y[i + r] = accumulate ? y[i + r] + v : v;
    }
  }
  for (; i < end; ++i) {
    const float* wi = w + i * k;
    float s0 = 0;
#pragma omp simd reduction(+ : s0)
    for (int64_t j = 0; j < k; ++j) s0 += wi[j] * x[j];
    const float v = bias ? s0 + bias[i] : s0;
    y[i] = accumulate ? y[i] + v : v;
  }
}

// Thread t's share [begin, end) of n rows among nt threads, in blocks of 4 rows.
std::pair<int64_t, int64_t> share(int64_t n, int t, int nt) {
  const int64_t block = (n + 4 * nt - 1) / (4 * nt) * 4;
  const int64_t begin = std::min(n, t * block);
  return {begin, std::min(n, begin + block)};
}

// out = weight * (x / sqrt(mean(x^2) + eps)), as RMSNormImpl in fp32.
RLRF_CPU_CLONES
void rms_norm(const float* __restrict x, const float* __restrict weight, float* __restrict out, int64_t n, double eps) {
  float ss = 0;
#pragma omp simd reduction(+ : ss)
  for (int64_t j = 0; j < n; ++j) ss += x[j] * x[j];
  const float inv = 1.0f / std::sqrt(ss / static_cast<float>(n) + static_cast<float>(eps));
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) out[j] = weight[j] * (x[j] * inv);
}

// HF rotary embedding of one head vector v [d] in place: v * cos + rotate_half(v) * sin.
void rope(float* v, int64_t d, const float* cos, const float* sin) {
  const int64_t half = d / 2;
  for (int64_t i = 0; i < half; ++i) {
    const float a = v[i], b = v[i + half];
    v[i] = a * cos[i] - b * sin[i];
    v[i + half] = b * cos[i] + a * sin[i];
  }
}

// silu(g) * u into g, elements [begin, end).
RLRF_CPU_CLONES
void swiglu(float* __restrict g, const float* __restrict u, int64_t begin, int64_t end) {
  for (int64_t j = begin; j < end; ++j) g[j] = g[j] / (1.0f + std::exp(-g[j])) * u[j];
}

}  // namespace

void single_stream_kernel(SingleStreamModel& m, int32_t token, int64_t position, float* const* keys,
                          float* const* values, int64_t capacity, int64_t slot, int64_t first, float* logits,
                          int threads) {
  const ModelConfig& c = m.config;
  const int64_t hidden = c.hidden_size, H = c.num_attention_heads, KV = c.num_key_value_heads, D = c.head_dim;
  const int64_t G = H / KV, I = c.intermediate_size, half = D / 2;
  RLRF_CHECK(half <= 512, "single-stream step: head_dim {} above 1024", D);
  const int64_t S = slot - first + 1;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(D)));

  // Rotary cos/sin of this position: freqs = position x inv_freq in fp32, as the model's table.
  float cos[512], sin[512];
  for (int64_t i = 0; i < half; ++i) {
    const float f = static_cast<float>(position) * m.inv_freq[i];
    cos[i] = std::cos(f);
    sin[i] = std::sin(f);
  }
  std::copy(m.embed + token * hidden, m.embed + (token + 1) * hidden, m.x.begin());
  threads = std::max(1, threads);
  m.xn.resize(threads * hidden);  // each thread's normed copy of x
  m.scores.resize(threads * G * S);  // each thread's attention scores

  // Every thread runs the whole step on its share: matrix rows, and key/value head groups for the
  // attention; a barrier wherever the next phase reads what other threads wrote. The small
  // vector work (norms) is done by every thread on its own copy rather than waited for.
  auto step = [&](int t, int nt) {
    float* xn = m.xn.data() + t * hidden;
    float* scores = m.scores.data() + t * G * S;
    for (size_t l = 0; l < m.layers.size(); ++l) {
      const SingleStreamModel::Layer& L = m.layers[l];
      rms_norm(m.x.data(), L.input_norm, xn, hidden, c.rms_norm_eps);
      auto [qb, qe] = share(H * D, t, nt);
      auto [kb, ke] = share(KV * D, t, nt);
      matvec(L.q, xn, L.q_bias, m.q.data(), hidden, qb, qe, false);
      matvec(L.k, xn, L.k_bias, m.k.data(), hidden, kb, ke, false);
      matvec(L.v, xn, L.v_bias, m.v.data(), hidden, kb, ke, false);
#pragma omp barrier
      // Key/value head groups: the new key and value into the cache, then the group's queries.
      for (int64_t g = t; g < KV; g += nt) {
        float* k = m.k.data() + g * D;
        rope(k, D, cos, sin);
        float* kt = keys[l] + g * D * capacity;
        for (int64_t j = 0; j < D; ++j) kt[j * capacity + slot] = k[j];
        std::copy(m.v.begin() + g * D, m.v.begin() + (g + 1) * D, values[l] + (g * capacity + slot) * D);
        for (int64_t h = g * G; h < (g + 1) * G; ++h) {
          float* q = m.q.data() + h * D;
          rope(q, D, cos, sin);
          for (int64_t j = 0; j < D; ++j) q[j] *= scale;
        }
        attend_group_fp32(m.q.data() + g * G * D, G, D, kt + first, capacity, values[l] + (g * capacity + first) * D, D,
                          nullptr, S, scores, m.attn.data() + g * G * D);
      }
#pragma omp barrier
      auto [hb, he] = share(hidden, t, nt);
      matvec(L.o, m.attn.data(), L.o_bias, m.x.data(), H * D, hb, he, true);  // x += o_proj(attention)
#pragma omp barrier
      rms_norm(m.x.data(), L.post_norm, xn, hidden, c.rms_norm_eps);
      auto [ib, ie] = share(I, t, nt);
      matvec(L.gate, xn, L.gate_bias, m.gate.data(), hidden, ib, ie, false);
      matvec(L.up, xn, L.up_bias, m.up.data(), hidden, ib, ie, false);
      swiglu(m.gate.data(), m.up.data(), ib, ie);
#pragma omp barrier
      matvec(L.down, m.gate.data(), L.down_bias, m.x.data(), I, hb, he, true);  // x += mlp
#pragma omp barrier
    }
    rms_norm(m.x.data(), m.final_norm, xn, hidden, c.rms_norm_eps);
    auto [vb, ve] = share(c.vocab_size, t, nt);
    matvec(m.lm_head, xn, nullptr, logits, hidden, vb, ve, false);
  };
#ifdef _OPENMP
  if (threads > 1) {
#pragma omp parallel num_threads(threads)
    step(omp_get_thread_num(), omp_get_num_threads());
    return;
  }
#endif
  step(0, 1);  // one thread (or a build without OpenMP)
}

}  // namespace rlrf::llm
