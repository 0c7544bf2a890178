// Runs a peer benchmark (a Python script under bench/peer/) and returns what it printed; throws
// std::runtime_error with the command and its output when it exits with a non-zero status.
#pragma once
#include <cstdio>
#include <stdexcept>
#include <string>

namespace rlrf {

inline std::string run_peer(const std::string& cmd) {
  FILE* f = popen(cmd.c_str(), "r");
  if (!f) throw std::runtime_error("cannot start: " + cmd);
  std::string out;
  char buf[4096];
  while (fgets(buf, sizeof buf, f)) out += buf;
  const int status = pclose(f);
  if (status != 0) throw std::runtime_error("exit status " + std::to_string(status) + ": " + cmd + "\n" + out);
  return out;
}

}  // namespace rlrf
