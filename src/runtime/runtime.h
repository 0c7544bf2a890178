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

// Runs job(0) .. job(n - 1) on `workers` threads (for work that runs no libtorch ops side by side:
// see run_isolated) (<= 0: the machine's threads), each job with one
// intra-op thread. The first exception (in job order) is rethrown once every job has stopped; jobs
// not yet started when one fails are skipped. With one worker the jobs run in order on the calling
// thread.
void run_parallel(int64_t n, int workers, const std::function<void(int64_t)>& job);

// Runs job(0) .. job(n - 1), `workers` at a time (<= 0: the machine's threads), each in a child
// process of its own with one intra-op thread, and hands each job's result to done(i, result) in
// this process as the jobs finish (in completion order; done runs on the calling thread, so it may
// write to a store or a table without locks). A job that throws, or a child that dies (a signal, an
// exit), stops the launching of further jobs; those running finish and are handed to done, then an
// Error names the job and what happened. With one worker the jobs run in order in this process.
//
// Why processes and not threads: libtorch 1.13 with oneDNN 2.6 (Debian 12's) corrupts memory when
// two threads of one process create bf16 matmul primitives while oneDNN's primitive cache is full
// and evicting (trainings with many shapes, in a process whose earlier stages filled the cache):
// std::bad_array_new_length or a segfault inside oneDNN's brgemm kernel creation, reproduced by
// tests/rerank/side_by_side_test.cpp. Processes share no cache, so they cannot race in it.
// `name(i)` says what job i is in errors (default: "job i").
void run_isolated(int64_t n, int workers, const std::function<std::string(int64_t)>& job,
                  const std::function<void(int64_t, const std::string&)>& done,
                  const std::function<std::string(int64_t)>& name = nullptr);

// "cpu", "cuda", "cuda:1" or "auto" (cuda when libtorch has it and a GPU is visible, else cpu).
// Throws Error naming the choice when cuda is asked for and not available.
std::string resolve_device(const std::string& choice);

}  // namespace rlrf
