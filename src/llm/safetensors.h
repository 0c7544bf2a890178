// The safetensors format: a memory-mapped reader that checks the header against the file (length,
// JSON, dtypes, shapes, data offsets), resolves the `__metadata__` aliases some checkpoints use for
// tied weights, reads sharded checkpoints through model.safetensors.index.json, and a writer.
//
// File layout: u64 little-endian N, then N bytes of JSON header
//   {"__metadata__": {str: str}, "name": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}, ...}
// then the data; offsets are relative to the start of the data.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace rlrf::llm {

// One tensor's header entry.
struct TensorInfo {
  std::string name;
  std::string dtype;            // "F32", "BF16", "F16" (others are sized but refused on read)
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte offsets into the data section
};

// "[2048, 128]": shapes in messages.
std::string shape_string(const std::vector<int64_t>& shape);
std::string shape_string(at::IntArrayRef shape);

// One .safetensors file, memory-mapped (private, copy-on-write: views can be written safely).
class SafetensorsFile {
 public:
  // Maps and validates the file. Throws Error naming the path on any inconsistency.
  static SafetensorsFile open(const std::filesystem::path& path);

  const std::filesystem::path& path() const;
  // Stored tensor names in header order (sorted by name; aliases not included).
  std::vector<std::string> names() const;
  // True for stored tensors and for `__metadata__` aliases of stored tensors.
  bool contains(std::string_view name) const;
  // Header entry of a tensor or alias; throws Error naming the file and tensor when absent.
  const TensorInfo& info(std::string_view name) const;
  // A CPU tensor viewing the mapped bytes (no copy; keeps the mapping alive). Throws on dtypes
  // other than F32/BF16/F16.
  at::Tensor tensor(std::string_view name) const;
  // The `__metadata__` string map (empty when absent).
  const std::map<std::string, std::string>& metadata() const;

  struct Impl;

 private:
  std::shared_ptr<const Impl> impl_;
};

// The weights of a checkpoint directory: model.safetensors, or the shards listed in
// model.safetensors.index.json ({"weight_map": {tensor: shard file}}).
class TensorStore {
 public:
  // `path` is a checkpoint directory or a single .safetensors file.
  static TensorStore open(const std::filesystem::path& path);

  std::vector<std::string> names() const;  // every stored tensor (all shards), sorted
  bool contains(std::string_view name) const;
  const TensorInfo& info(std::string_view name) const;    // throws naming the checkpoint
  at::Tensor tensor(std::string_view name) const;         // CPU view, see SafetensorsFile
  std::filesystem::path file_of(std::string_view name) const;  // the shard holding it
  const std::filesystem::path& path() const;                   // what open() was given

  struct Impl;

 private:
  std::shared_ptr<const Impl> impl_;
};

struct NamedTensor {
  std::string name;
  at::Tensor tensor;  // any device; F32, BF16 or F16
};

// Writes one .safetensors file (through a temporary file and a rename). Tensors are stored in the
// given order; the header is padded to a multiple of 8 bytes.
void save_safetensors(const std::filesystem::path& path, const std::vector<NamedTensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

// Writes `tensors` into `dir` as model.safetensors, or, when they exceed `max_shard_bytes`, as
// model-0000i-of-0000n.safetensors shards plus model.safetensors.index.json. Returns the files written.
std::vector<std::filesystem::path> save_safetensors_sharded(const std::filesystem::path& dir,
                                                            const std::vector<NamedTensor>& tensors,
                                                            uint64_t max_shard_bytes);

}  // namespace rlrf::llm
