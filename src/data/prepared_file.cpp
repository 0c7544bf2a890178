// The prepared-data file: "RLRFPREP", u32 version, u64 payload size, payload, SHA-256(payload).
// The payload holds the PrepareConfig, the Dataset, the sequences, the lists and the popularity,
// each vector as a u64 count followed by its elements (little-endian, floats as IEEE bits).
#include <bit>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "data/prepare.h"
#include "util/byte_reader.h"
#include "util/error.h"
#include "util/files.h"
#include "util/sha256.h"

namespace rlrf {

namespace {

constexpr char kMagic[8] = {'R', 'L', 'R', 'F', 'P', 'R', 'E', 'P'};
constexpr uint32_t kVersion = 2;  // 2: test folds
constexpr size_t kHeader = 8 + 4 + 8;

static_assert(std::endian::native == std::endian::little, "the prepared file is written little-endian");

class Writer {
 public:
  std::string buf;
  template <typename T>
  void pod(T v) {
    static_assert(std::is_trivially_copyable_v<T>);
    buf.append(reinterpret_cast<const char*>(&v), sizeof(T));
  }
  void str(const std::string& s) {
    pod<uint64_t>(s.size());
    buf.append(s);
  }
  template <typename T>
  void vec(const std::vector<T>& v) {
    pod<uint64_t>(v.size());
    if constexpr (std::is_same_v<T, std::string>) {
      for (const std::string& s : v) str(s);
    } else {
      static_assert(std::is_trivially_copyable_v<T>);
      buf.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
    }
  }
};

// The prepared file's reader: ByteReader's bounded reads plus vectors and enums.
class Reader : public ByteReader {
 public:
  Reader(std::string_view data, const std::filesystem::path& path) : ByteReader(data, path, "prepared file") {}
  template <typename T>
  std::vector<T> vec(const char* what) {
    std::vector<T> v;
    if constexpr (std::is_same_v<T, std::string>) {
      const uint64_t n = count(8, what);  // at least a length per string
      v.reserve(n);
      for (uint64_t k = 0; k < n; ++k) v.push_back(str(what));
    } else {
      const uint64_t n = count(sizeof(T), what);
      v.resize(n);
      if (n > 0) std::memcpy(v.data(), bytes(n * sizeof(T), what).data(), n * sizeof(T));
    }
    return v;
  }
  template <typename E>
  E enum_value(uint8_t max, const char* what) {
    uint8_t v = pod<uint8_t>(what);
    if (v > max) fail("{}: corrupt prepared file: {} has value {}", path().string(), what, v);
    return static_cast<E>(v);
  }
};

void write_config(Writer& w, const PrepareConfig& c) {
  w.str(c.dataset);
  w.str(c.data_dir);
  w.pod<uint64_t>(c.seed);
  w.pod<double>(c.test_fraction);
  w.pod<double>(c.valid_fraction);
  w.pod<int32_t>(c.list_size);
  w.pod<int32_t>(c.real_per_list);
  w.str(c.setting);
  w.str(c.first_stage);
  w.pod<uint8_t>(c.drop_lists_without_positive);
  w.pod<int32_t>(c.first_stage_window);
  w.pod<int32_t>(c.first_stage_folds);
  w.pod<int32_t>(c.mf_factors);
  w.pod<int32_t>(c.mf_iterations);
  w.pod<double>(c.mf_regularization);
  w.pod<double>(c.mf_alpha);
  w.pod<int32_t>(c.amazon_min_user);
  w.pod<int32_t>(c.amazon_min_item);
  w.pod<int32_t>(c.folds);
  w.pod<int32_t>(c.fold);
}

PrepareConfig read_config(Reader& r) {
  PrepareConfig c;
  c.dataset = r.str("config.dataset");
  c.data_dir = r.str("config.data_dir");
  c.seed = r.pod<uint64_t>("config.seed");
  c.test_fraction = r.pod<double>("config.test_fraction");
  c.valid_fraction = r.pod<double>("config.valid_fraction");
  c.list_size = r.pod<int32_t>("config.list_size");
  c.real_per_list = r.pod<int32_t>("config.real_per_list");
  c.setting = r.str("config.setting");
  c.first_stage = r.str("config.first_stage");
  c.drop_lists_without_positive = r.pod<uint8_t>("config.drop_lists_without_positive") != 0;
  c.first_stage_window = r.pod<int32_t>("config.first_stage_window");
  c.first_stage_folds = r.pod<int32_t>("config.first_stage_folds");
  c.mf_factors = r.pod<int32_t>("config.mf_factors");
  c.mf_iterations = r.pod<int32_t>("config.mf_iterations");
  c.mf_regularization = r.pod<double>("config.mf_regularization");
  c.mf_alpha = r.pod<double>("config.mf_alpha");
  c.amazon_min_user = r.pod<int32_t>("config.amazon_min_user");
  c.amazon_min_item = r.pod<int32_t>("config.amazon_min_item");
  c.folds = r.pod<int32_t>("config.folds");
  c.fold = r.pod<int32_t>("config.fold");
  return c;
}

void write_dataset(Writer& w, const Dataset& d) {
  w.str(d.name);
  w.pod<uint64_t>(d.users.size());
  for (const UserInfo& u : d.users) {
    w.str(u.raw_id);
    w.str(u.gender);
    w.str(u.age);
    w.str(u.occupation);
  }
  w.pod<uint64_t>(d.items.size());
  for (const ItemInfo& it : d.items) {
    w.str(it.raw_id);
    w.str(it.title);
    w.pod<int32_t>(it.year);
    w.vec(it.genres);
    w.str(it.brand);
    w.str(it.category);
  }
  w.pod<uint64_t>(d.ratings.size());
  for (const Rating& r : d.ratings) {
    w.pod<int32_t>(r.user);
    w.pod<int32_t>(r.item);
    w.pod<float>(r.rating);
    w.pod<int64_t>(r.time);
  }
  w.pod<float>(d.positive_above);
  w.pod<int32_t>(d.prompt_history_cap);
  w.vec(d.attribute_names);
  w.pod<uint64_t>(d.item_attributes.size());
  for (const auto& v : d.item_attributes) w.vec(v);
  w.vec(d.attribute_cardinality);
  w.pod<uint64_t>(d.attribute_values.size());
  for (const auto& v : d.attribute_values) w.vec(v);
}

Dataset read_dataset(Reader& r) {
  Dataset d;
  d.name = r.str("dataset.name");
  uint64_t nu = r.count(32, "dataset.users");
  d.users.resize(nu);
  for (UserInfo& u : d.users) {
    u.raw_id = r.str("user.raw_id");
    u.gender = r.str("user.gender");
    u.age = r.str("user.age");
    u.occupation = r.str("user.occupation");
  }
  uint64_t ni = r.count(44, "dataset.items");
  d.items.resize(ni);
  for (ItemInfo& it : d.items) {
    it.raw_id = r.str("item.raw_id");
    it.title = r.str("item.title");
    it.year = r.pod<int32_t>("item.year");
    it.genres = r.vec<std::string>("item.genres");
    it.brand = r.str("item.brand");
    it.category = r.str("item.category");
  }
  uint64_t nr = r.count(20, "dataset.ratings");
  d.ratings.resize(nr);
  for (Rating& x : d.ratings) {
    x.user = r.pod<int32_t>("rating.user");
    x.item = r.pod<int32_t>("rating.item");
    x.rating = r.pod<float>("rating.rating");
    x.time = r.pod<int64_t>("rating.time");
  }
  d.positive_above = r.pod<float>("dataset.positive_above");
  d.prompt_history_cap = r.pod<int32_t>("dataset.prompt_history_cap");
  d.attribute_names = r.vec<std::string>("dataset.attribute_names");
  uint64_t na = r.count(8, "dataset.item_attributes");
  for (uint64_t a = 0; a < na; ++a) d.item_attributes.push_back(r.vec<int32_t>("dataset.item_attributes"));
  d.attribute_cardinality = r.vec<int32_t>("dataset.attribute_cardinality");
  uint64_t nv = r.count(8, "dataset.attribute_values");
  for (uint64_t a = 0; a < nv; ++a) d.attribute_values.push_back(r.vec<std::string>("dataset.attribute_values"));
  return d;
}

}  // namespace

void save_prepared(const PreparedData& data, const std::filesystem::path& path) {
  Writer w;
  write_config(w, data.config);
  write_dataset(w, data.dataset);
  w.pod<uint64_t>(data.sequences.size());
  for (const UserSequence& s : data.sequences) {
    w.pod<int32_t>(s.user);
    w.vec(s.items);
    w.vec(s.ratings);
    w.vec(s.times);
    w.pod<int32_t>(s.prefix_len);
    w.pod<uint8_t>(static_cast<uint8_t>(s.split));
  }
  w.pod<uint64_t>(data.lists.size());
  for (const RerankList& l : data.lists) {
    w.pod<int32_t>(l.user);
    w.pod<uint8_t>(static_cast<uint8_t>(l.split));
    w.vec(l.items);
    w.vec(l.labels);
    w.vec(l.initial_scores);
    w.pod<int32_t>(l.begin);
    w.pod<int32_t>(l.end);
    w.vec(l.seq_pos);
  }
  w.vec(data.item_popularity);
  w.pod<int64_t>(data.dropped_train_lists);

  std::string file;
  file.reserve(kHeader + w.buf.size() + 32);
  file.append(kMagic, 8);
  uint32_t version = kVersion;
  uint64_t size = w.buf.size();
  file.append(reinterpret_cast<const char*>(&version), 4);
  file.append(reinterpret_cast<const char*>(&size), 8);
  file.append(w.buf);
  Sha256 h;
  h.update(w.buf);
  auto digest = h.digest();
  file.append(reinterpret_cast<const char*>(digest.data()), digest.size());
  write_file_atomic(path, file);
}

PreparedData load_prepared(const std::filesystem::path& path) {
  std::string file = read_file(path);
  const std::string p = path.string();
  if (file.size() < 8 || std::memcmp(file.data(), kMagic, 8) != 0)
    fail("{}: not a prepared-data file (bad magic number; make one with `rlrf prepare`)", p);
  if (file.size() < kHeader) fail("{}: truncated prepared-data file ({} bytes, header needs {})", p, file.size(), kHeader);
  uint32_t version;
  uint64_t size;
  std::memcpy(&version, file.data() + 8, 4);
  std::memcpy(&size, file.data() + 12, 8);
  if (version != kVersion)
    fail("{}: prepared-data version {} but this build reads version {} (run `rlrf prepare` again)", p, version, kVersion);
  if (file.size() != kHeader + size + 32) {
    if (file.size() < kHeader + size + 32)
      fail("{}: truncated prepared-data file: {} bytes, expected {} (rerun `rlrf prepare`)", p, file.size(),
           kHeader + size + 32);
    fail("{}: prepared-data file has {} bytes, expected {} (trailing bytes; rerun `rlrf prepare`)", p, file.size(),
         kHeader + size + 32);
  }
  std::string_view payload(file.data() + kHeader, size);
  Sha256 h;
  h.update(payload);
  auto digest = h.digest();
  if (std::memcmp(digest.data(), file.data() + kHeader + size, 32) != 0)
    fail("{}: prepared-data checksum mismatch (the file is corrupt; rerun `rlrf prepare`)", p);

  Reader r(payload, path);
  PreparedData data;
  data.config = read_config(r);
  data.dataset = read_dataset(r);
  uint64_t ns = r.count(33, "sequences");
  data.sequences.resize(ns);
  for (UserSequence& s : data.sequences) {
    s.user = r.pod<int32_t>("sequence.user");
    s.items = r.vec<int32_t>("sequence.items");
    s.ratings = r.vec<float>("sequence.ratings");
    s.times = r.vec<int64_t>("sequence.times");
    s.prefix_len = r.pod<int32_t>("sequence.prefix_len");
    s.split = r.enum_value<Split>(2, "sequence.split");
  }
  uint64_t nl = r.count(45, "lists");
  data.lists.resize(nl);
  for (RerankList& l : data.lists) {
    l.user = r.pod<int32_t>("list.user");
    l.split = r.enum_value<Split>(2, "list.split");
    l.items = r.vec<int32_t>("list.items");
    l.labels = r.vec<uint8_t>("list.labels");
    l.initial_scores = r.vec<float>("list.initial_scores");
    l.begin = r.pod<int32_t>("list.begin");
    l.end = r.pod<int32_t>("list.end");
    l.seq_pos = r.vec<int32_t>("list.seq_pos");
  }
  data.item_popularity = r.vec<float>("item_popularity");
  data.dropped_train_lists = r.pod<int64_t>("dropped_train_lists");
  if (!r.done()) fail("{}: corrupt prepared file: bytes left after the last field", p);
  return data;
}

}  // namespace rlrf
