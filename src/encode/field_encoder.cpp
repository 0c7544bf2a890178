// Field-aware encoder (see field_encoder.h).
#include "encode/field_encoder.h"

#include <ATen/ATen.h>
#include <cstdint>

#include <algorithm>
#include <cctype>

#include "util/error.h"
#include "util/strings.h"

namespace rlrf {

std::vector<std::string> split_fields(std::string_view text, const std::vector<std::string>& labels) {
  const std::string lower = to_lower(text);
  struct Found {
    size_t at, value;
    size_t field;
  };
  std::vector<Found> found;
  for (size_t f = 0; f < labels.size(); ++f) {
    const std::string name = to_lower(labels[f]) + ":";
    for (size_t at = lower.find(name); at != std::string::npos; at = lower.find(name, at + 1)) {
      if (at > 0 && std::isalpha(static_cast<unsigned char>(lower[at - 1]))) continue;
      found.push_back({at, at + name.size(), f + 1});
    }
  }
  std::sort(found.begin(), found.end(), [](const Found& a, const Found& b) { return a.at < b.at; });
  std::vector<std::string> fields(labels.size() + 1);
  std::vector<bool> stated(fields.size(), false);
  auto add = [&](size_t field, size_t begin, size_t end) {
    if (stated[field]) return;  // the first statement of a field counts (knowledge/card.h parse_card)
    stated[field] = true;
    fields[field] = std::string(trim(text.substr(begin, end - begin)));
  };
  add(0, 0, found.empty() ? text.size() : found[0].at);
  for (size_t i = 0; i < found.size(); ++i)
    add(found[i].field, found[i].value, i + 1 < found.size() ? found[i + 1].at : text.size());
  return fields;
}

FieldEncoder::FieldEncoder(std::unique_ptr<TextEncoder> inner, std::vector<std::string> labels,
                           std::vector<std::string> skipped)
    : inner_(std::move(inner)), labels_(std::move(labels)) {
  RLRF_CHECK(inner_ != nullptr, "FieldEncoder: no inner encoder");
  RLRF_CHECK(!labels_.empty(), "FieldEncoder: no field labels");
  for (const std::string& l : labels_)
    RLRF_CHECK(!l.empty() && l.find(':') == std::string::npos && l.find(',') == std::string::npos,
               "FieldEncoder: field label '{}' must be non-empty and hold no ':' or ','", l);
  for (const std::string& l : labels_)
    encoded_.push_back(std::find(skipped.begin(), skipped.end(), l) == skipped.end());
  for (const std::string& s : skipped)
    RLRF_CHECK(std::find(labels_.begin(), labels_.end(), s) != labels_.end(),
               "FieldEncoder: skipped field '{}' is not one of the labels", s);
  RLRF_CHECK(std::count(encoded_.begin(), encoded_.end(), true) > 0, "FieldEncoder: every field is skipped");
}

std::string FieldEncoder::name() const {
  std::vector<std::string> parts;
  for (size_t i = 0; i < labels_.size(); ++i) parts.push_back(encoded_[i] ? labels_[i] : "skip_" + labels_[i]);
  return "fields-" + join(parts, "-") + "-" + inner_->name();
}

int FieldEncoder::slots() const { return 1 + static_cast<int>(std::count(encoded_.begin(), encoded_.end(), true)); }

int FieldEncoder::dim() const { return slots() * inner_->dim(); }

at::Tensor FieldEncoder::encode(const std::vector<std::string>& texts) {
  const int64_t slots = this->slots();
  std::vector<std::string> parts;
  parts.reserve(texts.size() * static_cast<size_t>(slots));
  for (const std::string& t : texts) {
    std::vector<std::string> fields = split_fields(t, labels_);
    parts.push_back(std::move(fields[0]));
    for (size_t f = 0; f < labels_.size(); ++f)
      if (encoded_[f]) parts.push_back(std::move(fields[f + 1]));
  }
  at::Tensor flat = inner_->encode(parts);  // [n * slots, inner dim], text-major
  return flat.reshape({static_cast<int64_t>(texts.size()), slots * inner_->dim()}).contiguous();
}

std::unique_ptr<TextEncoder> make_field_encoder(const std::string& spec) {
  RLRF_CHECK(starts_with(spec, "fields"), "encoder '{}' is not a fields encoder", spec);
  std::vector<std::string> labels = kCardFieldLabels, skipped;
  std::string rest = spec.substr(6);
  if (starts_with(rest, "(")) {
    const size_t close = rest.find(')');
    RLRF_CHECK(close != std::string::npos, "encoder '{}': '(' without ')' in the field labels", spec);
    labels.clear();
    for (std::string_view l : split(std::string_view(rest).substr(1, close - 1), ",")) {
      std::string label(trim(l));
      if (starts_with(label, "-")) {  // a boundary whose value is not encoded
        label = std::string(trim(std::string_view(label).substr(1)));
        skipped.push_back(label);
      }
      labels.push_back(label);
    }
    rest = rest.substr(close + 1);
  }
  RLRF_CHECK(starts_with(rest, ":") && rest.size() > 1,
             "encoder '{}': write fields:INNER or fields(a,b,c):INNER, INNER an encoder name such as glove", spec);
  return std::make_unique<FieldEncoder>(make_encoder(rest.substr(1)), std::move(labels), std::move(skipped));
}

}  // namespace rlrf
