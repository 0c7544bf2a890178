// Loading HF model directories into LlamaForCausalLM and saving full fine-tunes back.
#include "llm/checkpoint.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <set>

#include "util/error.h"
#include "util/files.h"
#include "util/log.h"

namespace rlrf::llm {

void load_weights(LlamaForCausalLM& model, const TensorStore& store) {
  torch::NoGradGuard no_grad;
  std::set<std::string> used;
  for (auto& item : model->named_parameters(/*recurse=*/true)) {
    const std::string& name = item.key();
    if (name.find(".lora_A.") != std::string::npos || name.find(".lora_B.") != std::string::npos) continue;
    at::Tensor& param = item.value();
    std::string source = name;
    // Tied checkpoints may hold the shared matrix only as lm_head.weight, without an alias.
    if (name == "model.embed_tokens.weight" && model->config().tie_word_embeddings && !store.contains(name) &&
        store.contains("lm_head.weight"))
      source = "lm_head.weight";
    if (!store.contains(source)) {
      fail("checkpoint '{}' has no tensor '{}' (a missing tensor: is config.json right for these weights?)",
           store.path().string(), name);
    }
    const TensorInfo& info = store.info(source);
    if (info.shape != param.sizes().vec()) {
      fail("'{}': tensor '{}' has wrong shape; expected {}, got {} (config.json and weights disagree?)",
           store.file_of(source).string(), source, shape_string(param.sizes()), shape_string(info.shape));
    }
    param.copy_(store.tensor(source));
    used.insert(info.name);
  }
  for (const std::string& n : store.names()) {
    if (!used.count(n)) log_debug("checkpoint '{}': tensor '{}' is not used by the model", store.path().string(), n);
  }
}

LlamaForCausalLM load_model(const fs::path& dir, const ModelOptions& options) {
  ModelConfig config = ModelConfig::load(dir);
  TensorStore store = TensorStore::open(dir);
  LlamaForCausalLM model(config, options);
  load_weights(model, store);
  model->eval();
  return model;
}

void save_model(LlamaForCausalLM& model, const fs::path& dir, const SaveOptions& options) {
  std::vector<NamedTensor> tensors;
  for (auto& item : model->named_parameters(/*recurse=*/true)) {
    RLRF_CHECK(item.key().find(".lora_") == std::string::npos,
               "cannot save '{}' as a full model: it has LoRA adapters (merge them first, or save the adapter)", item.key());
    tensors.push_back({item.key(), item.value().detach().to(options.dtype)});
  }
  ensure_dir(dir);
  save_safetensors_sharded(dir, tensors, options.max_shard_bytes);
  ModelConfig config = model->config();
  config.torch_dtype = options.dtype == at::kBFloat16 ? "bfloat16" : options.dtype == at::kHalf ? "float16" : "float32";
  write_file_atomic(dir / "config.json", config.to_json());
  if (!options.tokenizer_from.empty()) {
    for (const char* f : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
                          "tokenizer.model"}) {
      const fs::path src = options.tokenizer_from / f;
      std::error_code ec;
      if (!fs::exists(src, ec)) continue;
      if (fs::exists(dir / f, ec) && fs::equivalent(src, dir / f, ec)) continue;
      fs::copy_file(src, dir / f, fs::copy_options::overwrite_existing, ec);
      RLRF_CHECK(!ec, "cannot copy '{}' to '{}': {}", src.string(), (dir / f).string(), ec.message());
      fs::permissions(dir / f, fs::perms::owner_write, fs::perm_options::add, ec);
    }
  }
}

}  // namespace rlrf::llm
