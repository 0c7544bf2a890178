// The compute runtime: threads, device and dtype choices made once per process.
#include "runtime/runtime.h"

#include <ATen/Parallel.h>
#include <cstdint>
#include <dlfcn.h>
#include <malloc.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>
#include <torch/cuda.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <map>
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

namespace {

// A child running one job of run_isolated: its pid and the pipe its result comes through.
struct Child {
  int64_t job;
  pid_t pid;
  int fd;
  std::string data;
};

void write_all(int fd, const std::string& s) {
  for (size_t off = 0; off < s.size();) {
    ssize_t w = ::write(fd, s.data() + off, s.size() - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    off += static_cast<size_t>(w);
  }
}

// What a child hands back: "ok\n" + result, or "error\n" + message.
[[noreturn]] void child_main(int64_t i, int fd, const std::function<std::string(int64_t)>& job) {
  std::string out;
  int code = 0;
  try {
    out = "ok\n" + job(i);
  } catch (const std::exception& e) {
    out = std::string("error\n") + e.what();
    code = 1;
  } catch (...) {
    out = "error\nunknown exception";
    code = 1;
  }
  write_all(fd, out);
  ::close(fd);
  std::fflush(nullptr);
  ::_exit(code);  // no atexit handlers or static destructors: they belong to the parent
}

}  // namespace

void run_isolated(int64_t n, int workers, const std::function<std::string(int64_t)>& job,
                  const std::function<void(int64_t, const std::string&)>& done,
                  const std::function<std::string(int64_t)>& name) {
  auto job_name = [&](int64_t i) { return name ? name(i) : fmt::format("job {}", i); };
  if (n <= 0) return;
  if (workers <= 0) workers = machine_threads();
  workers = static_cast<int>(std::min<int64_t>(workers, n));
  ScopedThreads one(1);
  if (workers == 1) {
    for (int64_t i = 0; i < n; ++i) done(i, job(i));
    return;
  }
  std::map<int, Child> running;  // by pipe fd
  std::string first_error;
  int64_t next = 0;
  auto launch = [&](int64_t i) {
    int fds[2];
    RLRF_CHECK(::pipe(fds) == 0, "run_isolated: pipe() failed: {}", std::strerror(errno));
    std::fflush(nullptr);
    pid_t pid = ::fork();
    if (pid < 0) {
      ::close(fds[0]);
      ::close(fds[1]);
      fail("run_isolated: fork() failed for {}: {}", job_name(i), std::strerror(errno));
    }
    if (pid == 0) {
      ::close(fds[0]);
      for (const auto& [fd, c] : running) ::close(fd);
      child_main(i, fds[1], job);
    }
    ::close(fds[1]);
    running[fds[0]] = Child{i, pid, fds[0], {}};
  };
  try {
    while (next < n && static_cast<int>(running.size()) < workers) launch(next++);
    while (!running.empty()) {
      std::vector<pollfd> polls;
      for (const auto& [fd, c] : running) polls.push_back({fd, POLLIN, 0});
      if (::poll(polls.data(), polls.size(), -1) < 0) {
        if (errno == EINTR) continue;
        fail("run_isolated: poll() failed: {}", std::strerror(errno));
      }
      for (const pollfd& p : polls) {
        if (!(p.revents & (POLLIN | POLLHUP | POLLERR))) continue;
        Child& c = running.at(p.fd);
        char buf[65536];
        ssize_t r = ::read(p.fd, buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r > 0) {
          c.data.append(buf, static_cast<size_t>(r));
          continue;
        }
        // End of the child's output: collect its exit status and its result.
        ::close(p.fd);
        int status = 0;
        while (::waitpid(c.pid, &status, 0) < 0 && errno == EINTR) {
        }
        const Child finished = std::move(c);
        running.erase(p.fd);
        std::string error;
        if (WIFSIGNALED(status)) {
          error = fmt::format("{}: its worker process was killed by signal {} ({})", job_name(finished.job), WTERMSIG(status),
                              strsignal(WTERMSIG(status)));
        } else if (finished.data.rfind("ok\n", 0) == 0) {
          done(finished.job, finished.data.substr(3));
        } else if (finished.data.rfind("error\n", 0) == 0) {
          error = finished.data.substr(6);
        } else {
          error = fmt::format("{}: its worker process exited with status {} and no result", job_name(finished.job), WIFEXITED(status) ? WEXITSTATUS(status) : -1);
        }
        if (!error.empty() && first_error.empty()) first_error = error;
        if (first_error.empty() && next < n) launch(next++);
      }
    }
  } catch (...) {
    for (const auto& [fd, c] : running) {
      ::kill(c.pid, SIGKILL);
      ::close(fd);
      ::waitpid(c.pid, nullptr, 0);
    }
    throw;
  }
  if (!first_error.empty()) throw Error(first_error);
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
