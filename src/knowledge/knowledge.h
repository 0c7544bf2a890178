// Knowledge texts (the paper's "knowledge augmentation"): what is known about each item and each
// user, as natural-language text, before it is encoded into vectors for the reranker.
#pragma once
#include <filesystem>
#include <string>
#include <vector>

#include "data/prepare.h"

namespace rlrf {

// Item knowledge from metadata: title, year, genres (MovieLens) or title, brand, category (Books).
std::vector<std::string> item_knowledge_from_metadata(const Dataset& dataset);

// Item knowledge from a KAR-format file: a JSON object keyed by raw item id whose values carry
// "prompt" and "ans"; the text is the answer. Items missing from the file fall back to metadata
// (counted in a warning). Errors name the file and the key.
std::vector<std::string> item_knowledge_from_kar_file(const Dataset& dataset, const std::filesystem::path& path);

// The history part of a user's prompt (KAR wording): "\"{title}\", {rating} stars; " per prefix item.
std::string user_history_text(const PreparedData& data, int32_t user);

// A readable profile of the user computed from the prompt-history prefix only: favourite and least
// liked genres and decades, rating habits, best and worst rated titles.
std::string user_profile_summary(const PreparedData& data, int32_t user);

// User knowledge from a JSONL file, one {"user": "<raw id>", "text": "..."} per line (what the LLM
// stage writes). Users absent from the file get "". Errors name the file and line.
std::vector<std::string> user_knowledge_from_file(const Dataset& dataset, const std::filesystem::path& path);

// The named user-knowledge source: "none" (empty vector), "profile", or "file:<path>".
std::vector<std::string> user_knowledge(const PreparedData& data, const std::string& source);

// The text that is encoded for a user, following KAR: history text + ". " + knowledge text.
// With history=false, the knowledge text alone.
std::string user_text_for_encoding(const PreparedData& data, int32_t user, const std::string& knowledge,
                                   bool with_history = true);

}  // namespace rlrf
