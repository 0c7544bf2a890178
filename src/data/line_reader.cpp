// Streaming line reader over zlib's gzFile; see line_reader.h.
#include "data/line_reader.h"

#include <cstdint>
#include <zlib.h>

#include "util/error.h"

namespace rlrf {

namespace {
constexpr size_t kChunk = 1 << 20;
}

LineReader::LineReader(const std::filesystem::path& path) : path_(path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) fail("cannot open '{}' for reading (does it exist? is the data directory right?)", path.string());
  gzbuffer(f, 1 << 18);
  gz_ = f;
}

LineReader::~LineReader() {
  if (gz_) gzclose(static_cast<gzFile>(gz_));
}

bool LineReader::fill() {
  if (eof_) return false;
  if (pos_ > 0) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
  size_t old = buf_.size();
  buf_.resize(old + kChunk);
  int n = gzread(static_cast<gzFile>(gz_), buf_.data() + old, static_cast<unsigned>(kChunk));
  if (n < 0) {
    int err = 0;
    const char* msg = gzerror(static_cast<gzFile>(gz_), &err);
    fail("{}: read error after line {}: {} (is the .gz file truncated or corrupt?)", path_.string(), line_no_,
         msg ? msg : "unknown");
  }
  buf_.resize(old + static_cast<size_t>(n));
  if (n == 0) {
    eof_ = true;
    // A truncated gzip stream reads as a short file; zlib reports it through gzerror.
    int err = 0;
    gzerror(static_cast<gzFile>(gz_), &err);
    if (err != Z_OK && err != Z_STREAM_END)
      fail("{}: read error after line {} (is the .gz file truncated or corrupt?)", path_.string(), line_no_);
  }
  return n > 0;
}

bool LineReader::next(std::string& line) {
  while (true) {
    size_t nl = buf_.find('\n', pos_);
    if (nl != std::string::npos) {
      size_t end = nl;
      if (end > pos_ && buf_[end - 1] == '\r') --end;
      line.assign(buf_, pos_, end - pos_);
      pos_ = nl + 1;
      ++line_no_;
      return true;
    }
    if (!fill()) {
      if (pos_ < buf_.size()) {  // a last line without "\n"
        size_t end = buf_.size();
        if (end > pos_ && buf_[end - 1] == '\r') --end;
        line.assign(buf_, pos_, end - pos_);
        pos_ = buf_.size();
        ++line_no_;
        return true;
      }
      return false;
    }
  }
}

int64_t LineReader::disk_offset() const { return static_cast<int64_t>(gzoffset(static_cast<gzFile>(gz_))); }

}  // namespace rlrf
