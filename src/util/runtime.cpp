// The compute runtime: threads, device and dtype choices made once per process.
#include "util/runtime.h"

#include <ATen/Parallel.h>
#include <dlfcn.h>
#include <malloc.h>
#include <torch/cuda.h>

#include <atomic>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "util/error.h"

namespace rlrf {

namespace {

std::atomic<int> g_machine_threads{0};

// OpenBLAS (Debian's libblas.so.3 when libopenblas is installed) runs its own thread pool beside
// libtorch's OpenMP one; both sized to the cores oversubscribe them. Found at run time: another
// BLAS may stand behind libblas.so.3.
void set_blas_threads(int n) {
  using SetThreads = void (*)(int);
  static SetThreads fn = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  if (fn) fn(n);
}

void set_threads(int n) {
  at::set_num_threads(n);
  set_blas_threads(n);
}

}  // namespace

int init_threads(int n) {
  static std::once_flag malloc_once;
  std::call_once(malloc_once, [] {
    // Keep freed buffers up to 1 GiB in the heap instead of unmapping them (glibc's default
    // threshold adapts only up to 32 MiB and trims the heap top eagerly).
    mallopt(M_MMAP_THRESHOLD, 1 << 30);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
  });
  if (n <= 0) {
    if (const char* env = std::getenv("RLRF_THREADS"); env && *env) n = std::atoi(env);
  }
  if (n <= 0) n = static_cast<int>(std::thread::hardware_concurrency());
  if (n <= 0) n = 1;
  set_threads(n);
  g_machine_threads = n;
  return n;
}

int compute_threads() { return at::get_num_threads(); }

int machine_threads() {
  int n = g_machine_threads.load();
  return n > 0 ? n : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

ScopedThreads::ScopedThreads(int n) : before_(at::get_num_threads()) {
  if (n > 0 && n != before_) set_threads(n);
}

ScopedThreads::~ScopedThreads() {
  if (at::get_num_threads() != before_) set_threads(before_);
}

void run_parallel(int64_t n, int workers, const std::function<void(int64_t)>& job) {
  if (n <= 0) return;
  if (workers <= 0) workers = machine_threads();
  workers = static_cast<int>(std::min<int64_t>(workers, n));
  ScopedThreads one(1);
  if (workers == 1) {
    for (int64_t i = 0; i < n; ++i) job(i);
    return;
  }
  std::atomic<int64_t> next{0};
  std::atomic<bool> failed{false};
  std::vector<std::exception_ptr> errors(static_cast<size_t>(n));
  auto work = [&] {
    for (int64_t i; !failed && (i = next++) < n;) {
      try {
        job(i);
      } catch (...) {
        errors[static_cast<size_t>(i)] = std::current_exception();
        failed = true;
      }
    }
  };
  std::vector<std::thread> pool;
  for (int w = 0; w < workers; ++w) pool.emplace_back(work);
  for (std::thread& t : pool) t.join();
  for (const std::exception_ptr& e : errors)
    if (e) std::rethrow_exception(e);
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
