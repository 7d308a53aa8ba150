#include "tokenizer/special_splitter.h"

#include <algorithm>

namespace tpinfer {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

}  // namespace

SpecialSplitter::SpecialSplitter(std::vector<Entry> entries) : entries_(std::move(entries)) {
  nodes_.emplace_back();
  for (size_t e = 0; e < entries_.size(); ++e) {
    const Entry& en = entries_[e];
    if (en.text.empty()) continue;
    has_any_ = true;
    has_always_ |= en.always;
    int32_t node = 0;
    for (char c : en.text) {
      const auto b = static_cast<uint8_t>(c);
      int32_t next = child(node, b);
      if (next < 0) {
        next = static_cast<int32_t>(nodes_.size());
        nodes_.emplace_back();
        auto& ch = nodes_[node].children;
        ch.insert(std::lower_bound(ch.begin(), ch.end(), std::make_pair(b, int32_t{0})), {b, next});
      }
      node = next;
    }
    // Two entries with the same text: the first usable one wins.
    if (nodes_[node].entry < 0) nodes_[node].entry = static_cast<int32_t>(e);
    if (en.always && nodes_[node].always_entry < 0) nodes_[node].always_entry = static_cast<int32_t>(e);
  }
}

int32_t SpecialSplitter::child(int32_t node, uint8_t b) const {
  const auto& ch = nodes_[node].children;
  auto it = std::lower_bound(ch.begin(), ch.end(), std::make_pair(b, int32_t{0}));
  return it != ch.end() && it->first == b ? it->second : -1;
}

int32_t SpecialSplitter::longest_at(std::string_view text, size_t pos, bool parse_special) const {
  int32_t best = -1;
  int32_t node = 0;
  for (size_t i = pos; i < text.size(); ++i) {
    node = child(node, static_cast<uint8_t>(text[i]));
    if (node < 0) break;
    const int32_t e = parse_special ? nodes_[node].entry : nodes_[node].always_entry;
    if (e >= 0) best = e;
  }
  return best;
}

std::vector<Fragment> SpecialSplitter::split(std::string_view text, bool parse_special) const {
  std::vector<std::pair<size_t, int32_t>> hits;  // (position, entry)
  if (has_any_ && (parse_special || has_always_)) {
    for (size_t pos = 0; pos < text.size();) {
      const int32_t e = longest_at(text, pos, parse_special);
      if (e < 0) {
        ++pos;
        continue;
      }
      hits.emplace_back(pos, e);
      pos += entries_[e].text.size();
    }
  }
  return assemble(text, hits);
}

std::vector<Fragment> SpecialSplitter::split_reference(std::string_view text, bool parse_special) const {
  std::vector<std::pair<size_t, int32_t>> hits;
  for (size_t pos = 0; pos < text.size();) {
    int32_t best = -1;
    for (size_t e = 0; e < entries_.size(); ++e) {
      const Entry& en = entries_[e];
      if (en.text.empty() || !(parse_special || en.always)) continue;
      if (text.substr(pos).starts_with(en.text) && (best < 0 || en.text.size() > entries_[best].text.size())) {
        best = static_cast<int32_t>(e);
      }
    }
    if (best < 0) {
      ++pos;
      continue;
    }
    hits.emplace_back(pos, best);
    pos += entries_[best].text.size();
  }
  return assemble(text, hits);
}

// Turns match positions into fragments, applying lstrip / rstrip to the text
// beside each match.
std::vector<Fragment> SpecialSplitter::assemble(std::string_view text,
                                                const std::vector<std::pair<size_t, int32_t>>& hits) const {
  std::vector<Fragment> out;
  size_t pos = 0;
  for (const auto& [at, e] : hits) {
    const Entry& en = entries_[e];
    size_t end = at;
    if (en.lstrip) {
      while (end > pos && is_space(text[end - 1])) --end;
    }
    if (end > pos) out.push_back({-1, text.substr(pos, end - pos)});
    out.push_back({en.id, {}});
    pos = at + en.text.size();
    if (en.rstrip) {
      while (pos < text.size() && is_space(text[pos])) ++pos;
    }
  }
  if (pos < text.size()) out.push_back({-1, text.substr(pos)});
  return out;
}

}  // namespace tpinfer
