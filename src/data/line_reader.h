// Streaming line reader for plain and gzip-compressed text files (zlib reads both transparently),
// with the 1-based line number for error messages. Amazon review files are tens of GB: they are
// never read whole.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>

namespace rlrf {

class LineReader {
 public:
  // Throws Error naming the path when the file cannot be opened.
  explicit LineReader(const std::filesystem::path& path);
  ~LineReader();
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;

  // Next line without its "\n" or "\r\n"; false at the end of the file. A read error (a corrupt
  // gzip stream) throws Error naming the file and the line.
  bool next(std::string& line);
  int64_t line_number() const { return line_no_; }
  // Bytes consumed from the file on disk so far (compressed bytes for .gz): for progress.
  int64_t disk_offset() const;
  const std::filesystem::path& path() const { return path_; }

 private:
  bool fill();
  std::filesystem::path path_;
  void* gz_ = nullptr;  // gzFile
  std::string buf_;
  size_t pos_ = 0;
  bool eof_ = false;
  int64_t line_no_ = 0;
};

}  // namespace rlrf
