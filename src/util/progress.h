// Progress of long work on stderr: done/total, rate, ETA; at most one line a second.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace rlrf {

class Progress {
 public:
  // `unit` names what is counted ("responses", "lists"); `done` starts above 0 when resuming.
  Progress(std::string label, int64_t total, std::string unit = "items", int64_t done = 0);
  void advance(int64_t n = 1);
  void finish();  // prints the final line with the total time
  int64_t done() const { return done_; }
  // A note shown after the counts on each line ("812 tokens/s, 2 retries").
  void set_note(std::string note) { note_ = std::move(note); }

 private:
  void print(bool final_line);
  std::string label_, unit_, note_;
  int64_t total_, done_, start_done_;
  std::chrono::steady_clock::time_point start_, last_print_;
  bool finished_ = false;
};

}  // namespace rlrf
