// The compute runtime: threads, device and dtype choices made once per process, and the few
// process-wide settings that make libtorch fast on small CPU workloads.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

namespace rlrf {

// Sets libtorch's intra-op threads (and OpenBLAS's, which keeps a pool of its own): n > 0 as
// given, otherwise $RLRF_THREADS or the machine's cores. Debian's libtorch starts with one thread,
// so every entry point calls this once. The first call also makes freed large buffers stay with
// the allocator (glibc returns them to the kernel by default, and every new tensor then pays page
// faults: ~1.7x on bf16 generation here). Returns the thread count set.
int init_threads(int n = 0);

// The intra-op threads set now, and the number `init_threads` chose (the machine's share).
int compute_threads();
int machine_threads();

// Sets the intra-op threads (libtorch and OpenBLAS) for its lifetime, then restores them. The
// models of this project are small: their ops take microseconds, and on a 2-core machine two
// threads that wait for each other after every op run DLCM 4x slower than one thread. Callers
// that train small models pick one thread per job and run jobs side by side (`run_parallel`).
class ScopedThreads {
 public:
  explicit ScopedThreads(int n);
  ~ScopedThreads();
  ScopedThreads(const ScopedThreads&) = delete;
  ScopedThreads& operator=(const ScopedThreads&) = delete;

 private:
  int before_;
};

// Runs job(0) .. job(n - 1) on `workers` threads (<= 0: the machine's threads), each job with one
// intra-op thread. The first exception (in job order) is rethrown once every job has stopped; jobs
// not yet started when one fails are skipped. With one worker the jobs run in order on the calling
// thread.
void run_parallel(int64_t n, int workers, const std::function<void(int64_t)>& job);

// "cpu", "cuda", "cuda:1" or "auto" (cuda when libtorch has it and a GPU is visible, else cpu).
// Throws Error naming the choice when cuda is asked for and not available.
std::string resolve_device(const std::string& choice);

}  // namespace rlrf
