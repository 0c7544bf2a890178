// Knowledge cards: a short, fixed-form statement of a user's tastes computed only from the history
// items the LLM's prompt shows, so that a policy can learn to write it exactly and stop:
//
//   "Likes: Drama, Comedy. Dislikes: Horror. Era: 1990s. Rater: generous. Favourite: Fargo."
//
// Fields (each omitted when the shown items give no value):
//   Likes      the 2 genres (Books: categories) most frequent among shown items rated above the
//              positive threshold; ties by name
//   Dislikes   the genre most frequent among shown items rated below the threshold, not liked
//   Era        the decade most frequent among shown items (ties: the more recent)
//   Rater      mean shown rating >= 4: generous, < 3: critical, else moderate
//   Favourite  the best rated shown item (ties: the most recent), its title without the year
//
// A card's statements are its liked and disliked genres, era, rater and favourite. card_agreement
// parses any text for these fields and scores the share of statements that agree with a true card:
// the reward-free measure of a response the report shows per round. noisy_card replaces each
// statement by a wrong one with probability p ([sft] target_noise: a misaligned starting policy).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/prepare.h"

namespace rlrf {

struct KnowledgeCard {
  std::vector<std::string> liked;     // at most 2
  std::vector<std::string> disliked;  // at most 1
  std::string era;                    // "1990s"
  std::string rater;                  // generous | moderate | critical
  std::string favourite;              // a title
  int statements() const;
};

// The card of `user` from the most recent `shown_items` items of the prompt-history prefix
// (-1: the whole prefix); the prompt shows those items (UserPrompt::history_items).
KnowledgeCard user_card(const PreparedData& data, int32_t user, int shown_items = -1);

// "Likes: A, B. Dislikes: C. Era: 1990s. Rater: generous. Favourite: T." (fields without a value
// are left out; with_favourite = false leaves the favourite out, for a card that must be shorter).
std::string card_text(const KnowledgeCard& card, bool with_favourite = true);

// The fields a text states (labels found anywhere, case-insensitive; a value runs to the next label
// or the end; a trailing '.' is dropped; genre lists split on ','). Text that states no field gives
// an empty card.
KnowledgeCard parse_card(const std::string& text);

struct CardAgreement {
  int stated = 0;  // statements the text makes
  int agree = 0;   // of those, how many the true card makes too
  int truth = 0;   // statements of the true card
  // agree / max(stated, truth, 1): wrong statements and missing ones both cost.
  double score() const;
};
CardAgreement card_agreement(const KnowledgeCard& truth, const std::string& text);

// What noise draws from: every genre (category), decade and title of the dataset's catalog.
struct CardVocabulary {
  std::vector<std::string> genres, eras, titles;
};
CardVocabulary card_vocabulary(const PreparedData& data);

// `card` with each statement replaced, with probability p, by a wrong value drawn uniformly from
// `vocab` (a genre that is not among the card's genres, another era, another rater, another title).
// The draws come from a stream of (seed, user): the same inputs give the same card.
KnowledgeCard noisy_card(const KnowledgeCard& card, double p, const CardVocabulary& vocab, uint64_t seed, int32_t user);

// Planted labels: every item of every list of a user with a card is relabelled from the card. Users
// whose card states no liked genre keep their labels (but under kEveryUser). `cards` is indexed by user.
enum class PlantedRule {
  // [prepare] labels = "card": positive when one of the item's genres (category) is among the card's
  // liked genres and none is its disliked genre. Only the genre statements rank the lists.
  kGenres,
  // [prepare] labels = "card-all": every statement but the favourite ranks the lists. With
  //   L = one of the item's genres is liked, E = the item's decade is the card's era,
  //   D = one of the item's genres is the disliked one,
  // an item is positive when not D and: generous rater: L or E; moderate: L and E; critical: L
  // (a card without era or rater falls back to L). Each rater orders a list differently, so a
  // recommender can only rank well with the right rater, era and genres.
  kEveryStatement,
  // [prepare] labels = "card-every-user": kEveryStatement, and a card without liked genres plants
  // too: positive when E and not D, whatever the rater. Under the rules above such a user (36% of
  // ML-100K's, whose shown items have no rating above the threshold) keeps the data's labels, which
  // no statement of the card ranks, so the reward of their responses is noise to card accuracy.
  kEveryUser,
};
// Returns the share of positive labels after planting.
double plant_card_labels(PreparedData& data, const std::vector<KnowledgeCard>& cards,
                         PlantedRule rule = PlantedRule::kGenres);

}  // namespace rlrf
