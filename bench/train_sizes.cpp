// bench_train_sizes: DPO and SFT training at the model sizes users run (~100M and ~1B parameters,
// Llama shapes, random weights), beside the same training written in plain PyTorch
// (bench/peer/train_step.py, run with /usr/bin/python3 on the same shapes, data and threads) as a
// ratio measured in the same run; tokens/s and MFU (model FLOPs over this machine's square-matmul
// rate in the dtype, measured here too).
//
//   bench_train_sizes [--shapes 100m,1b] [--dtypes fp32,bf16] [--passes sft,dpo] [--finetunes lora,full]
//                     [--pairs 4] [--prompt-tokens 128] [--response-tokens 64] [--batch 2]
//                     [--grad-accum 2] [--threads N] [--no-peer]
//
// Shapes: "100m" (vocab 32000, hidden 768, 12 layers of 12 heads, MLP 2048, tied: 110M) and "1b"
// (Llama-3.2-1B's: vocab 128256, hidden 2048, 16 layers, 32 heads / 8 key-value heads, MLP 8192,
// tied: 1.24B). A full fine-tune of 1b (fp32 weights, gradients and AdamW moments: ~20 GB) does not
// fit beside the peer in this machine's 24 GB and is left out.
//
// Both engines: chosen and rejected as two rows (TRL's layout; rlrf4rec's packed layout, its
// default, is an extra row), LoRA r 8 / alpha 16 on all seven projections, AdamW lr 5e-5, clipping
// at 1.0, one epoch, bf16 = matmuls in bf16 on fp32 master weights. A DPO time includes its
// reference pass. Model FLOPs: a forward is 2 x matmul parameters per token plus 4 x layers x
// heads x head_dim per attended key; a LoRA step counts 2 forwards (no weight gradients for the
// frozen base), a full step 3, DPO's reference pass 1 more; a packed pair is counted as the one row
// it is (so its MFU is of the work it does; its ratio to the peer is of the same training).
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <cstdint>

#include <fmt/format.h>

#include <malloc.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <stdexcept>
#include <string>

#include "align/dpo.h"
#include "align/sft.h"
#include "matmul_rate.h"
#include "peer.h"
#include "llm/lora.h"
#include "runtime/runtime.h"
#include "util/log.h"
#include "util/strings.h"

using namespace rlrf;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct Shape {
  std::string name;
  int64_t vocab, hidden, layers, heads, kv_heads, intermediate;
  double rope_theta;
};

const Shape kShapes[] = {{"100m", 32000, 768, 12, 12, 12, 2048, 10000.0},
                         {"1b", 128256, 2048, 16, 32, 8, 8192, 500000.0}};

llm::ModelConfig config_of(const Shape& s) {
  nlohmann::json j = {{"architectures", {"LlamaForCausalLM"}}, {"model_type", "llama"}, {"vocab_size", s.vocab},
                      {"hidden_size", s.hidden}, {"num_hidden_layers", s.layers}, {"num_attention_heads", s.heads},
                      {"num_key_value_heads", s.kv_heads}, {"intermediate_size", s.intermediate},
                      {"max_position_embeddings", 4096}, {"rope_theta", s.rope_theta}, {"rms_norm_eps", 1e-5},
                      {"tie_word_embeddings", true}};
  return llm::ModelConfig::parse(j.dump(), "shape " + s.name);
}

// Random weights as an initialisation would give them: N(0, 0.02), norms at one.
llm::LlamaForCausalLM random_model(const llm::ModelConfig& c) {
  llm::LlamaForCausalLM model(c, llm::ModelOptions{});
  at::manual_seed(0);
  at::NoGradGuard no_grad;
  for (auto& item : model->named_parameters()) {
    if (item.key().find("norm") != std::string::npos) item.value().fill_(1.0);
    else item.value().normal_(0, 0.02);
  }
  return model;
}

int64_t matmul_parameters(const llm::ModelConfig& c) {
  const int64_t h = c.hidden_size;
  return c.num_hidden_layers * (h * c.q_dim() + 2 * h * c.kv_dim() + c.q_dim() * h + 3 * h * c.intermediate_size) +
         c.vocab_size * h;
}

