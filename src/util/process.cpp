// run_shell_command: fork, /bin/sh -c, a pipe read line by line into the log, stderr and a tail.
#include "util/process.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <fstream>

#include "util/error.h"
#include "util/files.h"

namespace rlrf {

CommandResult run_shell_command(const std::string& command, const fs::path& log, const std::string& prefix,
                                size_t keep_lines) {
  if (log.has_parent_path()) ensure_dir(log.parent_path());
  std::ofstream out(log, std::ios::binary | std::ios::trunc);
  RLRF_CHECK(out.good(), "cannot write the command's log '{}'", log.string());
  int fds[2];
  RLRF_CHECK(pipe(fds) == 0, "pipe() failed: {}", std::strerror(errno));
  pid_t pid = fork();
  RLRF_CHECK(pid >= 0, "fork() failed: {}", std::strerror(errno));
  if (pid == 0) {
    close(fds[0]);
    int null_fd = open("/dev/null", O_RDONLY);
    if (null_fd >= 0) dup2(null_fd, 0);
    dup2(fds[1], 1);
    dup2(fds[1], 2);
    close(fds[1]);
    execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  close(fds[1]);
  std::deque<std::string> tail;
  std::string partial;
  auto emit = [&](const std::string& line) {
    out << line << '\n';
    out.flush();
    std::string echoed = prefix + line + "\n";
    ssize_t ignored = write(2, echoed.data(), echoed.size());
    (void)ignored;
    tail.push_back(line);
    if (tail.size() > keep_lines) tail.pop_front();
  };
  char buf[4096];
  for (;;) {
    ssize_t n = read(fds[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    partial.append(buf, static_cast<size_t>(n));
    for (size_t nl = partial.find('\n'); nl != std::string::npos; nl = partial.find('\n')) {
      std::string line = partial.substr(0, nl);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      emit(line);
      partial.erase(0, nl + 1);
    }
  }
  if (!partial.empty()) emit(partial);
  close(fds[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  CommandResult r;
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.last_lines.assign(tail.begin(), tail.end());
  return r;
}

}  // namespace rlrf
