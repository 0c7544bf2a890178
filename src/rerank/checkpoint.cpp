// Reranker checkpoint files: magic + version + JSON header + named raw tensors (see checkpoint.h).
#include "rerank/checkpoint.h"

#include <ATen/ATen.h>
#include <cstdint>
#include <nlohmann/json.hpp>

#include <cstring>
#include <map>

#include <fmt/ranges.h>

#include "util/error.h"
#include "util/files.h"
#include "runtime/runtime.h"

namespace rlrf {

namespace {

constexpr char kMagic[8] = {'R', 'L', 'R', 'F', 'R', 'R', 'K', '1'};
constexpr uint32_t kVersion = 1;

template <typename T>
void put(std::string& out, const T& v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof(T));
}

struct Reader {
  const std::string& buf;
  size_t pos = 0;
  std::string path;
  void need(size_t n) const {
    if (n > buf.size() - pos)
      fail("{}: truncated reranker checkpoint (need {} bytes at offset {}, file has {}); re-save it", path, n, pos,
           buf.size());
  }
  template <typename T>
  T get() {
    need(sizeof(T));
    T v;
    std::memcpy(&v, buf.data() + pos, sizeof(T));
    pos += sizeof(T);
    return v;
  }
  std::string bytes(size_t n) {
    need(n);
    std::string s = buf.substr(pos, n);
    pos += n;
    return s;
  }
};

nlohmann::json shape_to_json(const RerankerShape& s) {
  return {{"model", s.model},
          {"n_items", s.n_items},
          {"attribute_cardinality", s.attribute_cardinality},
          {"embed_dim", s.embed_dim},
          {"user_dim", s.user_dim},
          {"item_dim", s.item_dim},
          {"shared_experts", s.shared_experts},
          {"specific_experts", s.specific_experts},
          {"expert_hidden", s.expert_hidden},
          {"expert_out", s.expert_out},
          {"gru_hidden", s.gru_hidden},
          {"heads", s.heads},
          {"prm_mlp", s.prm_mlp}};
}

RerankerShape shape_from_json(const nlohmann::json& j) {
  RerankerShape s;
  s.model = j.at("model").get<std::string>();
  s.n_items = j.at("n_items").get<int64_t>();
  s.attribute_cardinality = j.at("attribute_cardinality").get<std::vector<int64_t>>();
  s.embed_dim = j.at("embed_dim").get<int64_t>();
  s.user_dim = j.at("user_dim").get<int64_t>();
  s.item_dim = j.at("item_dim").get<int64_t>();
  s.shared_experts = j.at("shared_experts").get<int64_t>();
  s.specific_experts = j.at("specific_experts").get<int64_t>();
  s.expert_hidden = j.at("expert_hidden").get<int64_t>();
  s.expert_out = j.at("expert_out").get<int64_t>();
  s.gru_hidden = j.at("gru_hidden").get<int64_t>();
  s.heads = j.at("heads").get<int64_t>();
  s.prm_mlp = j.at("prm_mlp").get<std::vector<int64_t>>();
  return s;
}

std::map<std::string, at::Tensor> named_state(RerankerModelImpl& m) {
  std::map<std::string, at::Tensor> state;
  for (const auto& p : m.named_parameters()) state[p.key()] = p.value();
  for (const auto& b : m.named_buffers()) state[b.key()] = b.value();
  return state;
}

}  // namespace

