#include "tokenizer/spm.h"

#include <algorithm>

#include "tokenizer/utf8.h"

namespace tpinfer {

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

void SpmModel::encode(std::string_view text, std::vector<int32_t>& out) const {
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
