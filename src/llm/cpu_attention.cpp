// One-pass attention of a decoding step (see cpu_attention.h).
#include "llm/cpu_attention.h"

#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <cstdint>

#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#include "llm/cpu_clones.h"
#include "llm/kernel_math.h"
#include "util/error.h"

namespace rlrf::llm {

namespace {

// 16 fp32 lanes as GCC vector extensions: one zmm register in the x86-64-v4 clone, two ymm in v3.
typedef float f32x16 __attribute__((vector_size(64)));
typedef uint16_t u16x16 __attribute__((vector_size(32)));
typedef uint32_t u32x16 __attribute__((vector_size(64)));

inline f32x16 load16(const float* p) {
  f32x16 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline f32x16 load16(const uint16_t* p) {  // bf16 bits: the high half of an fp32
  u16x16 h;
  std::memcpy(&h, p, sizeof h);
  return reinterpret_cast<f32x16>(__builtin_convertvector(h, u32x16) << 16);
}
inline void store16(float* p, f32x16 v) { std::memcpy(p, &v, sizeof v); }

// Scores of GB queries (q [GB, D], row stride D) over TB blocks of 16 slots from t0: the mask (or
// 0) plus q k, summed over head dims in GB x TB register accumulators (independent chains of
// multiply-adds: one chain would wait on its own latency), each key block read once for all GB.
template <int GB, int TB, typename T>
__attribute__((always_inline)) inline void score_blocks(const float* __restrict q, int64_t D, const T* __restrict keys_t,
                                                        int64_t ks, const T* __restrict mask, int64_t t0,
                                                        float* __restrict scores, int64_t n) {
  f32x16 acc[GB][TB];
#pragma GCC unroll 8
  for (int b = 0; b < TB; ++b) {
    const f32x16 m = mask ? load16(mask + t0 + 16 * b) : f32x16{};
#pragma GCC unroll 8
    for (int g = 0; g < GB; ++g) acc[g][b] = m;
  }
  for (int64_t i = 0; i < D; ++i) {
    const T* kr = keys_t + i * ks + t0;
    f32x16 k[TB];
#pragma GCC unroll 8
    for (int b = 0; b < TB; ++b) k[b] = load16(kr + 16 * b);
#pragma GCC unroll 8
    for (int g = 0; g < GB; ++g) {
      const float qi = q[g * D + i];
#pragma GCC unroll 8
      for (int b = 0; b < TB; ++b) acc[g][b] += qi * k[b];
    }
  }
#pragma GCC unroll 8
  for (int g = 0; g < GB; ++g)
#pragma GCC unroll 8
    for (int b = 0; b < TB; ++b) store16(scores + g * n + t0 + 16 * b, acc[g][b]);
}

// out[g, i0 : i0 + 16] = inv[g] * sum_t p[g, t] v[t, i0 : i0 + 16] for GB queries (p row stride n),
// the slots taken PB at a time into GB x PB register accumulators; each value block read once.
template <int GB, int PB, typename T>
__attribute__((always_inline)) inline void value_block(const float* __restrict p, int64_t n, const T* __restrict values,
                                                       int64_t vs, int64_t i0, const float* __restrict inv,
                                                       float* __restrict out, int64_t D) {
  f32x16 acc[GB][PB];
#pragma GCC unroll 8
  for (int g = 0; g < GB; ++g)
#pragma GCC unroll 8
    for (int b = 0; b < PB; ++b) acc[g][b] = f32x16{};
  int64_t t = 0;
  for (; t + PB <= n; t += PB) {
    f32x16 v[PB];
#pragma GCC unroll 8
    for (int b = 0; b < PB; ++b) v[b] = load16(values + (t + b) * vs + i0);
#pragma GCC unroll 8
    for (int g = 0; g < GB; ++g)
#pragma GCC unroll 8
      for (int b = 0; b < PB; ++b) acc[g][b] += p[g * n + t + b] * v[b];
  }
  for (; t < n; ++t) {
    const f32x16 v = load16(values + t * vs + i0);
#pragma GCC unroll 8
    for (int g = 0; g < GB; ++g) acc[g][0] += p[g * n + t] * v;
  }
#pragma GCC unroll 8
  for (int g = 0; g < GB; ++g) {
    f32x16 sum = acc[g][0];
#pragma GCC unroll 8
    for (int b = 1; b < PB; ++b) sum += acc[g][b];
    store16(out + g * D + i0, sum * inv[g]);
  }
}

// softmax(q k + mask) v for GB queries of one key/value head (scores [GB, n], out [GB, D]).
template <int GB, typename T>
__attribute__((always_inline)) inline void attend_queries(const float* __restrict q, int64_t D, const T* __restrict keys_t,
                                                          int64_t ks, const T* __restrict values, int64_t vs,
                                                          const T* __restrict mask, int64_t n, float* __restrict scores,
                                                          float* __restrict out) {
  constexpr int TB = GB >= 4 ? 2 : 4;  // 8 accumulators
  int64_t t = 0;
  for (; t + 16 * TB <= n; t += 16 * TB) score_blocks<GB, TB>(q, D, keys_t, ks, mask, t, scores, n);
  for (; t + 16 <= n; t += 16) score_blocks<GB, 1>(q, D, keys_t, ks, mask, t, scores, n);
  for (; t < n; ++t) {  // the last slots, one at a time
    for (int g = 0; g < GB; ++g) {
      float a = mask ? to_float(mask[t]) : 0.0f;
      for (int64_t i = 0; i < D; ++i) a += q[g * D + i] * to_float(keys_t[i * ks + t]);
      scores[g * n + t] = a;
    }
  }
  float inv[GB];
  for (int g = 0; g < GB; ++g) {
    float* s = scores + g * n;
    float mx = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : mx)
    for (int64_t j = 0; j < n; ++j) mx = s[j] > mx ? s[j] : mx;
    inv[g] = 1.0f / exp_shifted_in_place(s, n, mx);
  }
  int64_t i0 = 0;
  for (; i0 + 16 <= D; i0 += 16) value_block<GB, GB >= 4 ? 2 : 4>(scores, n, values, vs, i0, inv, out, D);
  for (; i0 < D; ++i0) {  // head dims past the last 16
    for (int g = 0; g < GB; ++g) {
      float a = 0;
      for (int64_t j = 0; j < n; ++j) a += scores[g * n + j] * to_float(values[j * vs + i0]);
      out[g * D + i0] = a * inv[g];
    }
  }
}

// All G queries of one key/value head, four, two or one at a time; T is float or uint16_t (bf16
// bits). Always inlined, so each CPU clone below vectorises it for its own instruction set.
template <typename T>
__attribute__((always_inline)) inline void attend_group(const float* __restrict q, int64_t G, int64_t D,
                                                        const T* __restrict keys_t, int64_t ks, const T* __restrict values,
                                                        int64_t vs, const T* __restrict mask, int64_t n,
                                                        float* __restrict scores, float* __restrict out) {
  int64_t g = 0;
  for (; g + 4 <= G; g += 4) attend_queries<4>(q + g * D, D, keys_t, ks, values, vs, mask, n, scores, out + g * D);
  for (; g + 2 <= G; g += 2) attend_queries<2>(q + g * D, D, keys_t, ks, values, vs, mask, n, scores, out + g * D);
  for (; g < G; ++g) attend_queries<1>(q + g * D, D, keys_t, ks, values, vs, mask, n, scores, out + g * D);
}

RLRF_CPU_CLONES
void attend_group_f32(const float* q, int64_t G, int64_t D, const float* keys_t, int64_t ks, const float* values,
                      int64_t vs, const float* mask, int64_t n, float* scores, float* out) {
  attend_group<float>(q, G, D, keys_t, ks, values, vs, mask, n, scores, out);
}

RLRF_CPU_CLONES
void attend_group_bf16(const float* q, int64_t G, int64_t D, const uint16_t* keys_t, int64_t ks,
                       const uint16_t* values, int64_t vs, const uint16_t* mask, int64_t n, float* scores, float* out) {
  attend_group<uint16_t>(q, G, D, keys_t, ks, values, vs, mask, n, scores, out);
}

}  // namespace

void attend_group_fp32(const float* q, int64_t G, int64_t D, const float* keys_t, int64_t key_stride,
                       const float* values, int64_t value_stride, const float* mask, int64_t n, float* scores,
                       float* out) {
  attend_group_f32(q, G, D, keys_t, key_stride, values, value_stride, mask, n, scores, out);
}

at::Tensor cpu_attention(const at::Tensor& q, const at::Tensor& keys_t, const at::Tensor& values, const at::Tensor& mask,
                         bool causal) {
  const at::ScalarType dt = keys_t.scalar_type();
  RLRF_CHECK(dt == at::kFloat || dt == at::kBFloat16, "cpu_attention: keys are {}; fp32 or bf16 expected",
             c10::toString(dt));
  RLRF_CHECK(q.dim() == 4 && keys_t.dim() == 4 && values.dim() == 4,
             "cpu_attention: q [B, T, H, D], keys_t [B, KV, D, S] and values [B, KV, S, D] expected; got {}, {}, {}",
             c10::str(q.sizes()), c10::str(keys_t.sizes()), c10::str(values.sizes()));
  const int64_t B = q.size(0), T = q.size(1), H = q.size(2), D = q.size(3), KV = keys_t.size(1), S = values.size(2);
  RLRF_CHECK(KV >= 1 && H % KV == 0 && keys_t.size(0) == B && keys_t.size(2) == D && keys_t.size(3) == S &&
                 values.size(0) == B && values.size(1) == KV && values.size(3) == D && S >= T && T >= 1,
             "cpu_attention: shapes disagree: q {}, keys_t {}, values {}", c10::str(q.sizes()), c10::str(keys_t.sizes()),
             c10::str(values.sizes()));
  const int64_t G = H / KV;
  RLRF_CHECK(q.scalar_type() == dt && values.scalar_type() == dt && q.is_cpu() && keys_t.is_cpu() && values.is_cpu(),
             "cpu_attention: q, keys and values must share one dtype on the CPU; got {}, {}, {}",
             c10::toString(q.scalar_type()), c10::toString(dt), c10::toString(values.scalar_type()));
  RLRF_CHECK((S == 1 || keys_t.stride(3) == 1) && (D == 1 || values.stride(3) == 1),
             "cpu_attention: keys_t needs contiguous slots and values contiguous head dims; strides {} and {}",
             c10::str(keys_t.strides()), c10::str(values.strides()));
  at::Tensor m;
  if (mask.defined()) {
    RLRF_CHECK(mask.dim() == 3 && (mask.size(0) == 1 || mask.size(0) == B) && mask.size(1) == T && mask.size(2) == S &&
                   mask.scalar_type() == dt && mask.is_cpu(),
               "cpu_attention: mask should be [1 or {}, {}, {}] {}; got {} {}", B, T, S, c10::toString(dt),
               c10::str(mask.sizes()), c10::toString(mask.scalar_type()));
    m = mask.contiguous();
  }
  const at::Tensor qf = q.to(at::kFloat).contiguous();
  at::Tensor out = at::empty({B, T, H, D}, q.options());
  const float* qp = qf.data_ptr<float>();
  const char* kp = static_cast<const char*>(keys_t.data_ptr());
  const char* vp = static_cast<const char*>(values.data_ptr());
  const char* mp = m.defined() ? static_cast<const char*>(m.data_ptr()) : nullptr;
  const int64_t esz = static_cast<int64_t>(keys_t.element_size());
  const int64_t mrows = m.defined() ? m.size(0) : 0;
  const int64_t k0 = keys_t.stride(0), k1 = keys_t.stride(1), k2 = keys_t.stride(2);
  const int64_t v0 = values.stride(0), v1 = values.stride(1), v2 = values.stride(2);
  char* op = static_cast<char*>(out.data_ptr());
  // Tasks: (row, key/value head, query position), a head's positions consecutive so its keys and
  // values stay in cache. About 32k multiply-adds a chunk: a small batch stays on the calling thread.
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, 2 * G * D * S));
  at::parallel_for(0, B * KV * T, grain, [&](int64_t begin, int64_t end) {
    std::vector<float> scores(static_cast<size_t>(G * S)), acc(static_cast<size_t>(G * D));
    for (int64_t r = begin; r < end; ++r) {
      const int64_t t = r % T, h = (r / T) % KV, b = r / (T * KV);
      const int64_t n = causal ? S - T + t + 1 : S;  // slots this position may see
      const char* kr = kp + (b * k0 + h * k1) * esz;
      const char* vr = vp + (b * v0 + h * v1) * esz;
      const char* mr = mp ? mp + ((mrows == 1 ? 0 : b) * T + t) * S * esz : nullptr;
      const int64_t at_q = ((b * T + t) * H + h * G) * D;  // the G heads of this position, [G, D]
      if (dt == at::kFloat) {
        attend_group_f32(qp + at_q, G, D, reinterpret_cast<const float*>(kr), k2, reinterpret_cast<const float*>(vr),
                         v2, reinterpret_cast<const float*>(mr), n, scores.data(), reinterpret_cast<float*>(op) + at_q);
      } else {
        attend_group_bf16(qp + at_q, G, D, reinterpret_cast<const uint16_t*>(kr), k2,
                          reinterpret_cast<const uint16_t*>(vr), v2, reinterpret_cast<const uint16_t*>(mr), n,
                          scores.data(), acc.data());
        uint16_t* o = reinterpret_cast<uint16_t*>(op) + at_q;
        for (int64_t i = 0; i < G * D; ++i) o[i] = float_to_bf16(acc[static_cast<size_t>(i)]);
      }
    }
  });
  return out;
}

}  // namespace rlrf::llm
