// bench_dpo: DPO training throughput of the LLM engine (tinystories-656k by default): pairs/s and
// tokens/s, LoRA and full fine-tune, fp32 and bf16, chosen and rejected packed into one sequence
// (the default) and as two rows (TRL's layout), plus the once-per-round reference pass; next to
// this machine's matmul throughput for the training shapes, so the figure reads as a fraction of
// what the matmuls alone could reach.
//
//   bench_dpo [--model DIR] [--pairs 32] [--prompt-tokens 400] [--response-tokens 96]
//             [--batch 2] [--grad-accum 8] [--dtypes fp32,bf16] [--threads N]
//
// The pairs have the demo's shape: a prompt of ~400 tokens and two responses of up to 96 (the
// rejected one shorter, as sampled responses differ). tokens/s counts the tokens through the policy
// (the prompt once when packed, twice as two rows), so compare layouts by pairs/s. A DPO run's
// seconds include its reference pass, as a user sees them. FLOPs: 2 x (matmul parameters) per token
// and 4 x heads x head_dim per attended key per layer for a forward; a full fine-tune step is 3
// forwards' worth, a LoRA step 2 (the frozen base weights need no weight gradient); the reference
// pass adds one forward.
#include <ATen/ATen.h>
#include <cstdint>

#include <chrono>
#include <cstdio>
#include <random>
#include <string>

#include "align/dpo.h"
#include "llm/checkpoint.h"
#include "llm/lora.h"
#include "util/files.h"
#include "util/log.h"
#include "runtime/runtime.h"
#include "util/strings.h"

using namespace rlrf;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Parameters inside matmuls, lm_head included, embedding lookup excluded.
int64_t matmul_parameters(const llm::ModelConfig& c) {
  const int64_t h = c.hidden_size, layers = c.num_hidden_layers;
  return layers * (h * c.q_dim() + 2 * h * c.kv_dim() + c.q_dim() * h + 3 * h * c.intermediate_size) +
         c.vocab_size * h;
}

// GFLOP/s of one forward pass's matmuls over `tokens` rows (the training micro-batch shape).
double matmul_gflops(const llm::ModelConfig& c, int64_t tokens, at::ScalarType dtype) {
  c10::InferenceMode guard;
  const int64_t h = c.hidden_size, layers = c.num_hidden_layers;
  struct Shape { int64_t n, k, count; };
  const Shape shapes[] = {{c.q_dim(), h, layers},          {c.kv_dim(), h, 2 * layers}, {h, c.q_dim(), layers},
                          {c.intermediate_size, h, 2 * layers}, {h, c.intermediate_size, layers}, {c.vocab_size, h, 1}};
  double flops = 0, secs = 0;
  for (const Shape& s : shapes) {
    at::Tensor x = at::randn({tokens, s.k}).to(dtype), w = at::randn({s.n, s.k}).to(dtype);
    for (int i = 0; i < 3; ++i) at::linear(x, w);
    double best = 1e30;
    for (int t = 0; t < 10; ++t) {
      auto t0 = Clock::now();
      at::linear(x, w);
      best = std::min(best, seconds_since(t0));
    }
    flops += 2.0 * tokens * s.n * s.k * s.count;
    secs += best * s.count;
  }
  return flops / secs / 1e9;
}

