// The on-disk cache of text encodings behind encode_cached (encoder.h).
//
// One append-only file per encoder: <cache_dir>/<encoder name>.enc, name characters other than
// [A-Za-z0-9._-] replaced by '_'. Layout (little-endian), version 1:
//   header   char[8] "RLRFENC1", u32 version (1), u32 dim, u32 name length, name bytes
//   records  32-byte SHA-256 of the text, dim float32, u32 FNV-1a checksum of the preceding bytes
// A crash mid-append leaves a short or damaged tail: it is ignored (with a warning) and cut off
// before the next append. Readers and writers hold an exclusive flock on the file, so concurrent
// processes do not interleave records.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "encode/encoder.h"

namespace rlrf {

struct EncodeCacheStats {
  int64_t hits = 0;         // texts found in the cache
  int64_t misses = 0;       // texts sent to the encoder (distinct texts: duplicates count once)
  int64_t stored = 0;       // records in the file after the call
  int64_t dropped_bytes = 0;  // bytes of a damaged tail that were cut off
};

// encode_cached with statistics.
at::Tensor encode_cached(TextEncoder& encoder, const std::vector<std::string>& texts,
                         const std::filesystem::path& cache_dir, EncodeCacheStats* stats);

// The cache file of an encoder name in cache_dir.
std::filesystem::path encode_cache_path(const std::filesystem::path& cache_dir, const std::string& encoder_name);

}  // namespace rlrf
