// Reading a libtorch profiler trace (chrome format): operators by self time, printed as a table.
// Used by the benches' --profile options.
#pragma once
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

namespace rlrf {

// The operators of a chrome trace by self time: each complete event's duration minus the durations
// of the events nested directly in it on the same thread. Prints the top `top` and the rest.
inline void print_self_times(const std::filesystem::path& trace, int top = 14) {
  std::ifstream in(trace);
  nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  const nlohmann::json& events = j.is_array() ? j : j["traceEvents"];
  struct Ev {
    std::string name;
    double ts, dur;
    std::string tid;
  };
  std::vector<Ev> evs;
  for (const auto& e : events) {
    if (!e.is_object() || e.value("ph", "") != "X") continue;
    evs.push_back({e.value("name", ""), e.value("ts", 0.0), e.value("dur", 0.0), e.contains("tid") ? e["tid"].dump() : ""});
  }
  std::sort(evs.begin(), evs.end(), [](const Ev& a, const Ev& b) {
    return a.tid != b.tid ? a.tid < b.tid : a.ts != b.ts ? a.ts < b.ts : a.dur > b.dur;
  });
  std::map<std::string, std::pair<double, int>> self;  // name -> (us, calls)
  std::vector<size_t> stack;
  std::vector<double> child;  // per stack entry: time of its direct children
  double total = 0;
  auto pop = [&]() {
    const Ev& e = evs[stack.back()];
    auto& s = self[e.name];
    s.first += e.dur - child.back();
    s.second += 1;
    stack.pop_back();
    child.pop_back();
  };
  for (size_t i = 0; i < evs.size(); ++i) {
    while (!stack.empty() && (evs[stack.back()].tid != evs[i].tid || evs[stack.back()].ts + evs[stack.back()].dur <= evs[i].ts)) pop();
    if (!stack.empty()) child.back() += evs[i].dur;
    else total += evs[i].dur;
    stack.push_back(i);
    child.push_back(0);
  }
  while (!stack.empty()) pop();
  std::vector<std::pair<std::string, std::pair<double, int>>> rows(self.begin(), self.end());
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.first > b.second.first; });
  std::printf("      profile %s: %.1f ms in ATen operators; by self time:\n", trace.filename().string().c_str(), total / 1e3);
  double rest = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    if (static_cast<int>(i) >= top) {
      rest += rows[i].second.first;
      continue;
    }
    std::printf("        %-34s %8.2f ms %5.1f%% %7d calls\n", rows[i].first.c_str(), rows[i].second.first / 1e3,
                100.0 * rows[i].second.first / std::max(total, 1e-9), rows[i].second.second);
  }
  if (rest > 0) std::printf("        %-34s %8.2f ms %5.1f%%\n", "(the rest)", rest / 1e3, 100.0 * rest / std::max(total, 1e-9));
}

}  // namespace rlrf
