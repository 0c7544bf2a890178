// The first-stage setting (first_stage_lists.h). No held-out label reaches the generator:
//   known set K_u = known_items(u) (prepare.h): all of a training user's items, the prompt prefix of
//   a validation/test user.
//   itemknn: co-occurrence of the known sets, each user scored leave-self-out (its own K_u replaced
//     by its current history H: first_stage.h), so no user's window is ever in the model that
//     scores it, and evaluation users contribute only their prefixes.
//   mf: implicit ALS on the known sets. Training users are split into first_stage_folds folds; fold
//     f is scored by a model fitted with fold f's users reduced to their prefixes (cross-fitting);
//     validation/test users by the model fitted on all known sets. Users are folded in from H with
//     the item factors fixed.
// Window length (measured with `rlrf prepare` on ML-100K, seed 42, itemknn; validation split):
//     window      5      10     20     30     50
//     pos. rate   0.039  0.072  0.128  0.166  0.215
//     no positive 0.685  0.528  0.372  0.326  0.232
//     train lists 12917  6669   3506   2463   1692
//   We want at most about a third of the lists without a positive and a positive rate within a
//   factor 1.5 of the kar setting's (0.21-0.23), while a training user still yields about three
//   lists on ML-100K: 30 is the shortest window that does both (50 halves the lists again).
// mf defaults (32 factors, lambda 10, alpha 2) were picked on the ML-100K validation split at window
//   20 among lambda 1..50, alpha 1..40, 16..64 factors; all gave 0.086-0.115 there (itemknn 0.128),
//   and alpha 2 / lambda 10 was at the top.
#include "data/first_stage_lists.h"

#include <algorithm>
#include <cstdint>
#include <unordered_map>

#include "data/first_stage.h"
#include "data/prepare_streams.h"
#include "data/rng.h"
#include "util/error.h"
#include "util/progress.h"

