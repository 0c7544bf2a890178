// bench_generate: generated tokens/s of the LLM engine (tinystories-656k by default) at several
// batch sizes and dtypes, next to this machine's measured matmul throughput for the model's own
// shapes, so the figure reads as a fraction of what the matmuls alone could reach.
//
//   bench_generate [--model DIR] [--new-tokens 128] [--prompt-tokens 6] [--batches 1,16,64] [--dtypes fp32,bf16] [--threads N]
//                  [--profile DIR] [--attention-peer 1]
//
// --prompt-tokens N > 6 repeats the story opening up to N tokens (the demo's prompts hold ~400), so
// the prefill and the longer attention are timed too; tokens/s still counts generated tokens only.
//
// Model FLOPs per generated token = 2 x (matmul parameters, lm_head included, embedding lookup
// excluded) + 4 x layers x context x (heads x head_dim) for attention scores and values, with the
// context averaged over the generated span. Timings are the best of several runs (the machine may
// be shared).
//
// --attention-peer 1: every row is also timed with attention through ATen's operators (the model's
// set_fused_attention(false) and set_one_pass_softmax(false)), the two alternating, and the
// row prints that figure and the ratio.
//
// --profile DIR: after each row's timing, one more generate call under libtorch's profiler; its
// chrome trace goes to DIR/<dtype>-<batch>-<distinct|4pp>.json and the ATen operators that took
// the most self time (their own time, nested operators subtracted) are printed under the row.
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <cstdint>

#include <torch/csrc/autograd/profiler_legacy.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "matmul_rate.h"
#include "profile.h"

#include "llm/checkpoint.h"
#include "llm/cpu_attention.h"
#include "llm/kv_cache.h"
#include "llm/generate.h"
#include "llm/sampler.h"
#include "llm/single_stream.h"
#include "util/files.h"
#include "runtime/runtime.h"
#include "util/strings.h"

using namespace rlrf::llm;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct Shape {
  int64_t n, k;  // weight [n, k]
  int64_t count;  // how many such matmuls per token
};

// The matmul shapes of one decoding step (per token).
std::vector<Shape> model_shapes(const ModelConfig& c) {
  const int64_t h = c.hidden_size;
  return {{c.q_dim(), h, c.num_hidden_layers},        {c.kv_dim(), h, 2 * c.num_hidden_layers},
          {h, c.q_dim(), c.num_hidden_layers},        {c.intermediate_size, h, 2 * c.num_hidden_layers},
          {h, c.intermediate_size, c.num_hidden_layers}, {c.vocab_size, h, 1}};
}

// Seconds per call of `f`: the best of many short trials (the machine may be shared; the best
// trial is the least disturbed one).
template <typename F>
double best_time(F&& f, int trials = 30, double trial_seconds = 0.01) {
  for (int i = 0; i < 5; ++i) f();  // warm up
  double best = 1e30;
  for (int t = 0; t < trials; ++t) {
    int reps = 0;
    auto t0 = Clock::now();
    do {
      f();
      ++reps;
    } while (seconds_since(t0) < trial_seconds);
    best = std::min(best, seconds_since(t0) / reps);
  }
  return best;
}

// GFLOP/s of the model's matmuls at batch m: total flops of one step's matmuls over their time.
double matmul_gflops(const ModelConfig& c, int64_t m, at::ScalarType dtype) {
  c10::InferenceMode guard;
  double flops = 0, secs = 0;
  for (const Shape& s : model_shapes(c)) {
    at::Tensor x = at::randn({m, s.k}).to(dtype), w = at::randn({s.n, s.k}).to(dtype);
    flops += 2.0 * m * s.n * s.k * s.count;
    secs += best_time([&] { at::linear(x, w); }) * s.count;
  }
  return flops / secs / 1e9;
}