void save_reranker(const Reranker& r, const std::filesystem::path& path) {
  nlohmann::json header;
  header["shape"] = shape_to_json(r.shape);
  header["best_epoch"] = r.best_epoch;
  header["best_valid_map5"] = r.best_valid_map5;
  nlohmann::json hist = nlohmann::json::array();
  for (const EpochLog& e : r.history)
    hist.push_back({{"epoch", e.epoch}, {"train_loss", e.train_loss}, {"valid_map5", e.valid_map5},
                    {"valid_ndcg5", e.valid_ndcg5}, {"train_seconds", e.train_seconds}, {"seconds", e.seconds}});
  header["history"] = hist;
  const std::string h = header.dump();
  std::string out(kMagic, sizeof(kMagic));
  put(out, kVersion);
  put(out, static_cast<uint64_t>(h.size()));
  out += h;
  RerankerModel m = r.model;
  auto state = named_state(*m);
  put(out, static_cast<uint32_t>(state.size()));
  for (const auto& [name, t0] : state) {
    at::Tensor t = t0.detach().to(at::kCPU).contiguous();
    uint8_t dtype;
    if (t.scalar_type() == at::kFloat) dtype = 0;
    else if (t.scalar_type() == at::kLong) dtype = 1;
    else fail("save_reranker: tensor '{}' has unsupported dtype {}", name, c10::toString(t.scalar_type()));
    put(out, static_cast<uint32_t>(name.size()));
    out += name;
    put(out, dtype);
    put(out, static_cast<uint32_t>(t.dim()));
    for (int64_t d : t.sizes()) put(out, d);
    out.append(static_cast<const char*>(t.data_ptr()), t.nbytes());
  }
  write_file_atomic(path, out);
}

namespace {

// A header's shape is checked before any tensor is allocated: every size is positive and bounded,
// and each weight matrix the shape implies must fit in the file that stores it (fp32), so a damaged
// or hostile header cannot ask for more memory than the file's size.
void check_shape_fits(const RerankerShape& s, size_t file_bytes, const std::filesystem::path& path) {
  const uint64_t room = file_bytes / 4;  // fp32 values the file can hold
  auto size = [&](const char* what, int64_t v, int64_t lo) {
    RLRF_CHECK(v >= lo && v <= (int64_t{1} << 31), "{}: checkpoint shape: {} = {} (expected {} to 2^31)", path.string(),
               what, v, lo);
    return static_cast<uint64_t>(v);
  };
  auto matrix = [&](const char* what, uint64_t rows, uint64_t cols) {
    RLRF_CHECK(rows == 0 || cols <= room / rows, "{}: checkpoint shape: {} of {} x {} values is larger than the file ({} bytes)",
               path.string(), what, rows, cols, file_bytes);
  };
  RLRF_CHECK(s.model == "dlcm" || s.model == "prm", "{}: checkpoint shape: unknown model '{}'", path.string(), s.model);
  const uint64_t embed = size("embed_dim", s.embed_dim, 1);
  matrix("the item embedding", size("n_items", s.n_items, 1), embed);
  RLRF_CHECK(s.attribute_cardinality.size() <= 64, "{}: checkpoint shape: {} item attributes (at most 64)", path.string(),
             s.attribute_cardinality.size());
  for (int64_t c : s.attribute_cardinality) matrix("an attribute embedding", size("attribute_cardinality", c, 1), embed);
  const uint64_t experts = size("shared_experts", s.shared_experts, 0) + size("specific_experts", s.specific_experts, 0);
  RLRF_CHECK(experts <= 1024, "{}: checkpoint shape: {} experts (at most 1024)", path.string(), experts);
  const uint64_t hidden = size("expert_hidden", s.expert_hidden, 1), out = size("expert_out", s.expert_out, 1);
  for (int64_t dim : {s.user_dim, s.item_dim})
    if (size("knowledge vector size", dim, 0) > 0) matrix("an adapter expert", static_cast<uint64_t>(dim), hidden);
  matrix("an expert's output layer", hidden, out);
  const uint64_t towers = static_cast<uint64_t>(s.towers());
  RLRF_CHECK(s.attribute_cardinality.size() + 1 <= room / embed && towers * out <= room,
             "{}: checkpoint shape: the scorer's input is larger than the file", path.string());
  const uint64_t in = static_cast<uint64_t>(s.input_dim());
  if (s.model == "dlcm") {
    const uint64_t gru = size("gru_hidden", s.gru_hidden, 1);
    matrix("the GRU", 3 * gru, in);
    matrix("the GRU's recurrence", 3 * gru, gru);
  } else {
    RLRF_CHECK(s.heads > 0 && s.heads <= 1024, "{}: checkpoint shape: heads = {} (1 to 1024)", path.string(), s.heads);
    matrix("the attention", 3 * in, in);
    RLRF_CHECK(s.prm_mlp.size() <= 64, "{}: checkpoint shape: {} PRM layers (at most 64)", path.string(), s.prm_mlp.size());
    uint64_t d = in;
    for (int64_t h : s.prm_mlp) {
      matrix("a PRM layer", d, size("prm_mlp", h, 1));
      d = static_cast<uint64_t>(h);
    }
  }
}

}  // namespace

