// Running a shell command line (an external trainer): its output goes to our stderr and to a log
// file as it comes, and the caller gets the exit status and the last lines.
#pragma once
#include <filesystem>
#include <string>
#include <vector>

namespace rlrf {

struct CommandResult {
  int status = 0;                       // the exit status; 128 + N when signal N ended it
  std::vector<std::string> last_lines;  // the output's last lines (stdout and stderr together)
};

// Runs `command` with /bin/sh -c, stdin from /dev/null, stdout and stderr into `log` (created,
// parents too) and echoed to stderr line by line with `prefix`. Keeps the last `keep_lines`.
CommandResult run_shell_command(const std::string& command, const std::filesystem::path& log,
                                const std::string& prefix = "", size_t keep_lines = 20);

}  // namespace rlrf
