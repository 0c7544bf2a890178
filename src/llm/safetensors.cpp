// The safetensors format: memory-mapped reader with header checks, sharded index, aliases, writer.
#include "llm/safetensors.h"

#include <ATen/ATen.h>
#include <cstdint>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <unordered_map>

#include "util/error.h"
#include "util/files.h"

namespace rlrf::llm {

namespace {

using json = nlohmann::json;

// Header lengths above this are not plausible (the largest real headers are a few MB).
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

// Bytes per element of every dtype the format names (so foreign entries can be size-checked).
int64_t dtype_size(const std::string& dtype) {
  static const std::unordered_map<std::string, int64_t> sizes = {
      {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4}, {"I16", 2}, {"I8", 1},
      {"U64", 8}, {"U32", 4}, {"U16", 2}, {"U8", 1},   {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1}};
  auto it = sizes.find(dtype);
  return it == sizes.end() ? -1 : it->second;
}

at::ScalarType dtype_to_torch(const std::string& dtype, const std::string& where) {
  if (dtype == "F32") return at::kFloat;
  if (dtype == "BF16") return at::kBFloat16;
  if (dtype == "F16") return at::kHalf;
  fail("{}: dtype {} is not supported (supported: F32, BF16, F16)", where, dtype);
}

std::string torch_to_dtype(at::ScalarType t, const std::string& name) {
  switch (t) {
    case at::kFloat: return "F32";
    case at::kBFloat16: return "BF16";
    case at::kHalf: return "F16";
    default: fail("cannot save tensor '{}': dtype {} is not supported (F32, BF16, F16)", name, c10::toString(t));
  }
}

// A read-only file mapped privately (copy-on-write), unmapped when the last view goes away.
struct Mapping {
  void* data = nullptr;
  size_t size = 0;
  ~Mapping() {
    if (data && size) ::munmap(data, size);
  }
};

std::shared_ptr<Mapping> map_file(const fs::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("cannot open '{}': {} (does the checkpoint exist?)", path.string(), std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    fail("cannot stat '{}': {}", path.string(), std::strerror(e));
  }
  auto m = std::make_shared<Mapping>();
  m->size = static_cast<size_t>(st.st_size);
  if (m->size > 0) {
    void* p = ::mmap(nullptr, m->size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int e = errno;
      ::close(fd);
      fail("cannot map '{}': {}", path.string(), std::strerror(e));
    }
    m->data = p;
  }
  ::close(fd);
  return m;
}

}  // namespace

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::string shape_string(at::IntArrayRef shape) { return shape_string(shape.vec()); }

struct SafetensorsFile::Impl {
  fs::path path;
  std::shared_ptr<Mapping> mapping;
  const uint8_t* data = nullptr;  // start of the data section
  uint64_t data_size = 0;
  std::vector<TensorInfo> tensors;  // header order
  std::unordered_map<std::string, size_t> index;
  std::unordered_map<std::string, std::string> aliases;  // alias -> stored name
  std::map<std::string, std::string> metadata;

  const TensorInfo* find(std::string_view name) const {
    std::string key(name);
    if (auto it = index.find(key); it != index.end()) return &tensors[it->second];
    if (auto a = aliases.find(key); a != aliases.end()) return &tensors[index.at(a->second)];
    return nullptr;
  }
};

SafetensorsFile SafetensorsFile::open(const fs::path& path) {
  auto impl = std::make_shared<Impl>();
  impl->path = path;
  impl->mapping = map_file(path);
  const std::string where = path.string();
  const uint64_t size = impl->mapping->size;
  RLRF_CHECK(size >= 8, "'{}' is {} bytes, too small for a safetensors file (truncated download?)", where, size);
  const auto* bytes = static_cast<const uint8_t*>(impl->mapping->data);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];
  RLRF_CHECK(header_len <= size - 8 && header_len <= kMaxHeaderBytes,
             "'{}': header length {} does not fit the file size {} (truncated or not a safetensors file?)",
             where, header_len, size);
  impl->data = bytes + 8 + header_len;
  impl->data_size = size - 8 - header_len;

