// `rlrf knowledge`: prints knowledge texts for inspection: per user the prompt history and the
// knowledge of a source (profile summary, a JSONL file of LLM responses), or with --items the
// item knowledge (metadata or a KAR file).
#include <CLI/CLI.hpp>
#include <cstdint>

#include <cstdio>

#include "cli/verbs.h"
#include "data/prepare.h"
#include "knowledge/knowledge.h"
#include "util/error.h"

static int run_knowledge(int argc, char** argv) {
  CLI::App app{"Print knowledge texts of a prepared dataset for inspection.\n"
               "example: rlrf knowledge --prepared runs/ml100k/prepared.bin --source profile --limit 3\n"
               "         rlrf knowledge --prepared runs/ml100k/prepared.bin --items --item-source metadata --limit 5",
               "rlrf knowledge"};
  std::string prepared_path, source = "profile", item_source = "metadata", user_id, item_id;
  int limit = 5;
  bool items = false, encoded = false;
  app.add_option("--prepared", prepared_path, "prepared.bin written by `rlrf prepare`")->required();
  app.add_option("--source", source, "user knowledge: none | profile | file:<path to JSONL>")->capture_default_str();
  app.add_option("--user", user_id, "only this user (raw id, as in the dataset files)");
  app.add_option("--limit", limit, "at most this many users/items (0: all)")->capture_default_str();
  app.add_flag("--items", items, "print item knowledge instead of user knowledge");
  app.add_option("--item-source", item_source, "item knowledge: metadata | file:<path to KAR JSON>")->capture_default_str();
  app.add_option("--item", item_id, "only this item (raw id); implies --items");
  app.add_flag("--encoded", encoded, "also print the exact text the encoder gets (history + \". \" + knowledge)");
  CLI11_PARSE(app, argc, argv);

  rlrf::PreparedData data = rlrf::load_prepared(prepared_path);
  const rlrf::Dataset& ds = data.dataset;
  if (items || !item_id.empty()) {
    std::vector<std::string> k = rlrf::item_knowledge(ds, item_source);
    int shown = 0;
    for (size_t i = 0; i < ds.items.size(); ++i) {
      if (!item_id.empty() && ds.items[i].raw_id != item_id) continue;
      if (limit > 0 && shown >= limit) break;
      std::printf("item %s: %s\n", ds.items[i].raw_id.c_str(), k[i].c_str());
      ++shown;
    }
    RLRF_CHECK(item_id.empty() || shown > 0, "no item with raw id '{}' in {} ({} items)", item_id, ds.name, ds.items.size());
    return 0;
  }

  // One user's profile need not compute everyone's.
  int32_t only = -1;
  if (!user_id.empty()) {
    for (size_t u = 0; u < ds.users.size(); ++u)
      if (ds.users[u].raw_id == user_id) only = static_cast<int32_t>(u);
    RLRF_CHECK(only >= 0, "no user with raw id '{}' in {} ({} users)", user_id, ds.name, ds.users.size());
  }
  std::vector<std::string> knowledge;
  if (!(source == "profile" && only >= 0)) knowledge = rlrf::user_knowledge(data, source);
  int shown = 0;
  for (size_t u = 0; u < data.sequences.size(); ++u) {
    if (only >= 0 && static_cast<int32_t>(u) != only) continue;
    if (limit > 0 && shown >= limit) break;
    const rlrf::UserSequence& s = data.sequences[u];
    const auto user = static_cast<int32_t>(u);
    std::string k = knowledge.empty() ? (source == "profile" ? rlrf::user_profile_summary(data, user) : std::string())
                                      : knowledge[u];
    std::printf("user %s (%s; prompt history %d of %zu ratings)\n", ds.users[u].raw_id.c_str(), rlrf::split_name(s.split),
                s.prefix_len, s.items.size());
    std::printf("  history:   %s\n", rlrf::user_history_text(data, user).c_str());
    std::printf("  knowledge: %s\n", k.empty() ? "(none)" : k.c_str());
    if (encoded) std::printf("  encoded:   %s\n", rlrf::user_text_for_encoding(data, user, k).c_str());
    std::printf("\n");
    ++shown;
  }
  return 0;
}

static rlrf::cli::VerbRegistration reg_knowledge({"knowledge", "print user/item knowledge texts for inspection", 15, run_knowledge});
