// bench_encode: speed of the knowledge encoders.
// GloVe + SIF on MovieLens-100K knowledge texts: load time of the GloVe binary; texts/s and words/s
// for profile summaries, for the KAR encoder input (history + ". " + profile) and for item texts,
// single-threaded and with all threads; the encoding cache cold and warm.
// BERT (--bert): texts/s of a bert-base-shaped model (768 hidden, 12 layers, 12 heads, random
// weights built in memory) at batch 64 for each length and dtype, on the same threads as a plain
// PyTorch-Python peer run in the same process tree (tools/ref/encode_bert_ref.py bench through
// /usr/bin/python3), with the ratio; and, with --demo-model DIR, the time to encode the demo's
// knowledge texts (943 KAR user inputs + 1682 item texts of MovieLens-100K) with that model.
// usage: bench_encode [glove.bin]                       GloVe part (default <deps>/glove-100d.bin)
//        bench_encode --bert [--threads 2] [--batch 64] [--lengths 64,256] [--dtypes fp32,bf16]
//                     [--reps 1] [--no-python] [--demo-model DIR] [--demo-dtype bf16]
//        bench_encode --write-random-bert DIR           a random bert-base-uncased-shaped model
//                                                       directory (config, weights, real tokenizer)
#include <ATen/Parallel.h>
#include <cstdint>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "data/dataset.h"
#include "data/prepare.h"
#include "encode/bert.h"
#include "encode/bert_encoder.h"
#include "encode/encode_cache.h"
#include "encode/glove_encoder.h"
#include "encode/word_tokenizer.h"
#include "knowledge/knowledge.h"
#include "llm/safetensors.h"
#include "text/wordpiece.h"
#include "util/error.h"
#include "util/files.h"
#include "runtime/runtime.h"
#include "util/strings.h"

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