  json header;
  try {
    header = json::parse(reinterpret_cast<const char*>(bytes + 8), reinterpret_cast<const char*>(bytes + 8 + header_len));
  } catch (const json::exception& e) {
    fail("'{}': header is not valid JSON ({}); the file is corrupt", where, e.what());
  }
  RLRF_CHECK(header.is_object(), "'{}': header is not a JSON object", where);

  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      RLRF_CHECK(v.is_object(), "'{}': __metadata__ is not an object", where);
      for (auto m = v.begin(); m != v.end(); ++m) {
        RLRF_CHECK(m.value().is_string(), "'{}': __metadata__ value of '{}' is not a string", where, m.key());
        impl->metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string what = fmt::format("'{}': tensor '{}'", where, name);
    RLRF_CHECK(v.is_object() && v.contains("dtype") && v.contains("shape") && v.contains("data_offsets"),
               "{}: header entry needs dtype, shape and data_offsets", what);
    TensorInfo t;
    t.name = name;
    RLRF_CHECK(v["dtype"].is_string(), "{}: dtype is not a string", what);
    t.dtype = v["dtype"].get<std::string>();
    int64_t esize = dtype_size(t.dtype);
    RLRF_CHECK(esize > 0, "{}: unknown dtype '{}'", what, t.dtype);
    RLRF_CHECK(v["shape"].is_array(), "{}: shape is not an array", what);
    uint64_t numel = 1;
    for (const json& d : v["shape"]) {
      RLRF_CHECK(d.is_number_integer() && d.get<int64_t>() >= 0, "{}: shape holds '{}', not a size", what, d.dump());
      t.shape.push_back(d.get<int64_t>());
      numel *= static_cast<uint64_t>(t.shape.back());
    }
    const json& off = v["data_offsets"];
    RLRF_CHECK(off.is_array() && off.size() == 2 && off[0].is_number_unsigned() && off[1].is_number_unsigned(),
               "{}: data_offsets must be two non-negative integers, got {}", what, off.dump());
    t.begin = off[0].get<uint64_t>();
    t.end = off[1].get<uint64_t>();
    RLRF_CHECK(t.begin <= t.end, "{}: data_offsets [{}, {}] are reversed", what, t.begin, t.end);
    RLRF_CHECK(t.end <= impl->data_size,
               "{}: data_offsets [{}, {}] lie beyond the data section ({} bytes); the file is truncated or corrupt",
               what, t.begin, t.end, impl->data_size);
    RLRF_CHECK(numel * static_cast<uint64_t>(esize) == t.end - t.begin,
               "{}: shape {} of {} needs {} bytes but data_offsets [{}, {}] span {}", what, shape_string(t.shape),
               t.dtype, numel * esize, t.begin, t.end, t.end - t.begin);
    impl->index[name] = impl->tensors.size();
    impl->tensors.push_back(std::move(t));
  }

  // Tensors must not overlap.
  std::vector<const TensorInfo*> by_offset;
  for (const TensorInfo& t : impl->tensors) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(), [](auto* a, auto* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    RLRF_CHECK(by_offset[i]->begin >= by_offset[i - 1]->end || by_offset[i - 1]->begin == by_offset[i - 1]->end,
               "'{}': tensors '{}' and '{}' overlap in the data section", where, by_offset[i - 1]->name,
               by_offset[i]->name);
  }

  // Aliases: a metadata key that is not a stored tensor, whose value names one (tied weights,
  // e.g. {"model.embed_tokens.weight": "lm_head.weight"}).
  for (const auto& [key, value] : impl->metadata) {
    if (!impl->index.count(key) && impl->index.count(value)) impl->aliases[key] = value;
  }

  SafetensorsFile f;
  f.impl_ = std::move(impl);
  return f;
}

const fs::path& SafetensorsFile::path() const { return impl_->path; }

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  for (const TensorInfo& t : impl_->tensors) out.push_back(t.name);
  return out;
}

bool SafetensorsFile::contains(std::string_view name) const { return impl_->find(name) != nullptr; }

const TensorInfo& SafetensorsFile::info(std::string_view name) const {
  const TensorInfo* t = impl_->find(name);
  if (!t) fail("'{}' holds no tensor '{}' (a missing tensor: wrong or incomplete checkpoint?)", impl_->path.string(), name);
  return *t;
}