std::vector<int64_t> parse_list(const std::string& s) {
  std::vector<int64_t> out;
  for (auto p : rlrf::split(s, ",")) out.push_back(*rlrf::parse_int(rlrf::trim(p)));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model_dir = (rlrf::shared_dir() / "models" / "tinystories-656k").string();
  int64_t new_tokens = 128, prompt_tokens = 6;
  std::string batches = "1,16,64", dtypes = "fp32,bf16", profile_dir;
  int threads = 0;
  bool attention_peer = false;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i], v = argv[i + 1];
    if (a == "--model") model_dir = v;
    else if (a == "--new-tokens") new_tokens = std::stoll(v);
    else if (a == "--prompt-tokens") prompt_tokens = std::stoll(v);
    else if (a == "--batches") batches = v;
    else if (a == "--dtypes") dtypes = v;
    else if (a == "--threads") threads = std::stoi(v);
    else if (a == "--profile") profile_dir = v;
    else if (a == "--attention-peer") attention_peer = v != "0";
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 1;
    }
  }
  threads = rlrf::init_threads(threads);
  const ModelConfig config = ModelConfig::load(model_dir);
  const std::vector<int32_t> opening = {1, 80, 147, 201, 282, 57};  // "Once upon a time"
  std::vector<int32_t> prompt = opening;
  while (static_cast<int64_t>(prompt.size()) < prompt_tokens) prompt.push_back(opening[1 + prompt.size() % (opening.size() - 1)]);
  const double ctx = prompt.size() + new_tokens / 2.0;             // mean attended length
  int64_t matmul_params = 0;
  for (const Shape& s : model_shapes(config)) matmul_params += s.n * s.k * s.count;
  const double flops_per_token =
      2.0 * matmul_params + 4.0 * config.num_hidden_layers * ctx * config.num_attention_heads * config.head_dim;
  // The prefill of a prompt of P tokens: its matmuls plus causal attention over ~P/2 keys per token,
  // shared out over the generated tokens so that the GFLOP/s column counts all the work done.
  const double P = static_cast<double>(prompt.size());
  const double prefill_flops =
      P * (2.0 * matmul_params + 2.0 * config.num_hidden_layers * P * config.num_attention_heads * config.head_dim);
  std::printf("model %s: %lld parameters (%lld in matmuls), %.2f MFLOP per generated token (context ~%.0f)\n",
              model_dir.c_str(), static_cast<long long>(config.num_parameters()), static_cast<long long>(matmul_params),
              flops_per_token / 1e6, ctx);
  std::printf("threads %d; prompt %lld tokens, %lld new tokens per sequence, no stop tokens, temperature 1\n", threads,
              static_cast<long long>(prompt.size()), static_cast<long long>(new_tokens));
  std::printf("GFLOP/s counts decoding and prefill work (%.2f MFLOP per prompt); \"of bound\": the time the same work takes\n"
              "at this machine's measured matmul throughput for its shapes, over the time taken\n\n",
              prefill_flops / 1e6);
  for (std::string_view dname : rlrf::split(dtypes, ",")) {
    const at::ScalarType dtype = parse_dtype(std::string(dname));
    std::printf("%s: square 1024 matmul %.1f GFLOP/s\n", std::string(dname).c_str(), rlrf::square_matmul_gflops(1024, dtype));
  }
  std::printf("\n%-5s %6s %9s %12s %12s %10s\n", "dtype", "batch", "prompts", "tokens/s", "GFLOP/s", "of bound");
  for (std::string_view dname : rlrf::split(dtypes, ",")) {
    ModelOptions o;
    o.dtype = parse_dtype(std::string(dname));
    LlamaForCausalLM model = load_model(model_dir, o);
    for (int64_t b : parse_list(batches)) {
      for (int64_t per_prompt : {int64_t{1}, int64_t{4}}) {
        if (per_prompt > b) continue;
        // One fp32 stream: the plain-C++ single-stream step (the default), then the ATen path beside it.
        const bool two_paths = b == 1 && o.dtype == at::kFloat;
        for (bool single : {true, false}) {
          if (!single && !two_paths) continue;
          // Distinct prompts (one token differs per prompt); with 4 per prompt, the 4 samples of a
          // prompt share its prefill, as the N responses of one user do in the RLRF loop.
          std::vector<GenerateRequest> reqs;
          for (int64_t i = 0; i < b; ++i) {
            std::vector<int32_t> p = prompt;
            p.back() = static_cast<int32_t>(100 + (i / per_prompt) % 1000);
            reqs.push_back({p, i % per_prompt});
          }
          GenerateOptions g;
          g.max_new_tokens = new_tokens;
          g.batch_size = b;
          g.sampling.temperature = 1.0;
          g.threads = threads;  // as asked, not generate's automatic choice
          g.single_stream = single;
          generate(model, reqs, g);  // warm up
          double best = 1e30, best_aten = 1e30;
          const bool peer_row = attention_peer && !(two_paths && single);
          // Best of 5 runs; of 20 for one stream, whose run (128 tokens, a few ms) a moment's
          // contention on a shared machine doubles.
          for (int rep = 0; rep < (b == 1 ? 20 : 5); ++rep) {
            for (int aten = 0; aten <= (peer_row ? 1 : 0); ++aten) {
              model->set_fused_attention(!aten);
              model->set_one_pass_softmax(!aten);
              auto t0 = Clock::now();
              generate(model, reqs, g);
              (aten ? best_aten : best) = std::min(aten ? best_aten : best, seconds_since(t0));
            }
          }
          model->set_fused_attention(true);
          model->set_one_pass_softmax(true);
          const double tokens = static_cast<double>(b * new_tokens);
          const double prompts = static_cast<double>(b / per_prompt);
          const double work = tokens * flops_per_token + prompts * prefill_flops;
          // The compute bound: the same work at the measured matmul throughput of its shapes (decode
          // steps have b rows, the prefill b / per_prompt x P rows).
          const double bound = tokens * flops_per_token / (matmul_gflops(config, b, o.dtype) * 1e9) +
                               prompts * prefill_flops /
                                   (matmul_gflops(config, std::min<int64_t>(4096, static_cast<int64_t>(prompts * P)), o.dtype) * 1e9);
          std::printf("%-5s %6lld %9s %12.0f %12.2f %9.1f%%%s", std::string(dname).c_str(), static_cast<long long>(b),
                      per_prompt == 1 ? "distinct" : "4/prompt", tokens / best, work / best / 1e9, 100.0 * bound / best,
                      two_paths ? (single ? "  single-stream step" : "  ATen path") : "");
          if (peer_row)
            std::printf("  attention through ATen: %.0f tokens/s, %.1f%% (one pass %.2fx)", tokens / best_aten,
                        100.0 * bound / best_aten, best_aten / best);
          std::printf("\n");
          std::fflush(stdout);
          if (!profile_dir.empty() && (!two_paths || !single)) {
            std::filesystem::create_directories(profile_dir);
            const std::filesystem::path trace = std::filesystem::path(profile_dir) /
                (std::string(dname) + "-" + std::to_string(b) + (per_prompt == 1 ? "-distinct" : "-4pp") + ".json");
            {
              torch::autograd::profiler::RecordProfile guard(trace.string());
              generate(model, reqs, g);
            }
            rlrf::print_self_times(trace);
            std::fflush(stdout);
          }
        }
      }
    }
  }
  // Attention in one run, per dtype: a decoding step of `batch` rows at the mean context in one pass
  // (cpu_attention.h, the default) and through ATen's operators (its peer); in bf16 also a
  // prefill of 8 prompts with the one-pass softmax (the default) and with ATen's softmax. Each is
  // the best of many short trials, the two alternating.
  for (std::string_view dname : rlrf::split(dtypes, ",")) {
    ModelOptions o;
    o.dtype = parse_dtype(std::string(dname));
    LlamaForCausalLM model = load_model(model_dir, o);
    c10::InferenceMode guard;
    const int64_t rows = parse_list(batches).back(), P = static_cast<int64_t>(prompt.size());
    const int64_t context = static_cast<int64_t>(ctx), capacity = P + new_tokens;
    KVCache cache = KVCache::allocate(config, rows, capacity, model->options().tensor_options());
    for (at::Tensor& t : cache.keys) t.narrow(3, 0, context).normal_();
    for (at::Tensor& t : cache.values) t.narrow(2, 0, context).normal_();
    at::Tensor ids = at::randint(3, config.vocab_size, {rows, 1}, at::kLong);
    at::Tensor pos = at::full({rows, 1}, context, at::kLong);
    auto step = [&] {
      cache.length = context;
      model->forward(ids, pos, at::Tensor(), &cache);
    };
    const int64_t pre_rows = 8;
    at::Tensor pre_ids = at::randint(3, config.vocab_size, {pre_rows, P}, at::kLong);
    KVCache pre_cache = KVCache::allocate(config, pre_rows, P, model->options().tensor_options());
    auto prefill = [&] {
      pre_cache.length = 0;
      model->forward(pre_ids, at::Tensor(), at::Tensor(), &pre_cache);
    };
    const bool half = o.dtype == at::kBFloat16;
    // The attention alone on layer 0's cache: the kernel, and ATen's matmul, softmax and matmul.
    const int64_t KV = config.num_key_value_heads, G = config.num_attention_heads / KV, D = config.head_dim;
    const at::Tensor q = (at::randn({rows, KV, G, D}) * 0.25).to(o.dtype);
    const at::Tensor keys_t = cache.keys[0].narrow(3, 0, context), values = cache.values[0].narrow(2, 0, context);
    auto kernel = [&] { cpu_attention(q.view({rows, 1, KV * G, D}), keys_t, values, at::Tensor(), /*causal=*/true); };
    auto aten_ops = [&] {
      at::matmul(at::softmax(at::matmul(q, keys_t), -1, at::kFloat).to(o.dtype), values);
    };
    double best[2][2] = {{1e30, 1e30}, {1e30, 1e30}};  // [ours][decode, prefill]
    double alone[2] = {1e30, 1e30};                     // [ours]
    for (int round = 0; round < 3; ++round) {
      for (int ours = 1; ours >= 0; --ours) {
        model->set_fused_attention(ours);
        model->set_one_pass_softmax(ours);
        best[ours][0] = std::min(best[ours][0], best_time(step, 10, 0.02));
        if (half) best[ours][1] = std::min(best[ours][1], best_time(prefill, 5, 0.05));
        alone[ours] = std::min(alone[ours], best_time(ours ? std::function<void()>(kernel) : std::function<void()>(aten_ops), 10, 0.02));
      }
    }
    model->set_fused_attention(true);
    model->set_one_pass_softmax(true);
    std::printf("\n%s attention, one run: a decoding step of %lld rows at context %lld %.0f us in one pass, %.0f us "
                "with ATen's operators (%.2fx)",
                std::string(dname).c_str(), static_cast<long long>(rows), static_cast<long long>(context),
                best[1][0] * 1e6, best[0][0] * 1e6, best[0][0] / best[1][0]);
    std::printf(" (one layer's attention alone: %.0f us against %.0f us, %.2fx)", alone[1] * 1e6, alone[0] * 1e6,
                alone[0] / alone[1]);
    if (half)
      std::printf("; a prefill of %lld x %lld tokens %.1f ms with the one-pass softmax against %.1f ms (%.2fx)",
                  static_cast<long long>(pre_rows), static_cast<long long>(P), best[1][1] * 1e3, best[0][1] * 1e3,
                  best[0][1] / best[1][1]);
    std::printf("\n");
  }
  // Where the time of one single-stream token goes (fp32): the plain-C++ model step at the mean
  // context, and the ATen sampler on its logits (temperature 1, as the rows above).
  if (dtypes.find("fp32") != std::string::npos) {
    LlamaForCausalLM model = load_model(model_dir, ModelOptions{});
    c10::InferenceMode guard;
    auto single = single_stream_model(*model);
    if (single) {
      const int64_t context = static_cast<int64_t>(ctx);
      KVCache cache = KVCache::allocate(config, 1, context + 1, model->options().tensor_options());
      for (at::Tensor& t : cache.keys) t.normal_();
      for (at::Tensor& t : cache.values) t.normal_();
      cache.length = context;
      at::Tensor logits = at::empty({1, config.vocab_size});
      const double step1 = best_time([&] { single_stream_step(*single, 80, context, cache, 0, 0, logits.data_ptr<float>(), 1); });
      const double step = best_time([&] { single_stream_step(*single, 80, context, cache, 0, 0, logits.data_ptr<float>(), threads); });
      SamplingOptions so;
      so.temperature = 1.0;
      std::vector<Rng> rngs(1);
      std::vector<int32_t> tokens;
      std::vector<float> logprobs;
      const double sample = best_time([&] { sample_tokens(logits, so, rngs, tokens, logprobs); });
      at::Tensor logits64 = at::randn({64, config.vocab_size}) * 3;
      std::vector<Rng> rngs64(64);
      const double sample64 = best_time([&] { sample_tokens(logits64, so, rngs64, tokens, logprobs); });
      SamplingOptions nucleus = so;
      nucleus.top_p = 0.95;  // the loop's configs sample with top-p
      const double nucleus64 = best_time([&] { sample_tokens(logits64, nucleus, rngs64, tokens, logprobs); });
      const at::Tensor model_logits64 = logits.expand({64, config.vocab_size}).contiguous();
      const double model64 = best_time([&] { sample_tokens(model_logits64, nucleus, rngs64, tokens, logprobs); });
      std::printf("\nfp32 single stream, one token at context %lld: model step %.1f us on %d threads (%.1f us on one), "
                  "sampling %.1f us (64 rows: %.1f us; with top-p 0.95: %.1f us on randn*3 logits, %.1f us on the "
                  "model's)\n",
                  static_cast<long long>(context), step * 1e6, threads, step1 * 1e6, sample * 1e6, sample64 * 1e6,
                  nucleus64 * 1e6, model64 * 1e6);
    }
  }
  return 0;
}
