// Shared helpers of the LLM tests.
#include "llm/llm_test_util.h"

#include <c10/core/InferenceMode.h>
#include <cstdint>

#include "llm/checkpoint.h"
#include "util/files.h"
#include "runtime/runtime.h"

namespace rlrf::llm::testing {

namespace {
// Debian's libtorch starts with one thread: every test binary sets its threads once.
struct ThreadsEnvironment : ::testing::Environment {
  void SetUp() override { rlrf::init_threads(); }
};
[[maybe_unused]] ::testing::Environment* const kThreads = ::testing::AddGlobalTestEnvironment(new ThreadsEnvironment);
}  // namespace

fs::path data_dir() { return rlrf::source_dir() / "tests" / "data" / "llm"; }
fs::path tinystories_dir() { return rlrf::shared_dir() / "models" / "tinystories-656k"; }

const json& goldens() {
  static const json j = json::parse(rlrf::read_file(data_dir() / "goldens.json"));
  return j;
}

const json& greedy_reference() {
  static const json j = json::parse(rlrf::read_file(rlrf::shared_dir() / "reference" / "tinystories-656k-greedy.json"));
  return j;
}

LlamaForCausalLM load(const fs::path& dir, at::ScalarType dtype) {
  ModelOptions o;
  o.dtype = dtype;
  return load_model(dir, o);
}

at::Tensor ids_tensor(const json& rows) {
  std::vector<int64_t> flat;
  for (const json& r : rows)
    for (const json& v : r) flat.push_back(v.get<int64_t>());
  return at::tensor(flat, at::kLong).view({static_cast<int64_t>(rows.size()), -1});
}

at::Tensor bool_tensor(const json& rows) {
  std::vector<int64_t> flat;
  for (const json& r : rows)
    for (const json& v : r) flat.push_back(v.get<bool>() ? 1 : 0);
  return at::tensor(flat, at::kLong).view({static_cast<int64_t>(rows.size()), -1}).to(at::kBool);
}

std::vector<int32_t> to_ids(const json& list) {
  std::vector<int32_t> out;
  for (const json& v : list) out.push_back(v.get<int32_t>());
  return out;
}

double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kCPU, at::kDouble) - b.to(at::kCPU, at::kDouble)).abs().max().item<double>();
}

at::Tensor logits_of(LlamaForCausalLM& model, const at::Tensor& ids, const at::Tensor& positions,
                     const at::Tensor& key_valid) {
  c10::InferenceMode guard;
  return model->forward(ids, positions, key_valid).to(at::kCPU, at::kFloat);
}

}  // namespace rlrf::llm::testing
