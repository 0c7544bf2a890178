// Fuzz target: the dataset loaders on their real file layouts. The first byte picks the layout
// (0: MovieLens-100K, 1: MovieLens-1M, 2: Amazon Books, by its value mod 3); the rest holds the
// files, separated by "--file--" lines: u.genre, u.user, u.item, u.data | users.dat, movies.dat,
// ratings.dat | reviews JSONL, meta JSONL. An accepted dataset must also prepare (lists, splits).
#include "data/dataset.h"
#include "data/prepare.h"
#include "fuzz/fuzz_input.h"
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const int layout = data[0] % 3;
  std::filesystem::path dir = rlrf::fuzz::scratch_dir();
  rlrf::fuzz::accepts_or_rejects([&] {
    rlrf::Dataset d;
    if (layout == 0) {
      auto p = rlrf::fuzz::split_parts(data + 1, size - 1, 4);
      const char* names[] = {"u.genre", "u.user", "u.item", "u.data"};
      for (int i = 0; i < 4; ++i) rlrf::fuzz::write_bytes(dir / names[i], p[i]);
      d = rlrf::load_movielens_100k(dir);
    } else if (layout == 1) {
      auto p = rlrf::fuzz::split_parts(data + 1, size - 1, 3);
      const char* names[] = {"users.dat", "movies.dat", "ratings.dat"};
      for (int i = 0; i < 3; ++i) rlrf::fuzz::write_bytes(dir / names[i], p[i]);
      d = rlrf::load_movielens_1m(dir);
    } else {
      auto p = rlrf::fuzz::split_parts(data + 1, size - 1, 2);
      rlrf::fuzz::write_bytes(dir / "reviews.json", p[0]);
      rlrf::fuzz::write_bytes(dir / "meta.json", p[1]);
      d = rlrf::load_amazon_books(dir / "reviews.json", dir / "meta.json", 1, 1);
    }
    rlrf::PrepareConfig config;  // lists of 5 (2 real): small catalogs still prepare
    config.list_size = 5;
    config.real_per_list = 2;
    rlrf::prepare(d, config);
  });
  return 0;
}
