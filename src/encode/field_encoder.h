// A field-aware text encoder: a text written in labelled fields ("Likes: Drama, Comedy. Dislikes:
// Horror. Era: 1990s. ...", the knowledge card of knowledge/card.h) is cut at its labels and each
// field is encoded by an inner encoder on its own; the vector is the concatenation
//
//   [ unlabelled text | field 1 | field 2 | ... | field F ]     dim = (F + 1) * inner.dim()
//
// Why: a mean of word vectors cannot tell "Likes: Drama. Dislikes: Comedy." from "Likes: Comedy.
// Dislikes: Drama." (the same words), so a reranker reading it cannot reward a card for putting a
// genre in the right field. With one slot per field the reranker sees which words fill which field.
//
//   labels    matched case-insensitively as "<label>:" where the match starts the text or follows a
//             non-letter ("dislikes:" does not count as "likes:"); every occurrence ends the field
//             before it; a label stated twice counts once, its first statement, as parse_card reads
//             a card (a policy gains nothing by repeating a field)
//   unlabelled the text before the first label (all of a text that has no label: item texts,
//             a user's history text) goes to slot 0
//   empty     a field the text does not state encodes as the inner encoder encodes "" (GloVe, hash:
//             the zero vector)
//
//   skipped   a label written "-name" ends the field before it but its own value is not encoded
//             (no slot): "fields(likes,dislikes,era,rater,-favourite):glove" reads what card
//             accuracy can score of a policy's card and ignores its favourite title
//
// By name (encoder.h): "fields:INNER" with the card's labels (kCardFieldLabels), or
// "fields(a,b,c):INNER" with labels a, b, c; INNER is any encoder name ("glove", "hash:64", ...).
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "encode/encoder.h"

namespace rlrf {

// The labels of a knowledge card, in card order (knowledge/card.h).
inline const std::vector<std::string> kCardFieldLabels = {"likes", "dislikes", "era", "rater", "favourite"};

// The text's fields: [0] the unlabelled text, [1 + i] the value(s) of labels[i], trimmed.
std::vector<std::string> split_fields(std::string_view text, const std::vector<std::string>& labels);

class FieldEncoder : public TextEncoder {
 public:
  FieldEncoder(std::unique_ptr<TextEncoder> inner, std::vector<std::string> labels,
               std::vector<std::string> skipped = {});
  // "fields-likes-dislikes-era-rater-favourite-glove-100d-sif-decades" ("skip_favourite" when skipped)
  std::string name() const override;
  int dim() const override;
  at::Tensor encode(const std::vector<std::string>& texts) override;  // [texts.size(), dim()] float32
  const std::vector<std::string>& labels() const { return labels_; }

 private:
  int slots() const;  // 1 (the unlabelled text) + the encoded fields
  std::unique_ptr<TextEncoder> inner_;
  std::vector<std::string> labels_;
  std::vector<bool> encoded_;  // per label: false when skipped
};

// "fields:INNER" or "fields(a,b,c):INNER" (see above); errors name the spec.
std::unique_ptr<TextEncoder> make_field_encoder(const std::string& spec);

}  // namespace rlrf
