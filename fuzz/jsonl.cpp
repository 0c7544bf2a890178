// Fuzz target: the JSON and JSONL files a user hands to rlrf. The first byte picks the reader (its
// value mod 5): 0 responses from an engine (rlrf reward --responses), 1 user knowledge
// (knowledge = "file:..."), 2 KAR item knowledge, 3 TRL preference pairs, 4 a LLaMA-Factory dataset
// (dataset_info.json, then after a "--file--" line the data file it names, written as pairs.json).
// The first byte divided by 5 sets the pair options: bit 0 the llama3 template, bit 1 a cutoff of
// 24 tokens, bit 2 answers capped at 8 tokens.
// Users and items are "1".."6"; pairs are tokenized with the demo model's real tokenizer.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>

#include "align/pair_files.h"
#include "align/reward.h"
#include "fuzz/fuzz_input.h"
#include "knowledge/knowledge.h"
#include "text/tokenizer.h"
#include "util/files.h"

namespace {
std::unique_ptr<rlrf::Tokenizer> tokenizer;
rlrf::Dataset dataset;
}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  try {
    tokenizer = std::make_unique<rlrf::Tokenizer>(
        rlrf::Tokenizer::load(rlrf::shared_dir() / "models" / "tinystories-656k"));
  } catch (const rlrf::Error& e) {
    std::fprintf(stderr, "jsonl needs the shared demo model's tokenizer: %s\n", e.what());
    std::exit(2);
  }
  dataset.name = "fuzz";
  for (int i = 1; i <= 6; ++i) {
    dataset.users.push_back({std::to_string(i), "", "", ""});
    rlrf::ItemInfo item;
    item.raw_id = std::to_string(i);
    item.title = "Item " + std::to_string(i);
    dataset.items.push_back(item);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const int reader = data[0] % 5;
  std::filesystem::path dir = rlrf::fuzz::scratch_dir();
  auto parts = rlrf::fuzz::split_parts(data + 1, size - 1, 2);
  rlrf::fuzz::accepts_or_rejects([&] {
    rlrf::PairReadOptions options;
    const int flags = data[0] / 5;  // pair options: chat template, cutoff, response cap
    options.chat_template = flags & 1 ? "llama3" : "none";
    options.cutoff_len = flags & 2 ? 24 : 0;
    options.max_response_tokens = flags & 4 ? 8 : 0;
    switch (reader) {
      case 0:
        rlrf::fuzz::write_bytes(dir / "responses.jsonl", parts[0]);
        rlrf::read_responses_jsonl(dir / "responses.jsonl", dataset);
        break;
      case 1:
        rlrf::fuzz::write_bytes(dir / "users.jsonl", parts[0]);
        rlrf::user_knowledge_from_file(dataset, dir / "users.jsonl");
        break;
      case 2:
        rlrf::fuzz::write_bytes(dir / "items.json", parts[0]);
        rlrf::item_knowledge_from_kar_file(dataset, dir / "items.json");
        break;
      case 3:
        rlrf::fuzz::write_bytes(dir / "pairs.jsonl", parts[0]);
        rlrf::read_trl_pairs(*tokenizer, dir / "pairs.jsonl", options);
        break;
      default:
        rlrf::fuzz::write_bytes(dir / "dataset_info.json", parts[0]);
        rlrf::fuzz::write_bytes(dir / "pairs.json", parts[1]);
        rlrf::read_llamafactory_pairs(*tokenizer, dir, "", options);
        break;
    }
  });
  return 0;
}
