#include "tokenizer/spm.h"

#include <algorithm>

#include "core/utf8.h"

namespace tpinfer {

namespace {

constexpr std::string_view kSpaceMark = "\xE2\x96\x81";  // U+2581

// Does `t` hold a U+2581 right after a character that is not U+2581?
bool has_inner_space_mark(std::string_view t) {
  for (size_t p = t.find(kSpaceMark, 1); p != std::string_view::npos; p = t.find(kSpaceMark, p + 1)) {
    if (p < kSpaceMark.size() || t.substr(p - kSpaceMark.size(), kSpaceMark.size()) != kSpaceMark) return true;
  }
  return false;
}

}  // namespace

SpmModel::SpmModel(const Vocab& vocab, int32_t unk) : vocab_(vocab), unk_(unk) {
  split_words_ = true;
  for (int32_t id = 0; id < vocab_.size() && split_words_; ++id) {
    if (mergeable(vocab_.text(id)) == id && has_inner_space_mark(vocab_.text(id))) split_words_ = false;
  }
}

void SpmModel::encode(std::string_view text, std::vector<int32_t>& out) const {
  if (!split_words_) {
    encode_word(text, out);
    return;
  }
  // Cut before every U+2581 that follows another character.
  size_t start = 0;
  for (size_t p = text.find(kSpaceMark, 1); p != std::string_view::npos; p = text.find(kSpaceMark, p + 1)) {
    if (p - start >= kSpaceMark.size() && text.substr(p - kSpaceMark.size(), kSpaceMark.size()) == kSpaceMark) continue;
    if (p > start) encode_cached(text.substr(start, p - start), out);
    start = p;
  }
  if (start < text.size()) encode_cached(text.substr(start), out);
}

void SpmModel::clear_cache() const {
  std::unique_lock lock(cache_mutex_);
  cache_.clear();
}

void SpmModel::encode_cached(std::string_view word, std::vector<int32_t>& out) const {
  if (word.size() > kMaxCachedWord) {
    encode_word(word, out);
    return;
  }
  {
    std::shared_lock lock(cache_mutex_);
    auto it = cache_.find(word);
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> ids;
  encode_word(word, ids);
  out.insert(out.end(), ids.begin(), ids.end());
  std::unique_lock lock(cache_mutex_);
  if (cache_.size() >= kMaxCacheEntries) cache_.clear();
  cache_.emplace(std::string(word), std::move(ids));
}

int32_t SpmModel::mergeable(std::string_view text) const {
  const int32_t id = vocab_.find(text);
  if (id < 0) return -1;
  const TokenType t = vocab_.type(id);
  return t == TokenType::Normal || t == TokenType::UserDefined || t == TokenType::Unused ? id : -1;
}

std::vector<SpmModel::Node> SpmModel::leaves(const SpmModel& m, std::string_view text) {
  std::vector<Node> nodes;
  nodes.reserve(text.size() * 2);
  for (size_t i = 0; i < text.size();) {
    const size_t len = utf8::char_len(text, i);
    nodes.push_back({m.mergeable(text.substr(i, len)), static_cast<uint32_t>(i), static_cast<uint32_t>(len)});
    i += len;
  }
  return nodes;
}

void SpmModel::emit(std::string_view text, const std::vector<Node>& nodes, int32_t node,
                    std::vector<int32_t>& out) const {
  const Node& n = nodes[node];
  if (n.id >= 0 && vocab_.type(n.id) != TokenType::Unused) {
    out.push_back(n.id);
    return;
  }
  if (n.left >= 0) {
    emit(text, nodes, n.left, out);
    emit(text, nodes, n.right, out);
    return;
  }
  // A character (or Unused single-character piece) with no usable token.
  bool all_bytes = true;
  for (uint32_t k = 0; k < n.len; ++k) all_bytes &= vocab_.byte_token(static_cast<uint8_t>(text[n.begin + k])) >= 0;
  if (all_bytes) {
    for (uint32_t k = 0; k < n.len; ++k) out.push_back(vocab_.byte_token(static_cast<uint8_t>(text[n.begin + k])));
  } else if (unk_ >= 0) {
    out.push_back(unk_);
  }
}

namespace {

struct Symbol {
  int32_t prev, next;
  int32_t node;  // into the node array; -1 once merged away
};

struct Candidate {
  float score;
  int32_t left, right;
  uint32_t len;  // bytes of the pair when it was pushed (stale check)
  int32_t id;
};

// Heap order: the top is the highest score, then the leftmost pair.
struct CandidateAfter {
  bool operator()(const Candidate& a, const Candidate& b) const {
    return a.score != b.score ? a.score < b.score : a.left > b.left;
  }
};

}  // namespace

void SpmModel::encode_word(std::string_view text, std::vector<int32_t>& out) const {
  std::vector<Node> nodes = leaves(*this, text);
  const auto n = static_cast<int32_t>(nodes.size());
  std::vector<Symbol> sym(n);
  for (int32_t i = 0; i < n; ++i) sym[i] = {i - 1, i + 1 < n ? i + 1 : -1, i};
  std::vector<Candidate> heap;
  heap.reserve(n);
  const auto consider = [&](int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    const Node& a = nodes[sym[l].node];
    const Node& b = nodes[sym[r].node];
    const int32_t id = mergeable(text.substr(a.begin, a.len + b.len));
    if (id < 0) return;
    heap.push_back({vocab_.score(id), l, r, a.len + b.len, id});
    std::push_heap(heap.begin(), heap.end(), CandidateAfter{});
  };
  for (int32_t i = 0; i + 1 < n; ++i) consider(i, i + 1);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), CandidateAfter{});
    const Candidate c = heap.back();
    heap.pop_back();
    Symbol& l = sym[c.left];
    Symbol& r = sym[c.right];
    if (l.node < 0 || r.node < 0 || l.next != c.right || nodes[l.node].len + nodes[r.node].len != c.len) continue;
    const Node& a = nodes[l.node];
    nodes.push_back({c.id, a.begin, c.len, l.node, r.node});
    l.node = static_cast<int32_t>(nodes.size()) - 1;
    r.node = -1;
    l.next = r.next;
    if (r.next >= 0) sym[r.next].prev = c.left;
    consider(l.prev, c.left);
    consider(c.left, l.next);
  }
  for (int32_t i = 0; i >= 0 && i < n; i = sym[i].next) emit(text, nodes, sym[i].node, out);
}

