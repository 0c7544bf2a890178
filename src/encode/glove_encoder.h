// The default text encoder: GloVe word vectors averaged with SIF weights (Arora et al. 2017,
// "A simple but tough-to-beat baseline for sentence embeddings"), without the common-component
// removal (that needs a corpus fit; the reranker's adapter can learn any constant offset).
//
//   tokens   word_tokenizer.h; a token not in the vocabulary that holds hyphens is looked up by its
//            parts ("time-traveling" -> "time", "traveling"); a year or a decade not in the
//            vocabulary ("1995", "1990s") is read as its decade's "mid-1990s" (the wink vocabulary
//            has no bare numbers, but has "mid-1800s" to "mid-2000s": without this an item's
//            release year and a card's "Era: 1990s" encoded to nothing); other unknown tokens are
//            skipped
//   p(w)     estimated from the word's frequency rank r (0-based) by Zipf's law:
//            p(w) = 1 / ((r + 1) * H_N), H_N = sum_{k=1..N} 1/k over the N vocabulary words
//   weight   a / (a + p(w)), a = 1e-3: "the" gets 0.013, rank 100 0.57, rank 1000 0.93
//   vector   sum_w weight(w) v_w / sum_w weight(w), then L2-normalised to unit length
//   empty    a text with no known token encodes to the zero vector
//
// Why L2-normalise: the length of an averaged word vector mostly reflects how many and how
// dissimilar the words are (long texts average toward the centroid), not what the text says;
// unit vectors put profile texts, LLM responses and item texts of very different lengths on one
// scale for the adapter, and make dot products cosine similarities.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "encode/encoder.h"
#include "encode/glove_vectors.h"

namespace rlrf {

inline constexpr double kSifA = 1e-3;

// The vocabulary word a year or decade token falls back to: "1995" and "1990s" -> "mid-1990s";
// "" for any other token ("1995s", "95", "4.5").
std::string decade_word(std::string_view token);

// The SIF weight of the word at 0-based frequency rank `rank` in a vocabulary of `vocab_size` words.
double sif_weight(int64_t rank, int64_t vocab_size, double a = kSifA);

class GloveSifEncoder : public TextEncoder {
 public:
  explicit GloveSifEncoder(std::shared_ptr<const GloveVectors> vectors, double a = kSifA);
  std::string name() const override;  // "glove-100d-sif-decades"
  int dim() const override;
  // [texts.size(), dim()] float32; texts are encoded in parallel (at::parallel_for).
  at::Tensor encode(const std::vector<std::string>& texts) override;

  // Encodes one text into out[0..dim); returns the number of vocabulary words used.
  int encode_one(std::string_view text, float* out) const;
  // Vocabulary indices of the words the text is made of, in order (after the hyphen fallback).
  std::vector<int64_t> word_ids(std::string_view text) const;
  double weight(int64_t rank) const;
  const GloveVectors& vectors() const { return *vectors_; }

 private:
  template <typename F>
  void for_each_word_id(std::string_view text, F&& f) const;
  std::shared_ptr<const GloveVectors> vectors_;
  double a_;
  double harmonic_;  // H_N
};

}  // namespace rlrf
