// Tests of the knowledge cards: every field hand-computed from the items the prompt shows, the text
// parsed back, agreement scoring (wrong and missing statements), and the seeded statement noise of
// [sft] target_noise (p = 0 changes nothing, p = 1 every statement, p = 0.5 half of them).
#include <gtest/gtest.h>

#include "data/prepare.h"
#include "knowledge/card.h"
#include "util/error.h"

using namespace rlrf;

namespace {

ItemInfo item(std::string title, int year, std::vector<std::string> genres) {
  ItemInfo it;
  it.raw_id = title;
  it.title = std::move(title);
  it.year = year;
  it.genres = std::move(genres);
  return it;
}

// One user, 6 ratings, the first 5 the prompt-history prefix.
PreparedData one_user() {
  PreparedData p;
  p.dataset.name = "ml-100k";
  p.dataset.users = {UserInfo{"7", "male", "24", "technician"}};
  p.dataset.items = {item("Toy Story", 1995, {"Animation", "Children's", "Comedy"}),
                     item("Heat", 1995, {"Action", "Crime", "Thriller"}),
                     item("Jaws 2", 1978, {"Horror", "Thriller"}),
                     item("Casablanca", 1942, {"Drama", "Romance"}),
                     item("Fargo", 1996, {"Crime", "Drama", "Thriller"}),
                     item("Airplane!", 1980, {"Comedy"})};
  p.dataset.positive_above = 3.0f;
  UserSequence s;
  s.items = {0, 1, 2, 3, 4, 5};
  s.ratings = {5, 4, 1, 3, 5, 2};
  s.times = {1, 2, 3, 4, 5, 6};
  s.prefix_len = 5;
  p.sequences = {s};
  return p;
}

}  // namespace

TEST(Card, FieldsComeFromTheShownItemsOnly) {
  const PreparedData p = one_user();
  // Shown: the 4 most recent prefix items, Heat 4, Jaws 2 1, Casablanca 3, Fargo 5 (item 6, after
  // the prefix, never counts). Liked (> 3 stars): Crime 2, Thriller 2, Action 1, Drama 1 -> Crime,
  // Thriller; disliked (< 3): Horror (Thriller is liked); decades 1990s 2; mean 3.25: moderate;
  // favourite: the 5-star Fargo.
  KnowledgeCard c = user_card(p, 0, 4);
  EXPECT_EQ(c.liked, (std::vector<std::string>{"Crime", "Thriller"}));
  EXPECT_EQ(c.disliked, (std::vector<std::string>{"Horror"}));
  EXPECT_EQ(c.era, "1990s");
  EXPECT_EQ(c.rater, "moderate");
  EXPECT_EQ(c.favourite, "Fargo");
  EXPECT_EQ(c.statements(), 6);
  EXPECT_EQ(card_text(c), "Likes: Crime, Thriller. Dislikes: Horror. Era: 1990s. Rater: moderate. Favourite: Fargo.");
  EXPECT_EQ(card_text(c, false), "Likes: Crime, Thriller. Dislikes: Horror. Era: 1990s. Rater: moderate.");
  // Shown: Casablanca 3, Fargo 5. Liked: Crime, Drama, Thriller 1 each -> by name; nothing below 3
  // stars; 1940s and 1990s tie -> the more recent; mean 4.0: generous.
  EXPECT_EQ(card_text(user_card(p, 0, 2)), "Likes: Crime, Drama. Era: 1990s. Rater: generous. Favourite: Fargo.");
  // The whole prefix: Toy Story (5) and Fargo (5) tie for favourite -> the more recent.
  EXPECT_EQ(user_card(p, 0).favourite, "Fargo");
  EXPECT_EQ(user_card(p, 0, 0).statements(), 0);
}