at::Tensor SafetensorsFile::tensor(std::string_view name) const {
  const TensorInfo& t = info(name);
  auto type = dtype_to_torch(t.dtype, fmt::format("'{}': tensor '{}'", impl_->path.string(), name));
  auto options = at::TensorOptions().dtype(type).device(at::kCPU);
  const uint8_t* p = impl_->data + t.begin;
  const int64_t esize = dtype_size(t.dtype);
  if (reinterpret_cast<uintptr_t>(p) % static_cast<uintptr_t>(esize) != 0) {
    // Misaligned data (a header length that is not a multiple of 8): copy instead of viewing.
    at::Tensor out = at::empty(t.shape, options);
    if (t.end > t.begin) std::memcpy(out.data_ptr(), p, t.end - t.begin);
    return out;
  }
  std::shared_ptr<Mapping> keep = impl_->mapping;
  return at::from_blob(const_cast<uint8_t*>(p), t.shape, [keep](void*) mutable { keep.reset(); }, options);
}

const std::map<std::string, std::string>& SafetensorsFile::metadata() const { return impl_->metadata; }

// ---------------------------------------------------------------------------------------------
// TensorStore: one file or shards.

struct TensorStore::Impl {
  fs::path path;
  std::vector<SafetensorsFile> files;
  std::map<std::string, size_t, std::less<>> owner;  // tensor (or alias) -> file index

  const SafetensorsFile& file_for(std::string_view name) const {
    auto it = owner.find(name);
    if (it == owner.end()) {
      fail("checkpoint '{}' has no tensor '{}' (a missing tensor: wrong or incomplete checkpoint?)", path.string(), name);
    }
    return files[it->second];
  }
};

TensorStore TensorStore::open(const fs::path& path) {
  auto impl = std::make_shared<Impl>();
  impl->path = path;
  std::error_code ec;
  if (!fs::is_directory(path, ec)) {
    impl->files.push_back(SafetensorsFile::open(path));
  } else if (fs::exists(path / "model.safetensors.index.json", ec)) {
    const fs::path index_path = path / "model.safetensors.index.json";
    json index;
    try {
      index = json::parse(read_file(index_path));
    } catch (const json::exception& e) {
      fail("'{}' is not valid JSON: {}", index_path.string(), e.what());
    }
    RLRF_CHECK(index.is_object() && index.contains("weight_map") && index["weight_map"].is_object(),
               "'{}' has no \"weight_map\" object", index_path.string());
    std::map<std::string, size_t> shard_of_file;
    std::vector<std::pair<std::string, std::string>> listed;  // tensor, shard
    for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
      RLRF_CHECK(it.value().is_string(), "'{}': weight_map entry '{}' is not a file name", index_path.string(), it.key());
      listed.emplace_back(it.key(), it.value().get<std::string>());
    }
    for (const auto& [tensor, shard] : listed) {
      if (!shard_of_file.count(shard)) {
        const fs::path shard_path = path / shard;
        RLRF_CHECK(fs::exists(shard_path, ec), "'{}' lists shard '{}' for tensor '{}', but '{}' does not exist",
                   index_path.string(), shard, tensor, shard_path.string());
        shard_of_file[shard] = impl->files.size();
        impl->files.push_back(SafetensorsFile::open(shard_path));
      }
      size_t fi = shard_of_file[shard];
      RLRF_CHECK(impl->files[fi].contains(tensor), "'{}' lists tensor '{}' in shard '{}', but that shard does not hold it",
                 index_path.string(), tensor, shard);
      impl->owner[tensor] = fi;
    }
    // Tensors and aliases a shard holds beyond the index are readable too.
    for (size_t fi = 0; fi < impl->files.size(); ++fi) {
      for (const std::string& n : impl->files[fi].names()) impl->owner.emplace(n, fi);
      for (const auto& [k, v] : impl->files[fi].metadata())
        if (impl->files[fi].contains(k)) impl->owner.emplace(k, fi);
    }
  } else {
    const fs::path single = path / "model.safetensors";
    RLRF_CHECK(fs::exists(single, ec), "'{}' has neither model.safetensors nor model.safetensors.index.json",
               path.string());
    impl->files.push_back(SafetensorsFile::open(single));
  }
  if (impl->owner.empty()) {
    for (size_t fi = 0; fi < impl->files.size(); ++fi) {
      for (const std::string& n : impl->files[fi].names()) impl->owner.emplace(n, fi);
      for (const auto& [k, v] : impl->files[fi].metadata())
        if (impl->files[fi].contains(k)) impl->owner.emplace(k, fi);
    }
  }
  TensorStore s;
  s.impl_ = std::move(impl);
  return s;
}

