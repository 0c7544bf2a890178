// The compute runtime: threads, device and dtype choices made once per process.
#include "util/runtime.h"

#include <ATen/Parallel.h>
#include <torch/cuda.h>

#include <cstdlib>
#include <thread>

#include "util/error.h"

namespace rlrf {

int init_threads(int n) {
  if (n <= 0) {
    if (const char* env = std::getenv("RLRF_THREADS"); env && *env) n = std::atoi(env);
  }
  if (n <= 0) n = static_cast<int>(std::thread::hardware_concurrency());
  if (n <= 0) n = 1;
  at::set_num_threads(n);
  return n;
}

std::string resolve_device(const std::string& choice) {
  if (choice.empty() || choice == "auto") return torch::cuda::is_available() ? "cuda" : "cpu";
  if (choice == "cpu") return choice;
  if (choice.rfind("cuda", 0) == 0) {
    RLRF_CHECK(torch::cuda::is_available(), "device '{}' asked for, but this libtorch has no CUDA or no GPU is visible; use device = \"cpu\"", choice);
    return choice;
  }
  fail("unknown device '{}' (use cpu, cuda, cuda:N or auto)", choice);
}

}  // namespace rlrf