TEST(Card, ParsedBackAndScoredAgainstTheTrueCard) {
  const KnowledgeCard truth = user_card(one_user(), 0, 4);
  const std::string text = card_text(truth);
  KnowledgeCard back = parse_card(text);
  EXPECT_EQ(card_text(back), text);
  EXPECT_DOUBLE_EQ(card_agreement(truth, text).score(), 1.0);
  // Stated: Thriller, Action, 1990s, critical (4); agreeing: Thriller, 1990s; the truth has 6.
  CardAgreement a = card_agreement(truth, "Likes: thriller, Action. Era: 1990s. Rater: critical.");
  EXPECT_EQ(a.stated, 4);
  EXPECT_EQ(a.agree, 2);
  EXPECT_EQ(a.truth, 6);
  EXPECT_DOUBLE_EQ(a.score(), 2.0 / 6.0);
  // "Dislikes:" is not "Likes:"; a statement repeated counts once; free text states nothing.
  a = card_agreement(truth, "Dislikes: Horror, Crime.");
  EXPECT_EQ(a.stated, 2);
  EXPECT_EQ(a.agree, 1);
  EXPECT_DOUBLE_EQ(card_agreement(truth, "Once upon a time there was a dog.").score(), 0.0);
  EXPECT_DOUBLE_EQ(card_agreement(truth, "").score(), 0.0);
  // More statements than the truth has cost too: 6 right of 8 stated.
  a = card_agreement(truth, text.substr(0, text.size() - 1) + ". Likes: Comedy. Era: 1990s. Dislikes: War, Crime.");
  EXPECT_EQ(a.agree, 6);
}

TEST(Card, NoiseReplacesEachStatementWithTheGivenProbability) {
  const KnowledgeCard truth = user_card(one_user(), 0, 4);
  CardVocabulary vocab;
  vocab.genres = {"Action", "Comedy", "Crime", "Drama", "Horror", "Romance", "Thriller", "War", "Western"};
  vocab.eras = {"1940s", "1970s", "1980s", "1990s"};
  vocab.titles = {"Fargo", "Heat", "Casablanca", "Airplane!"};
  EXPECT_EQ(card_text(noisy_card(truth, 0.0, vocab, 1, 0)), card_text(truth));
  // p = 1: every statement wrong, and no replaced genre is one of the user's genres.
  for (uint64_t seed = 0; seed < 20; ++seed) {
    KnowledgeCard n = noisy_card(truth, 1.0, vocab, seed, 0);
    EXPECT_EQ(card_agreement(truth, card_text(n)).agree, 0) << card_text(n);
    EXPECT_EQ(n.statements(), truth.statements());
    for (const std::string& g : n.liked) EXPECT_TRUE(g == "Action" || g == "Comedy" || g == "Drama" || g == "Romance" || g == "War" || g == "Western") << g;
  }
  // p = 0.5: about half of 6 x 400 statements replaced; the same (seed, user) gives the same card.
  int kept = 0;
  for (uint64_t seed = 0; seed < 400; ++seed) kept += card_agreement(truth, card_text(noisy_card(truth, 0.5, vocab, seed, 0))).agree;
  EXPECT_NEAR(kept / 2400.0, 0.5, 0.04);
  EXPECT_EQ(card_text(noisy_card(truth, 0.5, vocab, 9, 0)), card_text(noisy_card(truth, 0.5, vocab, 9, 0)));
  EXPECT_NE(card_text(noisy_card(truth, 0.5, vocab, 9, 0)), card_text(noisy_card(truth, 0.5, vocab, 9, 1)));
}

TEST(Card, PlantedLabelsFollowTheLikedAndDislikedGenres) {
  PreparedData p = one_user();
  // Card of the 4 shown items: likes Crime, Thriller; dislikes Horror (see above).
  const std::vector<KnowledgeCard> cards = {user_card(p, 0, 4)};
  RerankList l;
  l.user = 0;
  // Toy Story (no liked genre), Heat (Crime, Thriller), Jaws 2 (Thriller but Horror: disliked),
  // Casablanca (none), Fargo (Crime, Thriller), Airplane! (none); every label starts the other way.
  l.items = {0, 1, 2, 3, 4, 5};
  l.labels = {1, 0, 1, 1, 0, 1};
  p.lists = {l};
  EXPECT_DOUBLE_EQ(plant_card_labels(p, cards), 2.0 / 6.0);
  EXPECT_EQ(p.lists[0].labels, (std::vector<uint8_t>{0, 1, 0, 0, 1, 0}));
  // A user whose card states no liked genre keeps the data's labels.
  p.lists[0].labels = {1, 0, 1, 1, 0, 1};
  EXPECT_DOUBLE_EQ(plant_card_labels(p, {KnowledgeCard{}}), 4.0 / 6.0);
  EXPECT_EQ(p.lists[0].labels, (std::vector<uint8_t>{1, 0, 1, 1, 0, 1}));
  EXPECT_THROW(plant_card_labels(p, {}), Error);
}