static int glove_main(const fs::path& bin) {
  const int threads = init_threads();

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

// ---------------------------------------------------------------------------------------------
// BERT

static bert::BertConfig bert_base_config() {
  bert::BertConfig c;
  c.vocab_size = 30522;
  c.hidden_size = 768;
  c.num_hidden_layers = 12;
  c.num_attention_heads = 12;
  c.intermediate_size = 3072;
  c.max_position_embeddings = 512;
  return c;
}

// Writes a bert-base-uncased-shaped model with random weights (N(0, 0.02)) and the real
// bert-base-uncased tokenizer into `dir`: what `rlrf encode --model` and `[knowledge] encoder =
// "bert"` load. Random weights: its vectors carry no meaning, only the paper's shapes and cost.
static int write_random_bert(const fs::path& dir) {
  init_threads();
  bert::BertModel model = bert::random_model(bert_base_config(), at::kFloat, 1);
  std::vector<llm::NamedTensor> tensors;
  for (auto& item : model->named_parameters(true)) tensors.push_back({item.key(), item.value().detach()});
  ensure_dir(dir);
  llm::save_safetensors(dir / "model.safetensors", tensors);
  nlohmann::json cfg = {{"architectures", {"BertModel"}}, {"model_type", "bert"}, {"vocab_size", 30522},
                        {"hidden_size", 768}, {"num_hidden_layers", 12}, {"num_attention_heads", 12},
                        {"intermediate_size", 3072}, {"hidden_act", "gelu"}, {"max_position_embeddings", 512},
                        {"type_vocab_size", 2}, {"layer_norm_eps", 1e-12}, {"pad_token_id", 0},
                        {"torch_dtype", "float32"}, {"_note", "random-initialised weights (bench_encode)"}};
  write_file_atomic(dir / "config.json", cfg.dump(2));
  const fs::path tok = shared_dir() / "tokenizers" / "bert-base-uncased";
  for (const char* f : {"tokenizer.json", "tokenizer_config.json", "vocab.txt"})
    write_file_atomic(dir / f, read_file(tok / f));
  std::printf("wrote a random-initialised bert-base-uncased-shaped model to %s\n", dir.string().c_str());
  return 0;
}

struct BertRow {
  std::string dtype;
  int length = 0;
  double cpp = 0, python = 0;  // texts/s
};

static std::vector<int> parse_list(const std::string& s) {
  std::vector<int> out;
  for (auto part : split(s, ",")) {
    auto v = parse_int(trim(part));
    RLRF_CHECK(v && *v > 0, "'{}' is not a list of positive integers", s);
    out.push_back(static_cast<int>(*v));
  }
  return out;
}

static int bert_main(const std::vector<std::string>& args) {
  int threads = 2, batch = 64, reps = 1;
  std::string lengths = "64,256", dtypes = "fp32,bf16", demo_dtype = "bf16";
  bool python = true;
  fs::path demo_model;
  for (size_t i = 0; i < args.size(); ++i) {
    auto next = [&]() -> std::string {
      RLRF_CHECK(i + 1 < args.size(), "{} needs a value", args[i]);
      return args[++i];
    };
    if (args[i] == "--threads") threads = static_cast<int>(*parse_int(next()));
    else if (args[i] == "--batch") batch = static_cast<int>(*parse_int(next()));
    else if (args[i] == "--reps") reps = static_cast<int>(*parse_int(next()));
    else if (args[i] == "--lengths") lengths = next();
    else if (args[i] == "--dtypes") dtypes = next();
    else if (args[i] == "--no-python") python = false;
    else if (args[i] == "--demo-model") demo_model = next();
    else if (args[i] == "--demo-dtype") demo_dtype = next();
    else if (args[i] != "--bert") fail("unknown option '{}'", args[i]);
  }
  init_threads(threads);
  std::printf("BERT-base shape (768 hidden, 12 layers, 12 heads, 3072 FFN), random weights, batch %d, %d threads, "
              "best of %d\n", batch, at::get_num_threads(), reps);
  std::vector<BertRow> rows;
  for (auto dt : split(dtypes, ",")) {
    const at::ScalarType dtype = dt == "bf16" ? at::kBFloat16 : at::kFloat;
    bert::BertModel model = bert::random_model(bert_base_config(), dtype, 1);
    for (int T : parse_list(lengths)) {
      at::Tensor ids = at::randint(1000, 30000, {batch, T}, at::kLong);
      at::Tensor mask = at::ones({batch, T}, at::kLong);
      c10::InferenceMode guard;
      model->forward(ids.narrow(0, 0, 2).narrow(1, 0, 16), mask.narrow(0, 0, 2).narrow(1, 0, 16));  // warm-up
      double best = 1e18;
      for (int r = 0; r < reps; ++r) {
        auto t0 = Clock::now();
        at::Tensor h = model->forward(ids, mask).to(at::kFloat);
        at::Tensor m = mask.unsqueeze(-1).to(at::kFloat);
        at::Tensor pooled = (h * m).sum(1) / m.sum(1);
        best = std::min(best, seconds_since(t0));
      }
      rows.push_back({std::string(dt), T, batch / best, 0});
      std::printf("  C++     %-4s length %3d: %8.2f texts/s (%.2f s per batch)\n", std::string(dt).c_str(), T,
                  batch / best, best);
      std::fflush(stdout);
    }
  }
  if (python) {
    const fs::path script = source_dir() / "tools" / "ref" / "encode_bert_ref.py";
    std::string cmd = fmt::format("/usr/bin/python3 '{}' bench --threads {} --batch {} --lengths {} --dtypes {} --reps {}",
                                  script.string(), threads, batch, lengths, dtypes, reps);
    std::printf("  Python peer: %s\n", cmd.c_str());
    std::fflush(stdout);
    std::string out;
    if (FILE* p = popen(cmd.c_str(), "r")) {
      char buf[4096];
      for (size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
      int rc = pclose(p);
      if (rc != 0) std::printf("  Python peer failed (exit %d): is python3-torch installed?\n", rc);
    }
    size_t last = out.rfind("{\"torch\"");
    if (last != std::string::npos) {
      nlohmann::json j = nlohmann::json::parse(out.substr(last));
      std::printf("  Python: torch %s, %d threads\n", j["torch"].get<std::string>().c_str(), j["threads"].get<int>());
      for (const auto& r : j["results"])
        for (BertRow& row : rows)
          if (row.dtype == r["dtype"].get<std::string>() && row.length == r["length"].get<int>())
            row.python = r["texts_per_s"].get<double>();
    }
  }
  std::printf("\n| dtype | length | C++ texts/s | PyTorch-Python texts/s | C++ / Python |\n|---|---|---|---|---|\n");
  for (const BertRow& r : rows)
    std::printf("| %s | %d | %.2f | %.2f | %s |\n", r.dtype.c_str(), r.length, r.cpp, r.python,
                r.python > 0 ? fmt::format("{:.2f}x", r.cpp / r.python).c_str() : "-");
  std::fflush(stdout);

  if (!demo_model.empty()) {
    PreparedData data = prepare(load_dataset("ml-100k", data_dir()), PrepareConfig{});
    std::vector<std::string> profiles = user_knowledge(data, "profile");
    std::vector<std::string> texts;
    for (size_t u = 0; u < profiles.size(); ++u)
      texts.push_back(user_text_for_encoding(data, static_cast<int32_t>(u), profiles[u]));
    const size_t n_users = texts.size();
    for (std::string& t : item_knowledge_from_metadata(data.dataset)) texts.push_back(std::move(t));
    BertEncoderOptions o;
    o.model = demo_model;
    o.dtype = demo_dtype;
    o.batch_size = batch;
    BertTextEncoder enc(o);
    int64_t tokens = 0;
    for (const std::string& t : texts) tokens += static_cast<int64_t>(enc.tokenize(t).ids.size());
    auto t0 = Clock::now();
    at::Tensor v = enc.encode(texts);
    const double s = seconds_since(t0);
    std::printf("\ndemo knowledge texts (%zu KAR user inputs + %zu item texts, %.1f tokens/text after truncation to "
                "%d) with %s: %.1f s, %.1f texts/s -> [%lld, %lld]\n",
                n_users, texts.size() - n_users, static_cast<double>(tokens) / static_cast<double>(texts.size()),
                enc.max_length(), enc.name().c_str(), s, static_cast<double>(texts.size()) / s,
                static_cast<long long>(v.size(0)), static_cast<long long>(v.size(1)));
  }
  return 0;
}

int main(int argc, char** argv) {
  try {
    std::vector<std::string> args(argv + 1, argv + argc);
    if (!args.empty() && args[0] == "--write-random-bert") {
      RLRF_CHECK(args.size() == 2, "usage: bench_encode --write-random-bert DIR");
      return write_random_bert(args[1]);
    }
    if (!args.empty() && args[0] == "--bert") return bert_main(args);
    return glove_main(args.empty() ? default_glove_bin_path() : fs::path(args[0]));
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_encode: %s\n", e.what());
    return 1;
  }
}