void SpmModel::encode_reference(std::string_view text, std::vector<int32_t>& out) const {
  std::vector<Node> nodes = leaves(*this, text);
  std::vector<int32_t> seq(nodes.size());  // current symbols as node indices
  for (size_t i = 0; i < seq.size(); ++i) seq[i] = static_cast<int32_t>(i);
  for (;;) {
    size_t best = 0;
    int32_t best_id = -1;
    for (size_t i = 0; i + 1 < seq.size(); ++i) {
      const Node& a = nodes[seq[i]];
      const Node& b = nodes[seq[i + 1]];
      const int32_t id = mergeable(text.substr(a.begin, a.len + b.len));
      if (id >= 0 && (best_id < 0 || vocab_.score(id) > vocab_.score(best_id))) {
        best = i;
        best_id = id;
      }
    }
    if (best_id < 0) break;
    const Node& a = nodes[seq[best]];
    const Node& b = nodes[seq[best + 1]];
    nodes.push_back({best_id, a.begin, a.len + b.len, seq[best], seq[best + 1]});
    seq[best] = static_cast<int32_t>(nodes.size()) - 1;
    seq.erase(seq.begin() + static_cast<std::ptrdiff_t>(best) + 1);
  }
  for (int32_t s : seq) emit(text, nodes, s, out);
}

}  // namespace tpinfer