// labels = "card-all": the rater says how genres and era combine (generous: either, moderate: both,
// critical: genres only), the disliked genre always vetoes; "card-every-user" also plants a card
// without liked genres from its era; hand-computed for the card above.
TEST(Card, PlantedLabelsFromEveryStatementFollowRaterEraAndGenres) {
  PreparedData p = one_user();
  p.dataset.items.push_back(item("Chinatown", 1974, {"Crime", "Film-Noir", "Mystery"}));
  const KnowledgeCard moderate = user_card(p, 0, 4);  // Crime, Thriller; Horror; 1990s; moderate
  ASSERT_EQ(moderate.rater, "moderate");
  RerankList l;
  l.user = 0;
  // liked genre / 1990s: Toy Story -/E, Heat L/E, Jaws 2 L/- but Horror, Casablanca -/-, Fargo L/E,
  // Airplane! -/-, Chinatown L/-.
  l.items = {0, 1, 2, 3, 4, 5, 6};
  l.labels.assign(7, 0);
  p.lists = {l};
  auto planted = [&](KnowledgeCard card, PlantedRule rule) {
    plant_card_labels(p, {card}, rule);
    return p.lists[0].labels;
  };
  using Labels = std::vector<uint8_t>;
  EXPECT_EQ(planted(moderate, PlantedRule::kEveryStatement), (Labels{0, 1, 0, 0, 1, 0, 0}));
  KnowledgeCard generous = moderate, critical = moderate, no_era = moderate;
  generous.rater = "generous";
  critical.rater = "critical";
  no_era.era.clear();
  EXPECT_EQ(planted(generous, PlantedRule::kEveryStatement), (Labels{1, 1, 0, 0, 1, 0, 1}));
  EXPECT_EQ(planted(critical, PlantedRule::kEveryStatement), (Labels{0, 1, 0, 0, 1, 0, 1}));
  EXPECT_EQ(planted(no_era, PlantedRule::kEveryStatement), (Labels{0, 1, 0, 0, 1, 0, 1}));
  // The genre rule ignores era and rater.
  EXPECT_EQ(planted(generous, PlantedRule::kGenres), (Labels{0, 1, 0, 0, 1, 0, 1}));
  EXPECT_EQ(planted(moderate, PlantedRule::kGenres), (Labels{0, 1, 0, 0, 1, 0, 1}));
  // kEveryUser is kEveryStatement for a card with liked genres...
  EXPECT_EQ(planted(moderate, PlantedRule::kEveryUser), (Labels{0, 1, 0, 0, 1, 0, 0}));
  EXPECT_EQ(planted(generous, PlantedRule::kEveryUser), (Labels{1, 1, 0, 0, 1, 0, 1}));
  // ...and plants a card without them from its era (any rater), the disliked genre vetoing: Toy
  // Story, Heat and Fargo are the 1990s items (none Horror).
  KnowledgeCard no_likes = critical;
  no_likes.liked.clear();
  p.lists[0].labels.assign(7, 1);
  EXPECT_EQ(planted(no_likes, PlantedRule::kEveryStatement), (Labels{1, 1, 1, 1, 1, 1, 1}));  // kept
  EXPECT_EQ(planted(no_likes, PlantedRule::kEveryUser), (Labels{1, 1, 0, 0, 1, 0, 0}));
  no_likes.rater = "generous";
  EXPECT_EQ(planted(no_likes, PlantedRule::kEveryUser), (Labels{1, 1, 0, 0, 1, 0, 0}));
}