namespace rlrf {

namespace {

// The known sets K_u of all users, indexed by user.
std::vector<std::vector<int32_t>> known_sets(const std::vector<UserSequence>& seqs) {
  std::vector<std::vector<int32_t>> known(seqs.size());
  for (const UserSequence& s : seqs) {
    const std::span<const int32_t> k = known_items(s);
    known[static_cast<size_t>(s.user)].assign(k.begin(), k.end());
  }
  return known;
}

bool has_windows(const UserSequence& s) { return s.prefix_len < static_cast<int32_t>(s.items.size()); }

// One user's first-stage lists, given a scorer with add_history(item); in_history is tracked here
// (all zero on entry and on return).
template <typename AddFn, typename ScoreFn>
void first_stage_user(std::vector<RerankList>& lists, const PrepareConfig& c, const Dataset& d, const UserSequence& s,
                      const std::vector<int32_t>& catalog, AddFn&& add, ScoreFn&& score_all,
                      std::vector<uint8_t>& in_history) {
  const int32_t len = static_cast<int32_t>(s.items.size());
  int32_t h = 0;
  std::vector<std::pair<float, int32_t>> cand;
  std::vector<float> scores;
  for (int32_t begin = s.prefix_len; begin < len; begin += c.first_stage_window) {
    for (; h < begin; ++h) {
      in_history[static_cast<size_t>(s.items[static_cast<size_t>(h)])] = 1;
      add(s.items[static_cast<size_t>(h)]);
    }
    score_all(scores);  // scores[item] for every item (valid where not in the history)
    cand.clear();
    for (int32_t it : catalog)
      if (!in_history[static_cast<size_t>(it)]) cand.emplace_back(scores[static_cast<size_t>(it)], it);
    RLRF_CHECK(static_cast<int>(cand.size()) >= c.list_size,
               "prepare: first-stage: user {} has only {} unseen catalog items for a list of {}", s.user, cand.size(),
               c.list_size);
    auto better = [](const std::pair<float, int32_t>& a, const std::pair<float, int32_t>& b) {
      return a.first != b.first ? a.first > b.first : a.second < b.second;
    };
    std::partial_sort(cand.begin(), cand.begin() + c.list_size, cand.end(), better);
    RerankList l;
    l.user = s.user;
    l.split = s.split;
    l.begin = begin;
    l.end = std::min(begin + c.first_stage_window, len);
    std::unordered_map<int32_t, int32_t> window_pos;
    for (int32_t p = l.begin; p < l.end; ++p) window_pos[s.items[static_cast<size_t>(p)]] = p;
    for (int k = 0; k < c.list_size; ++k) {
      int32_t it = cand[static_cast<size_t>(k)].second;
      auto w = window_pos.find(it);
      int32_t p = w == window_pos.end() ? -1 : w->second;
      l.items.push_back(it);
      l.initial_scores.push_back(cand[static_cast<size_t>(k)].first);
      l.seq_pos.push_back(p);
      l.labels.push_back(p >= 0 && s.ratings[static_cast<size_t>(p)] > d.positive_above ? 1 : 0);
    }
    lists.push_back(std::move(l));
  }
  for (int32_t p = 0; p < h; ++p) in_history[static_cast<size_t>(s.items[static_cast<size_t>(p)])] = 0;
}

std::vector<RerankList> itemknn_lists(const PrepareConfig& c, const Dataset& d, const std::vector<UserSequence>& sequences,
                                      const std::vector<int32_t>& catalog, int64_t n_users) {
  const int32_t n_items = static_cast<int32_t>(d.items.size());
  const std::vector<std::vector<int32_t>> known = known_sets(sequences);
  std::vector<uint8_t> in_history(static_cast<size_t>(n_items), 0);
  std::vector<RerankList> lists;
  CoOccurrence co = build_cooccurrence(known, n_items);
  Progress progress("first-stage itemknn", n_users, "users");
  for (const UserSequence& s : sequences) {
    if (!has_windows(s)) continue;
    ItemKnnScorer scorer(co, known[static_cast<size_t>(s.user)]);
    first_stage_user(
        lists, c, d, s, catalog, [&](int32_t it) { scorer.add_history(it); },
        [&](std::vector<float>& sc) {
          sc.resize(static_cast<size_t>(n_items));
          for (int32_t it : catalog)
            if (!scorer.in_history(it)) sc[static_cast<size_t>(it)] = scorer.score(it);
        },
        in_history);
    progress.advance();
  }
  progress.finish();
  return lists;
}

// Cross-fitted implicit ALS.
std::vector<RerankList> mf_lists(const PrepareConfig& c, const Dataset& d, const std::vector<UserSequence>& sequences,
                                 const std::vector<int32_t>& catalog, int64_t n_users) {
  const int32_t n_items = static_cast<int32_t>(d.items.size());
  const std::vector<std::vector<int32_t>> known = known_sets(sequences);
  std::vector<uint8_t> in_history(static_cast<size_t>(n_items), 0);
  std::vector<RerankList> lists;
  AlsOptions o;
  o.factors = c.mf_factors;
  o.iterations = c.mf_iterations;
  o.regularization = c.mf_regularization;
  o.alpha = c.mf_alpha;
  std::vector<int32_t> train_users;
  for (const UserSequence& s : sequences)
    if (s.split == Split::kTrain && !s.items.empty()) train_users.push_back(s.user);
  Rng fold_rng(derive_seed(c.seed, kFoldStream));
  fold_rng.shuffle(train_users);
  const int folds = c.first_stage_folds;
  std::vector<int> fold_of(sequences.size(), -1);  // -1: scored by the full model
  if (folds > 1)
    for (size_t k = 0; k < train_users.size(); ++k) fold_of[static_cast<size_t>(train_users[k])] = static_cast<int>(k % folds);
  Progress progress("first-stage mf", n_users, "users");
  std::vector<int> models;  // fold ids, then -1: the model of all known sets
  for (int f = 0; folds > 1 && f < folds; ++f) models.push_back(f);
  models.push_back(-1);
  for (int f : models) {
    std::vector<std::vector<int32_t>> k_f = known;
    if (f >= 0)
      for (const UserSequence& s : sequences)
        if (fold_of[static_cast<size_t>(s.user)] == f)
          k_f[static_cast<size_t>(s.user)].assign(s.items.begin(), s.items.begin() + s.prefix_len);
    AlsModel model = train_als(k_f, n_items, o, derive_seed(c.seed, kMfStream, static_cast<uint64_t>(f + 1)));
    for (const UserSequence& s : sequences) {
      if (fold_of[static_cast<size_t>(s.user)] != f || !has_windows(s)) continue;
      AlsFoldIn fold_in(model, o);
      first_stage_user(
          lists, c, d, s, catalog, [&](int32_t it) { fold_in.add_history(it); },
          [&](std::vector<float>& sc) {
            fold_in.solve();
            sc.resize(static_cast<size_t>(n_items));
            for (int32_t it : catalog) sc[static_cast<size_t>(it)] = fold_in.score(it);
          },
          in_history);
      progress.advance();
    }
  }
  progress.finish();
  // Lists came out grouped by fold: restore user order (stable: windows stay in order).
  std::stable_sort(lists.begin(), lists.end(), [](const RerankList& a, const RerankList& b) { return a.user < b.user; });
  return lists;
}

}  // namespace

std::vector<RerankList> first_stage_lists(const PrepareConfig& c, const Dataset& d,
                                          const std::vector<UserSequence>& sequences,
                                          const std::vector<int32_t>& catalog) {
  int64_t n_users = 0;  // users with at least one window (the progress total)
  for (const UserSequence& s : sequences) n_users += has_windows(s);
  if (c.first_stage == "itemknn") return itemknn_lists(c, d, sequences, catalog, n_users);
  return mf_lists(c, d, sequences, catalog, n_users);
}

}  // namespace rlrf
