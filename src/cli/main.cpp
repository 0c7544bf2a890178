// rlrf: the command line. `rlrf <verb> [options]`; one verb per stage of the paper.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "cli/verbs.h"
#include "util/error.h"
#include "util/log.h"
#include "runtime/runtime.h"

namespace rlrf::cli {

std::vector<Verb>& verb_table() {
  static std::vector<Verb> table;
  return table;
}

static void print_usage() {
  auto verbs = verb_table();
  std::sort(verbs.begin(), verbs.end(), [](const Verb& a, const Verb& b) { return a.order < b.order; });
  std::printf("rlrf: reinforcement learning from recommender feedback (RLRF4Rec)\n\n");
  std::printf("usage: rlrf <verb> [options]     (rlrf <verb> --help for a verb's options)\n\nverbs:\n");
  for (const Verb& v : verbs) std::printf("  %-14s %s\n", v.name.c_str(), v.summary.c_str());
}

}  // namespace rlrf::cli

int main(int argc, char** argv) {
  using namespace rlrf::cli;
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "help")) {
    print_usage();
    return argc < 2 ? 1 : 0;
  }
  std::string name = argv[1];
  auto& verbs = verb_table();
  auto it = std::find_if(verbs.begin(), verbs.end(), [&](const Verb& v) { return v.name == name; });
  if (it == verbs.end()) {
    std::fprintf(stderr, "rlrf: unknown verb '%s'\n\n", name.c_str());
    print_usage();
    return 1;
  }
  std::string prog = "rlrf " + name;
  std::vector<char*> args(argv + 1, argv + argc);
  args[0] = prog.data();
  try {
    rlrf::init_threads();
    return it->run(static_cast<int>(args.size()), args.data());
  } catch (const std::exception& e) {  // rlrf::Error (named place and cause) and anything else
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
