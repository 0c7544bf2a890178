// Test helpers of the OpenAI-compatible backend (included by tests/*/*_http_test.cpp only: it
// includes httplib.h): the real llama-server (built by scripts/build-llama-server.sh) started on a
// free port with the demo model in gguf, and a fault-injecting proxy in front of it (fails, delays
// or answers the first requests as told, then forwards), since a real engine cannot fail on demand.
//
// Where llama-server is missing the engine tests fail with a message naming the build script;
// RLRF_SKIP_ENGINE_TESTS=1 skips them instead.
#pragma once
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "util/files.h"

namespace rlrf::engine_test {

// llama-server: $RLRF_LLAMA_SERVER, else <deps>/llama-server/bin/llama-server, else one on PATH;
// empty when none.
inline std::filesystem::path llama_server_binary() {
  if (const char* env = std::getenv("RLRF_LLAMA_SERVER"); env && *env) return env;
  std::filesystem::path built = deps_dir() / "llama-server" / "bin" / "llama-server";
  if (std::filesystem::exists(built)) return built;
  if (const char* path = std::getenv("PATH"))
    for (std::string_view rest = path; !rest.empty();) {
      const size_t colon = rest.find(':');
      std::filesystem::path candidate = std::filesystem::path(std::string(rest.substr(0, colon))) / "llama-server";
      if (!candidate.parent_path().empty() && ::access(candidate.c_str(), X_OK) == 0) return candidate;
      if (colon == std::string_view::npos) break;
      rest.remove_prefix(colon + 1);
    }
  return {};
}

inline std::filesystem::path tinystories_gguf() {
  return shared_dir() / "models" / "tinystories-656k-gguf" / "tinystories-656k-f32.gguf";
}

// In a test body: fails (or skips with RLRF_SKIP_ENGINE_TESTS=1) when the engine or the model is missing.
#define RLRF_REQUIRE_LLAMA_SERVER()                                                                         \
  do {                                                                                                      \
    const char* skip_ = std::getenv("RLRF_SKIP_ENGINE_TESTS");                                              \
    std::string missing_;                                                                                   \
    if (::rlrf::engine_test::llama_server_binary().empty())                                                     \
      missing_ = "llama-server is not built: run scripts/build-llama-server.sh (it builds it into .deps/)"; \
    else if (!std::filesystem::exists(::rlrf::engine_test::tinystories_gguf()))                                 \
      missing_ = "no " + ::rlrf::engine_test::tinystories_gguf().string();                                      \
    if (!missing_.empty()) {                                                                                \
      if (skip_ && std::string(skip_) == "1") GTEST_SKIP() << missing_ << " (RLRF_SKIP_ENGINE_TESTS=1)";    \
      FAIL() << missing_ << "; or set RLRF_SKIP_ENGINE_TESTS=1 to skip the engine tests";                  \
    }                                                                                                       \
  } while (0)

inline int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

// A llama-server child process on 127.0.0.1:port, stopped (SIGTERM) by the destructor.
class LlamaServer {
 public:
  // `model`: a GGUF file (default: the demo model as llama.cpp's converter wrote it).
  LlamaServer(int parallel = 2, int threads = 1, std::filesystem::path model = {})
      : parallel_(parallel), threads_(threads), port_(free_port()), model_(model.empty() ? tinystories_gguf() : std::move(model)) {}
  ~LlamaServer() { stop(); }

  // Starts it and waits until /health answers 200; false (with the log's tail in `why`) when not.
  bool start(std::string* why = nullptr) {
    log_ = fresh_temp_dir("llama-server-" + std::to_string(port_)) / "server.log";
    const std::string bin = llama_server_binary().string(), model = model_.string();
    const std::string port = std::to_string(port_), np = std::to_string(parallel_), t = std::to_string(threads_),
                      ctx = std::to_string(1024 * parallel_);
    pid_ = ::fork();
    if (pid_ == 0) {
      if (!std::freopen(log_.c_str(), "w", stderr) || !std::freopen(log_.c_str(), "a", stdout)) _exit(126);
      ::execl(bin.c_str(), bin.c_str(), "-m", model.c_str(), "--host", "127.0.0.1", "--port", port.c_str(), "-np",
              np.c_str(), "-t", t.c_str(), "-c", ctx.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    httplib::Client http("127.0.0.1", port_);
    http.set_connection_timeout(1, 0);
    for (auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
         std::chrono::steady_clock::now() < deadline;) {
      if (auto res = http.Get("/health"); res && res->status == 200) return true;
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (why) *why = "llama-server did not come up; its log: " + read_file(log_).substr(0, 4000);
    return false;
  }
  void stop(int sig = SIGTERM) {
    if (pid_ <= 0) return;
    ::kill(pid_, sig);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }
  int port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  int parallel_, threads_, port_;
  std::filesystem::path model_;
  pid_t pid_ = -1;
  std::filesystem::path log_;
};

// An HTTP server in the test process in front of `upstream`: each POST /v1/completions is first
// offered to `fault` (request number from 0, body); a fault that returns true has answered it,
// otherwise the request is forwarded and the upstream's answer returned.
class FaultProxy {
 public:
  using Fault = std::function<bool(int n, const std::string& body, httplib::Response& res)>;
  FaultProxy(std::string upstream_host, int upstream_port, Fault fault)
      : host_(std::move(upstream_host)), upstream_port_(upstream_port), fault_(std::move(fault)) {
    server_.new_task_queue = [] { return new httplib::ThreadPool(8); };
    server_.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
      const int n = count_++;
      ++inflight_;
      struct Done {
        std::atomic<int>& c;
        ~Done() { --c; }
      } done{inflight_};
      if (fault_ && fault_(n, req.body, res)) return;
      httplib::Client up(host_, upstream_port_);
      up.set_read_timeout(120, 0);
      auto r = up.Post("/v1/completions", req.body, "application/json");
      if (!r) {
        res.status = 502;
        res.set_content("{\"error\":{\"message\":\"proxy: upstream unreachable\"}}", "application/json");
        return;
      }
      res.status = r->status;
      res.set_content(r->body, "application/json");
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ~FaultProxy() {
    server_.stop();
    if (thread_.joinable()) thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int requests() const { return count_.load(); }
  int inflight() const { return inflight_.load(); }  // requests not yet answered (a killed client's too)

 private:
  std::string host_;
  int upstream_port_;
  Fault fault_;
  httplib::Server server_;
  int port_ = 0;
  std::atomic<int> count_{0}, inflight_{0};
  std::thread thread_;
};

}  // namespace rlrf::engine_test