Reranker load_reranker(const std::filesystem::path& path, const std::string& device) {
  const std::string buf = read_file(path);
  Reader rd{buf, 0, path.string()};
  std::string magic = rd.bytes(sizeof(kMagic));
  RLRF_CHECK(magic == std::string(kMagic, sizeof(kMagic)),
             "{}: not a reranker checkpoint (bad magic); expected a file written by save_reranker / rlrf rerank",
             path.string());
  const uint32_t version = rd.get<uint32_t>();
  RLRF_CHECK(version == kVersion, "{}: reranker checkpoint version {} (this build reads version {}); retrain it",
             path.string(), version, kVersion);
  const uint64_t hlen = rd.get<uint64_t>();
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(rd.bytes(hlen));
  } catch (const nlohmann::json::exception& e) {
    fail("{}: bad checkpoint header: {}", path.string(), e.what());
  }
  Reranker r;
  try {
    r.shape = shape_from_json(header.at("shape"));
    r.best_epoch = header.at("best_epoch").get<int>();
    r.best_valid_map5 = header.at("best_valid_map5").get<double>();
    for (const auto& e : header.at("history")) {
      EpochLog l;
      l.epoch = e.at("epoch").get<int>();
      l.train_loss = e.at("train_loss").get<double>();
      l.valid_map5 = e.at("valid_map5").get<double>();
      l.valid_ndcg5 = e.at("valid_ndcg5").get<double>();
      l.train_seconds = e.at("train_seconds").get<double>();
      l.seconds = e.at("seconds").get<double>();
      r.history.push_back(l);
    }
  } catch (const nlohmann::json::exception& e) {
    fail("{}: bad checkpoint header: {}", path.string(), e.what());
  }
  check_shape_fits(r.shape, buf.size(), path);
  r.model = RerankerModel(r.shape);
  auto state = named_state(*r.model);
  const uint32_t count = rd.get<uint32_t>();
  RLRF_CHECK(count == state.size(), "{}: checkpoint has {} tensors, the model for its shape has {}", path.string(),
             count, state.size());
  torch::NoGradGuard guard;
  for (uint32_t i = 0; i < count; ++i) {
    std::string name = rd.bytes(rd.get<uint32_t>());
    const uint8_t dtype = rd.get<uint8_t>();
    const uint32_t ndim = rd.get<uint32_t>();
    RLRF_CHECK(ndim <= 8, "{}: checkpoint tensor '{}' claims {} dimensions", path.string(), name, ndim);
    std::vector<int64_t> dims(ndim);
    for (auto& d : dims) d = rd.get<int64_t>();
    auto it = state.find(name);
    RLRF_CHECK(it != state.end(), "{}: checkpoint tensor '{}' is not part of the model", path.string(), name);
    at::Tensor& dst = it->second;
    RLRF_CHECK(dst.sizes() == at::IntArrayRef(dims), "{}: tensor '{}' has shape {}; the model expects {}",
               path.string(), name, at::IntArrayRef(dims), dst.sizes());
    const at::ScalarType st = dtype == 0 ? at::kFloat : dtype == 1 ? at::kLong : at::kByte;
    RLRF_CHECK(dtype <= 1 && st == dst.scalar_type(), "{}: tensor '{}' has dtype code {}, model wants {}",
               path.string(), name, dtype, c10::toString(dst.scalar_type()));
    const size_t nbytes = static_cast<size_t>(dst.numel()) * dst.element_size();
    std::string raw = rd.bytes(nbytes);
    at::Tensor src = at::empty(dst.sizes(), dst.options().device(at::kCPU));
    if (nbytes > 0) std::memcpy(src.data_ptr(), raw.data(), nbytes);
    dst.copy_(src);
  }
  RLRF_CHECK(rd.pos == buf.size(), "{}: {} trailing bytes after the last tensor", path.string(), buf.size() - rd.pos);
  r.device = resolve_device(device);
  r.model->to(torch::Device(r.device));
  r.model->eval();
  return r;
}

}  // namespace rlrf
