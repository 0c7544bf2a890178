// Preference pairs from trainers' files, tokenized as those trainers lay them out.
//
// TRL (JSONL, one object a line; TRL's documented preference formats):
//   conversational  prompt/chosen/rejected are lists of {"role","content"} messages. The prompt is
//                   rendered with the chat template and its generation prompt; an answer is its
//                   last message's content followed by the template's end-of-turn token
//                   (end_of_turn_id: <|eot_id|>, <|im_end|>, else EOS).
//   standard        strings. The prompt is raw text: no chat template and no BOS (TRL adds no
//                   special tokens for decoder-only models); an answer is its text followed by the
//                   tokenizer's EOS.
//   implicit prompt no "prompt" column: the prompt is what chosen and rejected share at their start,
//                   as TRL extracts it: the leading messages both lists hold, or for strings the
//                   common prefix, less a space that ends it.
// LLaMA-Factory (a ranking dataset of alpaca rows, columns as its dataset_info.json maps them):
//   the user message is the instruction, then "\n" and the input when there is one, after the
//   system column's message; rendered and ended as conversational TRL rows. Rows that carry
//   rlrf's sampled ids (rlrf_prompt_ids, rlrf_chosen_ids, rlrf_rejected_ids: columns LLaMA-Factory
//   drops) are trained on those ids unless PairReadOptions::use_ids is false.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "align/dpo.h"
#include "text/tokenizer.h"

namespace rlrf {

struct PairReadOptions {
  std::string chat_template = "none";  // rlrf's name (llama3 | llama3.1 | chatml | none)
  // > 0: an answer of this many content tokens or more is cut to it and gets no end token (as
  // generation leaves a response that reached max_new_tokens).
  int max_response_tokens = 0;
  // > 0: a pair longer than this (prompt + its longer answer) is cut: its answers to the room the
  // prompt leaves (at least one token each), then the prompt's end when it alone leaves none.
  int cutoff_len = 0;
  // LLaMA-Factory rows: train on rlrf's sampled ids when a row carries them (false: the text).
  bool use_ids = true;
};

struct PairFileStats {
  int64_t pairs = 0;
  int64_t cut = 0;      // pairs longer than cutoff_len (cut when it was > 0)
  int64_t longest = 0;  // tokens of the longest pair before any cut
  int64_t from_ids = 0; // pairs taken from the rows' sampled ids rather than their text
};

// Prompt + the longer answer: what a trainer's cutoff_len bounds.
int64_t pair_length(const PreferencePair& pair);
// Cuts a pair to `cutoff_len` tokens as PairReadOptions::cutoff_len says; true when it was longer.
bool cut_pair(PreferencePair& pair, int cutoff_len);

// The pairs of a TRL JSONL file; errors name the file, line and what is wrong.
std::vector<PreferencePair> read_trl_pairs(const Tokenizer& tokenizer, const std::filesystem::path& path,
                                           const PairReadOptions& options, PairFileStats* stats = nullptr);

// The pairs of LLaMA-Factory dataset `dataset` in `dir` (its dataset_info.json says which file and
// which columns). `dataset` may be empty when dataset_info.json registers one dataset only.
std::vector<PreferencePair> read_llamafactory_pairs(const Tokenizer& tokenizer, const std::filesystem::path& dir,
                                                    const std::string& dataset, const PairReadOptions& options,
                                                    PairFileStats* stats = nullptr);

}  // namespace rlrf
