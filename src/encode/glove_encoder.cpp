// GloVe + SIF text encoder (see glove_encoder.h for the method and its choices).
#include "encode/glove_encoder.h"

#include <ATen/Parallel.h>
#include <ATen/ops/zeros.h>
#include <cstdint>

#include <cmath>

#include "encode/word_tokenizer.h"
#include "util/error.h"

namespace rlrf {

double sif_weight(int64_t rank, int64_t vocab_size, double a) {
  double harmonic = 0;
  for (int64_t k = vocab_size; k >= 1; --k) harmonic += 1.0 / static_cast<double>(k);
  double p = 1.0 / (static_cast<double>(rank + 1) * harmonic);
  return a / (a + p);
}

GloveSifEncoder::GloveSifEncoder(std::shared_ptr<const GloveVectors> vectors, double a)
    : vectors_(std::move(vectors)), a_(a), harmonic_(0) {
  RLRF_CHECK(vectors_ != nullptr, "GloveSifEncoder: no vectors");
  RLRF_CHECK(a_ > 0, "GloveSifEncoder: SIF parameter a must be > 0, got {}", a_);
  for (int64_t k = vectors_->count(); k >= 1; --k) harmonic_ += 1.0 / static_cast<double>(k);
}

std::string GloveSifEncoder::name() const { return fmt::format("glove-{}d-sif-decades", vectors_->dim()); }

std::string decade_word(std::string_view token) {
  auto digits = [&](size_t n) {
    for (size_t i = 0; i < n; ++i)
      if (token[i] < '0' || token[i] > '9') return false;
    return true;
  };
  const bool year = token.size() == 4 && digits(4);
  const bool decade = token.size() == 5 && digits(4) && token[3] == '0' && token[4] == 's';
  if (!year && !decade) return "";
  return fmt::format("mid-{}0s", token.substr(0, 3));
}
int GloveSifEncoder::dim() const { return vectors_->dim(); }

double GloveSifEncoder::weight(int64_t rank) const {
  double p = 1.0 / (static_cast<double>(rank + 1) * harmonic_);
  return a_ / (a_ + p);
}

template <typename F>
void GloveSifEncoder::for_each_word_id(std::string_view text, F&& f) const {
  for_each_word_token(text, [&](std::string_view token) {
    int64_t id = vectors_->find(token);
    if (id >= 0) {
      f(id);
      return;
    }
    const std::string decade = decade_word(token);
    if (!decade.empty()) {
      if (int64_t d = vectors_->find(decade); d >= 0) f(d);
      return;
    }
    if (token.find('-') == std::string_view::npos) return;  // unknown: skipped
    size_t start = 0;
    while (start <= token.size()) {
      size_t stop = token.find('-', start);
      if (stop == std::string_view::npos) stop = token.size();
      if (stop > start) {
        int64_t part = vectors_->find(token.substr(start, stop - start));
        if (part >= 0) f(part);
      }
      start = stop + 1;
    }
  });
}

std::vector<int64_t> GloveSifEncoder::word_ids(std::string_view text) const {
  std::vector<int64_t> ids;
  for_each_word_id(text, [&](int64_t id) { ids.push_back(id); });
  return ids;
}

int GloveSifEncoder::encode_one(std::string_view text, float* out) const {
  const int d = dim();
  std::vector<double> acc(static_cast<size_t>(d), 0.0);
  double total_weight = 0;
  int used = 0;
  for_each_word_id(text, [&](int64_t id) {
    const double w = weight(id);
    const float* v = vectors_->vector(id);
    for (int k = 0; k < d; ++k) acc[k] += w * v[k];
    total_weight += w;
    ++used;
  });
  double norm = 0;
  for (int k = 0; k < d; ++k) {
    acc[k] /= total_weight > 0 ? total_weight : 1.0;
    norm += acc[k] * acc[k];
  }
  norm = std::sqrt(norm);
  for (int k = 0; k < d; ++k) out[k] = norm > 0 ? static_cast<float>(acc[k] / norm) : 0.0f;
  return used;
}

at::Tensor GloveSifEncoder::encode(const std::vector<std::string>& texts) {
  const int64_t n = static_cast<int64_t>(texts.size());
  at::Tensor out = at::zeros({n, dim()}, at::kFloat);
  float* base = out.data_ptr<float>();
  const int d = dim();
  at::parallel_for(0, n, 32, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) encode_one(texts[static_cast<size_t>(i)], base + i * d);
  });
  return out;
}

}  // namespace rlrf