std::vector<PreferencePair> make_pairs(int n, int prompt_tokens, int response_tokens, int64_t vocab) {
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<int32_t> tok(3, static_cast<int32_t>(vocab - 1));
  std::vector<PreferencePair> pairs;
  for (int i = 0; i < n; ++i) {
    PreferencePair p;
    p.user = i;
    p.prompt.push_back(1);  // BOS
    for (int t = 1; t < prompt_tokens; ++t) p.prompt.push_back(tok(rng));
    for (int t = 0; t < response_tokens; ++t) p.chosen.push_back(tok(rng));
    for (int t = 0; t < response_tokens * 3 / 4; ++t) p.rejected.push_back(tok(rng));
    pairs.push_back(std::move(p));
  }
  return pairs;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model_dir = (shared_dir() / "models" / "tinystories-656k").string();
  int n_pairs = 32, prompt_tokens = 400, response_tokens = 96, batch = 2, accum = 8, threads = 0;
  std::string dtypes = "fp32,bf16";
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i], v = argv[i + 1];
    if (a == "--model") model_dir = v;
    else if (a == "--pairs") n_pairs = std::stoi(v);
    else if (a == "--prompt-tokens") prompt_tokens = std::stoi(v);
    else if (a == "--response-tokens") response_tokens = std::stoi(v);
    else if (a == "--batch") batch = std::stoi(v);
    else if (a == "--grad-accum") accum = std::stoi(v);
    else if (a == "--dtypes") dtypes = v;
    else if (a == "--threads") threads = std::stoi(v);
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 1;
    }
  }
  threads = init_threads(threads);
  set_log_level(LogLevel::kWarn);  // no per-step lines
  const llm::ModelConfig config = llm::ModelConfig::load(model_dir);
  const std::vector<PreferencePair> pairs = make_pairs(n_pairs, prompt_tokens, response_tokens, config.vocab_size);
  const int64_t mparams = matmul_parameters(config);
  std::printf("model %s: %lld parameters (%lld in matmuls)\n", model_dir.c_str(),
              static_cast<long long>(config.num_parameters()), static_cast<long long>(mparams));
  std::printf("threads %d; %d pairs, prompt %d tokens, responses %d / %d tokens, batch %d x accum %d, 1 epoch\n\n",
              threads, n_pairs, prompt_tokens, response_tokens, response_tokens * 3 / 4, batch, accum);
  // FLOPs of one forward over the pairs in a layout: matmuls per token, attention per attended key.
  auto forward_flops = [&](bool packed) {
    const double per_key = 4.0 * config.num_hidden_layers * config.q_dim();
    double f = 0;
    for (const PreferencePair& p : pairs) {
      const double P = p.prompt.size(), A = p.chosen.size(), B = p.rejected.size();
      const double tokens = packed ? P + A + B : 2 * P + A + B;
      const double keys_prompt = P * (P + 1) / 2;  // causal keys seen by the prompt's tokens
      const double keys_answers = A * P + A * (A + 1) / 2 + B * P + B * (B + 1) / 2;
      f += 2.0 * mparams * tokens + per_key * ((packed ? 1 : 2) * keys_prompt + keys_answers);
    }
    return f;
  };
  std::printf("%-5s %-10s %-7s %9s %10s %10s %14s %9s\n", "dtype", "pass", "layout", "pairs/s", "tokens/s", "GFLOP/s",
              "matmul GFLOP/s", "fraction");
  // Rows of one micro-batch: both answers of `batch` pairs, at the mean sequence length.
  const int64_t rows = 2LL * batch * (prompt_tokens + (response_tokens + response_tokens * 3 / 4) / 2);
  for (std::string_view dname : split(dtypes, ",")) {
    const at::ScalarType dtype = llm::parse_dtype(std::string(dname));
    const double peak = matmul_gflops(config, rows, dtype);
    auto row = [&](const char* pass, bool packed, double seconds, int64_t tokens, double flops) {
      const double achieved = flops / seconds / 1e9;
      std::printf("%-5s %-10s %-7s %9.2f %10.0f %10.2f %14.2f %8.1f%%\n", std::string(dname).c_str(), pass,
                  packed ? "packed" : "2 rows", n_pairs / seconds, tokens / seconds, achieved, peak, 100.0 * achieved / peak);
      std::fflush(stdout);
    };
    llm::ModelOptions o;
    o.dtype = dtype;
    for (bool packed : {true, false}) {  // the reference pass: forward only, no grad, once per round
      llm::LlamaForCausalLM model = llm::load_model(model_dir, o);
      std::vector<double> rc, rr;
      reference_logprobs(model, {pairs.begin(), pairs.begin() + std::min<int>(4, n_pairs)}, rc, rr, 8, packed);  // warm up
      auto t0 = Clock::now();
      reference_logprobs(model, pairs, rc, rr, 8, packed);
      const double secs = seconds_since(t0);
      int64_t tokens = 0;
      for (const auto& p : pairs)
        tokens += (packed ? 1 : 2) * static_cast<int64_t>(p.prompt.size()) + p.chosen.size() + p.rejected.size();
      row("reference", packed, secs, tokens, forward_flops(packed));
    }
    for (const char* finetune : {"lora", "full"}) {
      for (bool packed : {true, false}) {
        llm::LlamaForCausalLM model = llm::load_model(model_dir, o);
        DpoConfig dc;
        dc.batch_size = batch;
        dc.grad_accum = accum;
        dc.epochs = 1;
        dc.finetune = finetune;
        dc.pack_pairs = packed;
        if (dc.finetune == "lora") {
          dc.lora.target_modules = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
          llm::apply_lora(model, dc.lora);
        }
        DpoResult r = train_dpo(model, pairs, dc);
        const double passes = dc.finetune == "lora" ? 2.0 + 1.0 : 3.0 + 1.0;  // training + reference
        row(dc.finetune == "lora" ? "dpo lora" : "dpo full", packed, r.seconds, r.tokens, passes * forward_flops(packed));
      }
    }
  }
  return 0;
}
