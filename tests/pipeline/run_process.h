// Running the rlrf binary from the pipeline tests: the whole command (exit code and stderr), or a
// child process to kill mid-run, and the run store's response count as it grows.
#pragma once
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>

#include "pipeline/run_store.h"
#include "util/files.h"

#ifndef RLRF_BIN
#error "RLRF_BIN must name the rlrf binary"
#endif

namespace rlrf::test {

// Runs `rlrf run CONFIG EXTRA`; returns the exit code and what it wrote to stderr (kept in `log`).
inline std::pair<int, std::string> run_rlrf(const fs::path& config, const fs::path& log, const std::string& extra = "") {
  std::string cmd = std::string(RLRF_BIN) + " run '" + config.string() + "' " + extra + " 2> '" + log.string() + "'";
  int status = std::system(cmd.c_str());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, read_file(log)};
}

// Starts `rlrf run config --until generate` with its stderr in `log`.
inline pid_t spawn_run(const fs::path& config, const fs::path& log) {
  pid_t pid = fork();
  if (pid == 0) {
    if (!freopen(log.c_str(), "w", stderr)) _exit(126);
    execl(RLRF_BIN, RLRF_BIN, "run", config.c_str(), "--until", "generate", static_cast<char*>(nullptr));
    _exit(127);
  }
  return pid;
}

// The child's exit code, or minus the signal that ended it.
inline int wait_exit(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

// Round 0's stored responses now (0 while the store does not exist or is being created).
inline int64_t count_now(const fs::path& db) {
  if (!fs::exists(db)) return 0;
  try {
    return RunStore(db).count_responses(0);
  } catch (...) {
    return 0;
  }
}

}  // namespace rlrf::test
