// bench_encode: speed of the GloVe + SIF text encoder on MovieLens-100K knowledge texts.
// Prints: load time of the GloVe binary; texts/s and words/s for profile summaries, for the KAR
// encoder input (history + ". " + profile) and for item texts, single-threaded and with all
// threads; the encoding cache cold and warm.
// usage: bench_encode [glove.bin]   (default <deps>/glove-100d.bin; MovieLens-100K from data_dir())
#include <ATen/Parallel.h>

#include <chrono>
#include <cstdio>

#include "data/dataset.h"
#include "data/prepare.h"
#include "encode/encode_cache.h"
#include "encode/glove_encoder.h"
#include "encode/word_tokenizer.h"
#include "knowledge/knowledge.h"
#include "util/files.h"
#include "util/runtime.h"

using namespace rlrf;
using Clock = std::chrono::steady_clock;

static double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Best of `reps` runs of encoding all texts; returns seconds.
static double time_encode(GloveSifEncoder& enc, const std::vector<std::string>& texts, int reps) {
  double best = 1e9;
  for (int r = 0; r < reps; ++r) {
    auto t0 = Clock::now();
    at::Tensor v = enc.encode(texts);
    best = std::min(best, seconds_since(t0));
  }
  return best;
}

static void report(const char* what, GloveSifEncoder& enc, const std::vector<std::string>& texts, int threads_all) {
  int64_t tokens = 0, known = 0;
  for (const std::string& t : texts) {
    tokens += static_cast<int64_t>(tokenize_words(t).size());
    known += static_cast<int64_t>(enc.word_ids(t).size());
  }
  at::set_num_threads(1);
  double one = time_encode(enc, texts, 3);
  at::set_num_threads(threads_all);
  double all = time_encode(enc, texts, 3);
  const double n = static_cast<double>(texts.size());
  std::printf("%-28s %6zu texts, %6.1f tokens/text, %4.1f%% in vocabulary | 1 thread: %9.0f texts/s %6.2f Mwords/s | "
              "%d threads: %9.0f texts/s\n",
              what, texts.size(), static_cast<double>(tokens) / n, 100.0 * static_cast<double>(known) / static_cast<double>(tokens),
              n / one, static_cast<double>(tokens) / one / 1e6, threads_all, n / all);
}

int main(int argc, char** argv) {
  const int threads = init_threads();
  fs::path bin = argc > 1 ? fs::path(argv[1]) : default_glove_bin_path();

  auto t0 = Clock::now();
  auto vectors = GloveVectors::load(bin);
  double first_load = seconds_since(t0);
  double best_load = 1e9;
  for (int r = 0; r < 5; ++r) {
    auto t1 = Clock::now();
    auto again = GloveVectors::load(bin);
    best_load = std::min(best_load, seconds_since(t1));
  }
  std::printf("GloVe binary %s: %lld words x %d; load %.1f ms (first), %.1f ms (best of 5, file cached)\n",
              bin.string().c_str(), static_cast<long long>(vectors->count()), vectors->dim(), first_load * 1e3,
              best_load * 1e3);

  t0 = Clock::now();
  PreparedData data = prepare(load_dataset("ml-100k", data_dir()), PrepareConfig{});
  std::printf("ml-100k loaded and prepared in %.2f s\n", seconds_since(t0));
  t0 = Clock::now();
  std::vector<std::string> profiles = user_knowledge(data, "profile");
  double profile_s = seconds_since(t0);
  std::printf("profile summaries: %zu users in %.1f ms (%.0f users/s)\n", profiles.size(), profile_s * 1e3,
              static_cast<double>(profiles.size()) / profile_s);
  std::vector<std::string> kar_inputs;
  for (size_t u = 0; u < profiles.size(); ++u)
    kar_inputs.push_back(user_text_for_encoding(data, static_cast<int32_t>(u), profiles[u]));
  std::vector<std::string> items = item_knowledge_from_metadata(data.dataset);

  GloveSifEncoder enc(vectors);
  report("profile texts", enc, profiles, threads);
  report("history + profile (KAR)", enc, kar_inputs, threads);
  report("item metadata texts", enc, items, threads);

  fs::path cache = fresh_temp_dir("bench_encode_cache");
  EncodeCacheStats st;
  t0 = Clock::now();
  encode_cached(enc, kar_inputs, cache, &st);
  double cold = seconds_since(t0);
  t0 = Clock::now();
  encode_cached(enc, kar_inputs, cache, &st);
  double warm = seconds_since(t0);
  std::printf("encode_cached (history + profile): cold %.1f ms (%lld misses), warm %.1f ms (%lld hits, %.0f texts/s)\n",
              cold * 1e3, static_cast<long long>(kar_inputs.size()), warm * 1e3, static_cast<long long>(st.hits),
              static_cast<double>(kar_inputs.size()) / warm);
  fs::remove_all(cache);
  return 0;
}
