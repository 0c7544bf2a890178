// The compute runtime: threads, device and dtype choices made once per process.
#pragma once
#include <string>

namespace rlrf {

// Sets libtorch's intra-op threads: n > 0 as given, otherwise $RLRF_THREADS or the machine's cores.
// Debian's libtorch starts with one thread, so every entry point calls this once.
int init_threads(int n = 0);

// "cpu", "cuda", "cuda:1" or "auto" (cuda when libtorch has it and a GPU is visible, else cpu).
// Throws Error naming the choice when cuda is asked for and not available.
std::string resolve_device(const std::string& choice);

}  // namespace rlrf
