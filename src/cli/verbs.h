// The CLI's verbs. Each src/cli/verb_*.cpp defines one verb and registers it with a static
// VerbRegistration, so adding a verb touches no other file. `rlrf` with no verb lists them in order.
#pragma once
#include <string>
#include <vector>

namespace rlrf::cli {

struct Verb {
  std::string name;      // "prepare"
  std::string summary;   // one line for the verb list
  int order;             // position in the list: pipeline order (prepare=10, generate=30, ...)
  int (*run)(int argc, char** argv);  // argv[0] is "rlrf <verb>"
};

std::vector<Verb>& verb_table();

struct VerbRegistration {
  explicit VerbRegistration(Verb verb) { verb_table().push_back(std::move(verb)); }
};

}  // namespace rlrf::cli