std::vector<std::string> TensorStore::names() const {
  std::vector<std::string> out;
  for (const SafetensorsFile& f : impl_->files)
    for (std::string& n : f.names()) out.push_back(std::move(n));
  std::sort(out.begin(), out.end());
  return out;
}

bool TensorStore::contains(std::string_view name) const { return impl_->owner.count(name) > 0; }
const TensorInfo& TensorStore::info(std::string_view name) const { return impl_->file_for(name).info(name); }
at::Tensor TensorStore::tensor(std::string_view name) const { return impl_->file_for(name).tensor(name); }
fs::path TensorStore::file_of(std::string_view name) const { return impl_->file_for(name).path(); }
const fs::path& TensorStore::path() const { return impl_->path; }

// ---------------------------------------------------------------------------------------------
// Writer.

void save_safetensors(const fs::path& path, const std::vector<NamedTensor>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<at::Tensor> cpu;
  std::set<std::string> seen;
  uint64_t offset = 0;
  for (const NamedTensor& nt : tensors) {
    RLRF_CHECK(nt.name != "__metadata__" && seen.insert(nt.name).second, "cannot save tensor '{}' twice to '{}'",
               nt.name, path.string());
    at::Tensor t = nt.tensor.detach().to(at::kCPU).contiguous();
    const std::string dtype = torch_to_dtype(t.scalar_type(), nt.name);
    const uint64_t bytes = static_cast<uint64_t>(t.numel()) * t.element_size();
    header[nt.name] = {{"dtype", dtype}, {"shape", t.sizes().vec()}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    cpu.push_back(std::move(t));
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');

  ensure_dir(path.parent_path());
  fs::path tmp = path;
  tmp += ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    RLRF_CHECK(out.good(), "cannot open '{}' for writing", tmp.string());
    uint64_t n = text.size();
    char len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<char>((n >> (8 * i)) & 0xff);
    out.write(len, 8);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (const at::Tensor& t : cpu)
      out.write(static_cast<const char*>(t.data_ptr()), static_cast<std::streamsize>(t.numel() * t.element_size()));
    out.flush();
    RLRF_CHECK(out.good(), "write to '{}' failed (disk full?)", tmp.string());
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) fail("cannot move '{}' to '{}': {}", tmp.string(), path.string(), ec.message());
}

std::vector<fs::path> save_safetensors_sharded(const fs::path& dir, const std::vector<NamedTensor>& tensors,
                                               uint64_t max_shard_bytes) {
  std::vector<std::vector<NamedTensor>> shards(1);
  uint64_t current = 0, total = 0;
  for (const NamedTensor& nt : tensors) {
    uint64_t bytes = static_cast<uint64_t>(nt.tensor.numel()) * nt.tensor.element_size();
    if (current > 0 && current + bytes > max_shard_bytes) {
      shards.emplace_back();
      current = 0;
    }
    shards.back().push_back(nt);
    current += bytes;
    total += bytes;
  }
  ensure_dir(dir);
  std::vector<fs::path> written;
  std::error_code ec;
  if (shards.size() == 1) {
    fs::remove(dir / "model.safetensors.index.json", ec);
    written.push_back(dir / "model.safetensors");
    save_safetensors(written.back(), shards[0]);
    return written;
  }
  fs::remove(dir / "model.safetensors", ec);
  json weight_map = json::object();
  for (size_t i = 0; i < shards.size(); ++i) {
    std::string file = fmt::format("model-{:05d}-of-{:05d}.safetensors", i + 1, shards.size());
    for (const NamedTensor& nt : shards[i]) weight_map[nt.name] = file;
    written.push_back(dir / file);
    save_safetensors(written.back(), shards[i]);
  }
  json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
  write_file_atomic(dir / "model.safetensors.index.json", index.dump(2) + "\n");
  written.push_back(dir / "model.safetensors.index.json");
  return written;
}

}  // namespace rlrf::llm
