// `rlrf export`: a run's round-r policy (or a model directory) as a merged Hugging Face checkpoint,
// one folded PEFT adapter, or a GGUF file for llama.cpp (pipeline/export.h).
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <cstdio>

#include "cli/verbs.h"
#include "pipeline/export.h"
#include "util/error.h"
#include "util/log.h"

namespace {

int run_export(int argc, char** argv) {
  CLI::App app{"Write a policy that other engines load: hf (merged checkpoint: config.json, model.safetensors, tokenizer files;\n"
               "transformers, vLLM, SGLang), peft (one LoRA adapter on the base its adapter_config.json names, the LoRA SFT and\n"
               "every round folded in; a full SFT model is written beside it as base/), gguf (llama.cpp, Ollama; f32 or f16).\n\n"
               "examples:\n"
               "  rlrf export --run runs/demo --round 2 --format hf --output runs/demo/export/round2-hf\n"
               "  rlrf export --run runs/demo --round 2 --format peft --output runs/demo/export/round2-peft\n"
               "  rlrf export --run runs/demo --round 2 --format gguf --output runs/demo/export/round2.gguf\n"
               "  rlrf export --model ../shared/models/tinystories-656k --format gguf --dtype fp16 --output tinystories.gguf",
               "rlrf export"};
  std::string run_dir, model_dir, output, format = "hf", dtype, name;
  int round = -1;
  app.add_option("--run", run_dir, "run directory of `rlrf run` (its config.toml says how the policy was built)");
  app.add_option("--round", round, "the round whose policy to write (default: the run's last, [run] rounds)");
  app.add_option("--model", model_dir, "instead of --run: a model directory in Hugging Face layout (hf or gguf)");
  app.add_option("--format", format, "hf | peft | gguf")->capture_default_str();
  app.add_option("--output", output, "directory (hf, peft; gguf: one named <round|model>-<f32|f16>.gguf) or a .gguf file")->required();
  app.add_option("--dtype", dtype, fmt::format("stored dtype: hf fp32|bf16|fp16, peft fp32|bf16, gguf fp32|fp16 (default {})", rlrf::ExportOptions{}.dtype));
  app.add_option("--name", name, "gguf: general.name (default: the file's stem)");
  CLI11_PARSE(app, argc, argv);
  RLRF_CHECK(run_dir.empty() != model_dir.empty(), "give one of --run DIR (a run's policy) or --model DIR (a model directory)");
  RLRF_CHECK(model_dir.empty() || round < 0, "--round goes with --run, not --model");
  rlrf::ExportOptions options;
  options.format = rlrf::parse_export_format(format);
  if (!dtype.empty()) options.dtype = dtype;
  options.name = name;
  rlrf::ExportResult res;
  if (!run_dir.empty()) {
    res = rlrf::export_run_policy(run_dir, round, output, options);
    rlrf::log_info("export: round {} of {} ({} adapter(s) merged or folded) written as {} to {}", res.round, run_dir,
                   res.adapters.size(), format, res.output.string());
  } else {
    res = rlrf::export_model_dir(model_dir, output, options);
    rlrf::log_info("export: {} written as {} to {}", model_dir, format, res.output.string());
  }
  if (options.format == rlrf::ExportFormat::kPeft)
    rlrf::log_info("export: one adapter of rank {} on {}", res.rank, res.base.string());
  std::printf("%s\n", res.output.string().c_str());
  return 0;
}

rlrf::cli::VerbRegistration reg_export({"export", "a run's policy (or a model) as a merged HF checkpoint, one PEFT adapter, or GGUF", 65, run_export});

}  // namespace
