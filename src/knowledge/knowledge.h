// Knowledge texts (the paper's "knowledge augmentation"): what is known about each item and each
// user, as natural-language text, before it is encoded into vectors for the reranker.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "data/prepare.h"

namespace rlrf {

// "Toy Story (1995)": the title with the release year when known (KAR's titles carry the year).
std::string item_title_with_year(const ItemInfo& item);

// Item knowledge from metadata: title, year, genres (MovieLens) or title, brand, category (Books).
// "Toy Story (1995). Genres: Animation, Children's, Comedy." / "The Hobbit. Brand: J.R.R. Tolkien.
// Category: Fantasy."; parts that are unknown are left out.
std::vector<std::string> item_knowledge_from_metadata(const Dataset& dataset);

// Item knowledge from a KAR-format file: a JSON object keyed by raw item id whose values carry
// "prompt" and "ans"; the text is the answer. Items missing from the file fall back to metadata
// (counted in a warning). Errors name the file and the key.
std::vector<std::string> item_knowledge_from_kar_file(const Dataset& dataset, const std::filesystem::path& path);

// The named item-knowledge source: "metadata" or "file:<path>" (a KAR file, as above).
std::vector<std::string> item_knowledge(const Dataset& dataset, const std::string& source);

// The history part of a user's prompt (KAR wording): "\"{title}\", {rating} stars; " per prefix item,
// the title with its year as KAR has it ("\"Toy Story (1995)\", 5 stars; "); the same text as the
// prompt's history (prompts.h history_text).
std::string user_history_text(const PreparedData& data, int32_t user);

// A readable profile of the user computed from the prompt-history prefix only: rating habits (mean,
// share of ratings above the positive threshold, most common rating), most watched, favourite and
// least liked genres (Books: categories and brands) with counts and average ratings, the most
// watched (favourite) decades, best and worst rated titles. Ratings after the prefix never change it.
std::string user_profile_summary(const PreparedData& data, int32_t user);

// User knowledge from a JSONL file, one {"user": "<raw id>", "text": "..."} per line (what the LLM
// stage writes). Users absent from the file get "". Errors name the file and line.
std::vector<std::string> user_knowledge_from_file(const Dataset& dataset, const std::filesystem::path& path);

// The named user-knowledge source: "none" (empty vector), "profile", or "file:<path>".
std::vector<std::string> user_knowledge(const PreparedData& data, const std::string& source);

// The text that is encoded for a user, following KAR: history text + ". " + knowledge text, where, as
// in KAR's encoder input, the history loses its final "; " ("\"A (1995)\", 4 stars. <knowledge>").
// Empty knowledge gives the history alone; with_history=false gives the knowledge text alone.
std::string user_text_for_encoding(const PreparedData& data, int32_t user, const std::string& knowledge,
                                   bool with_history = true);

}  // namespace rlrf
