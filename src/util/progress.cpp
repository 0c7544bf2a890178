// Progress of long work on stderr: done/total, rate, ETA; at most one line a second.
#include "util/progress.h"

#include <cstdint>
#include <fmt/format.h>

#include "util/log.h"

namespace rlrf {

Progress::Progress(std::string label, int64_t total, std::string unit, int64_t done)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total), done_(done), start_done_(done),
      start_(std::chrono::steady_clock::now()), last_print_(start_) {}

void Progress::advance(int64_t n) {
  done_ += n;
  auto now = std::chrono::steady_clock::now();
  if (now - last_print_ >= std::chrono::seconds(1)) {
    last_print_ = now;
    print(false);
  }
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  print(true);
}

static std::string format_seconds(double s) {
  if (s < 60) return fmt::format("{:.0f}s", s);
  if (s < 3600) return fmt::format("{}m{:02d}s", int(s) / 60, int(s) % 60);
  return fmt::format("{}h{:02d}m", int(s) / 3600, (int(s) % 3600) / 60);
}

void Progress::print(bool final_line) {
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  double rate = elapsed > 0 ? double(done_ - start_done_) / elapsed : 0.0;
  if (final_line) {
    log_info("{}: {}/{} {} in {} ({:.1f} {}/s{}{})", label_, done_, total_, unit_, format_seconds(elapsed), rate, unit_,
             note_.empty() ? "" : ", ", note_);
    return;
  }
  std::string eta = rate > 0 && total_ > done_ ? format_seconds(double(total_ - done_) / rate) : "?";
  double pct = total_ > 0 ? 100.0 * double(done_) / double(total_) : 0.0;
  log_info("{}: {}/{} {} ({:.0f}%), {:.1f} {}/s, ETA {}{}{}", label_, done_, total_, unit_, pct, rate, unit_, eta,
           note_.empty() ? "" : ", ", note_);
}

}  // namespace rlrf
