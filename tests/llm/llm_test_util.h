// Shared helpers of the LLM tests: where the goldens and checkpoints are, golden JSON access,
// tensor comparisons that print the max difference.
#pragma once
#include <ATen/ATen.h>
#include <cstdint>
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "llm/llama.h"

namespace rlrf::llm::testing {

namespace fs = std::filesystem;
using json = nlohmann::json;

fs::path data_dir();          // tests/data/llm
fs::path tinystories_dir();   // <shared>/models/tinystories-656k (tests skip when absent)
const json& goldens();        // tests/data/llm/goldens.json
const json& greedy_reference();  // <shared>/reference/tinystories-656k-greedy.json

// Skips the current test when the shared tinystories checkpoint is missing.
#define RLRF_REQUIRE_TINYSTORIES()                                                       \
  do {                                                                                   \
    if (!std::filesystem::exists(::rlrf::llm::testing::tinystories_dir() / "config.json")) \
      GTEST_SKIP() << "no tinystories-656k under " << ::rlrf::llm::testing::tinystories_dir(); \
  } while (0)

LlamaForCausalLM load(const fs::path& dir, at::ScalarType dtype = at::kFloat);

at::Tensor ids_tensor(const json& rows);  // [[..], ..] -> [B, T] int64
at::Tensor bool_tensor(const json& rows);
std::vector<int32_t> to_ids(const json& list);
double max_abs_diff(const at::Tensor& a, const at::Tensor& b);

// Logits [B, T, V] for ids/positions of a batch, fp32 on CPU, no grad.
at::Tensor logits_of(LlamaForCausalLM& model, const at::Tensor& ids, const at::Tensor& positions = {},
                     const at::Tensor& key_valid = {});

}  // namespace rlrf::llm::testing