// FLOPs of one forward over a row of T tokens (causal attention: T(T+1)/2 keys attended).
double forward_flops(const llm::ModelConfig& c, double T) {
  return 2.0 * matmul_parameters(c) * T + 4.0 * c.num_hidden_layers * c.q_dim() * T * (T + 1) / 2;
}

struct Run {
  double seconds = 0;
  int64_t tokens = 0;
};

}  // namespace

int main(int argc, char** argv) {
  std::string shapes = "100m,1b", dtypes = "fp32,bf16", passes = "sft,dpo", finetunes = "lora,full";
  int n_pairs = 4, prompt_tokens = 128, response_tokens = 64, batch = 2, accum = 2, threads = 0;
  bool peer = true;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--no-peer") {
      peer = false;
      continue;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "%s needs a value\n", a.c_str());
      return 1;
    }
    std::string v = argv[++i];
    if (a == "--shapes") shapes = v;
    else if (a == "--dtypes") dtypes = v;
    else if (a == "--passes") passes = v;
    else if (a == "--finetunes") finetunes = v;
    else if (a == "--pairs") n_pairs = std::stoi(v);
    else if (a == "--prompt-tokens") prompt_tokens = std::stoi(v);
    else if (a == "--response-tokens") response_tokens = std::stoi(v);
    else if (a == "--batch") batch = std::stoi(v);
    else if (a == "--grad-accum") accum = std::stoi(v);
    else if (a == "--threads") threads = std::stoi(v);
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 1;
    }
  }
  threads = init_threads(threads);
  set_log_level(LogLevel::kWarn);
  const int rejected_tokens = response_tokens * 3 / 4;
  std::printf("threads %d; %d pairs, prompt %d tokens, responses %d / %d, batch %d x accum %d, one epoch; "
              "chosen and rejected as two rows\n",
              threads, n_pairs, prompt_tokens, response_tokens, rejected_tokens, batch, accum);
  std::map<std::string, double> rate;
  for (std::string_view d : split(dtypes, ",")) {
    rate[std::string(d)] = square_matmul_gflops(2048, llm::parse_dtype(std::string(d)));
    std::printf("%s: square 2048 matmul %.0f GFLOP/s\n", std::string(d).c_str(), rate[std::string(d)]);
  }
  std::printf("\n%-5s %-5s %-4s %-5s %-15s %9s %8s %7s %10s\n", "shape", "dtype", "pass", "tune", "engine", "seconds",
              "tok/s", "MFU", "rlrf/peer");
  std::mt19937_64 rng(7);
  for (std::string_view sname : split(shapes, ",")) {
    const Shape* shape = nullptr;
    for (const Shape& s : kShapes)
      if (s.name == sname) shape = &s;
    if (!shape) {
      std::fprintf(stderr, "unknown shape %s (100m, 1b)\n", std::string(sname).c_str());
      return 1;
    }
    const llm::ModelConfig config = config_of(*shape);
    std::uniform_int_distribution<int32_t> tok(3, static_cast<int32_t>(config.vocab_size - 1));
    std::vector<PreferencePair> pairs;
    for (int i = 0; i < n_pairs; ++i) {
      PreferencePair p;
      p.user = i;
      p.prompt.push_back(1);
      for (int t = 1; t < prompt_tokens; ++t) p.prompt.push_back(tok(rng));
      for (int t = 0; t < response_tokens; ++t) p.chosen.push_back(tok(rng));
      for (int t = 0; t < rejected_tokens; ++t) p.rejected.push_back(tok(rng));
      pairs.push_back(std::move(p));
    }
    std::vector<SftExample> examples;
    for (const PreferencePair& p : pairs) examples.push_back({p.prompt, p.chosen});
    std::printf("%s: %.1fM parameters\n", shape->name.c_str(), config.num_parameters() / 1e6);
    for (std::string_view dname : split(dtypes, ",")) {
      const std::string dtype(dname);
      for (std::string_view pass : split(passes, ",")) {
        for (std::string_view tune : split(finetunes, ",")) {
          if (tune == "full" && shape->name == "1b") continue;  // ~20 GB of optimizer state: see the header
          // Model FLOPs of the run: training forwards (x2 LoRA, x3 full) and DPO's reference forward.
          // Packed, a pair is one row: the prompt once, each answer attending to it and to itself.
          auto model_flops = [&](bool packed) {
            const double per_key = 4.0 * config.num_hidden_layers * config.q_dim(), mp = 2.0 * matmul_parameters(config);
            double fwd = 0;
            for (const PreferencePair& p : pairs) {
              const double P = p.prompt.size(), A = p.chosen.size(), B = p.rejected.size();
              if (pass != "dpo") fwd += forward_flops(config, P + A);
              else if (!packed) fwd += forward_flops(config, P + A) + forward_flops(config, P + B);
              else fwd += mp * (P + A + B) + per_key * (P * (P + 1) / 2 + A * P + A * (A + 1) / 2 + B * P + B * (B + 1) / 2);
            }
            return fwd * ((tune == "lora" ? 2.0 : 3.0) + (pass == "dpo" ? 1.0 : 0.0));
          };
          auto row = [&](const std::string& engine, const Run& r, double ratio, bool packed = false) {
            const double flops = model_flops(packed);
            std::printf("%-5s %-5s %-4s %-5s %-15s %9.2f %8.0f %6.1f%% %10s\n", shape->name.c_str(), dtype.c_str(),
                        std::string(pass).c_str(), std::string(tune).c_str(), engine.c_str(), r.seconds,
                        r.tokens / r.seconds, 100.0 * flops / r.seconds / 1e9 / rate[dtype],
                        ratio > 0 ? fmt::format("{:.2f}x", ratio).c_str() : "");
            std::fflush(stdout);
          };
          auto ours = [&](bool packed) {
            llm::LlamaForCausalLM model = random_model(config);
            llm::LoraConfig lora;
            lora.target_modules = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
            if (tune == "lora") llm::apply_lora(model, lora);
            Run r;
            if (pass == "dpo") {
              DpoConfig dc;
              dc.beta = 0.1;
              dc.batch_size = batch;
              dc.grad_accum = accum;
              dc.epochs = 1;
              dc.finetune = std::string(tune);
              dc.lora = lora;
              dc.pack_pairs = packed;
              dc.dtype = dtype == "bf16" ? "bf16" : "";
              dc.threads = threads;
              dc.heldout_fraction = 0;
              DpoResult res = train_dpo(model, pairs, dc);
              r = {res.seconds, res.tokens};
            } else {
              SftConfig sc;
              sc.lr = 5e-5;
              sc.batch_size = batch;
              sc.grad_accum = accum;
              sc.epochs = 1;
              sc.finetune = std::string(tune);
              sc.lora = lora;
              sc.dtype = dtype == "bf16" ? "bf16" : "";
              sc.threads = threads;
              SftResult res = train_sft(model, examples, sc);
              r = {res.seconds, res.tokens};
            }
            return r;
          };
          // Hands the freed model and activations back to the system before the peer starts: glibc
          // keeps freed blocks below its (grown) mmap threshold, ~12 GB after a 1b DPO run.
          auto ours_then_trim = [&](bool packed) {
            const Run r = ours(packed);
            malloc_trim(0);
            return r;
          };
          const Run mine = ours_then_trim(false);
          Run theirs;
          if (peer) {
            const std::string cmd = fmt::format(
                "/usr/bin/python3 {}/bench/peer/train_step.py --pass {} --finetune {} --dtype {} --threads {} "
                "--hidden {} --layers {} --heads {} --kv-heads {} --intermediate {} --vocab {} --rope-theta {} "
                "--pairs {} --prompt-tokens {} --response-tokens {} --batch {} --grad-accum {}",
                RLRF_SOURCE_DIR, pass, tune, dtype, threads, shape->hidden, shape->layers, shape->heads,
                shape->kv_heads, shape->intermediate, shape->vocab, shape->rope_theta, n_pairs, prompt_tokens,
                response_tokens, batch, accum);
            try {
              nlohmann::json j = nlohmann::json::parse(run_peer(cmd));
              theirs = {j.at("seconds").get<double>(), j.at("tokens").get<int64_t>()};
            } catch (const std::exception& e) {
              std::fprintf(stderr, "peer failed: %s\n", e.what());
              return 1;
            }
          }
          row("rlrf4rec", mine, peer ? theirs.seconds / mine.seconds : 0);
          if (peer) row("PyTorch", theirs, 0);
          if (pass == "dpo") {
            const Run packed = ours_then_trim(true);
            row("rlrf4rec packed", packed, peer ? theirs.seconds / packed.seconds : 0, true);
          }
        }
      }
    }
  }
  return 0;
}
