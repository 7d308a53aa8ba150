#include "tokenizer/bpe.h"

#include <algorithm>

#include "core/utf8.h"

namespace tpinfer {

BpeModel::BpeModel(const Vocab& vocab, const std::vector<std::pair<std::string, std::string>>& merges, BpeOptions opt)
    : vocab_(vocab), opt_(opt) {
  for (int b = 0; b < 256; ++b) {
    byte_ids_[b] = opt_.byte_level ? vocab_.find(byte_map_.encode_byte(static_cast<uint8_t>(b))) : -1;
  }
  merges_.reserve(merges.size());
  std::string joined;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [l, r] = merges[rank];
    const int32_t a = vocab_.find(l);
    const int32_t b = vocab_.find(r);
    joined.assign(l).append(r);
    const int32_t m = vocab_.find(joined);
    if (a < 0 || b < 0 || m < 0) continue;
    // A pair listed twice keeps its first (best) rank.
    merges_.emplace(key(a, b), Merge{static_cast<int32_t>(rank), m});
  }
}

void BpeModel::append_unknown(std::vector<int32_t>& ids, size_t& unknown_run) const {
  if (opt_.unk < 0) {
    ids.push_back(-1);  // dropped at emit: the vocabulary cannot express it
    return;
  }
  if (opt_.fuse_unk && unknown_run > 0) return;
  ids.push_back(opt_.unk);
  ++unknown_run;
}

bool BpeModel::initial_symbols(std::string_view word, std::vector<int32_t>& ids) const {
  ids.clear();
  if (opt_.byte_level) {
    if (opt_.ignore_merges) {
      const int32_t whole = vocab_.find(byte_map_.encode(word));
      if (whole >= 0) {
        ids.push_back(whole);
        return true;
      }
    }
    for (char c : word) ids.push_back(byte_ids_[static_cast<uint8_t>(c)]);
    return false;
  }
  if (opt_.ignore_merges) {
    const int32_t whole = vocab_.find(word);
    if (whole >= 0) {
      ids.push_back(whole);
      return true;
    }
  }
  size_t unknown_run = 0;
  for (size_t i = 0; i < word.size();) {
    const size_t len = utf8::char_len(word, i);
    const int32_t id = vocab_.find(word.substr(i, len));
    if (id >= 0) {
      ids.push_back(id);
      unknown_run = 0;
    } else if (opt_.byte_fallback && vocab_.has_byte_tokens()) {
      for (size_t k = 0; k < len; ++k) {
        const int32_t bt = vocab_.byte_token(static_cast<uint8_t>(word[i + k]));
        if (bt >= 0) {
          ids.push_back(bt);
        } else {
          append_unknown(ids, unknown_run);
        }
      }
    } else {
      append_unknown(ids, unknown_run);
    }
    i += len;
  }
  return false;
}

void BpeModel::emit(const std::vector<int32_t>& ids, std::vector<int32_t>& out) const {
  for (int32_t id : ids) {
    if (id >= 0) out.push_back(id);
  }
}

namespace {

struct Symbol {
  int32_t id;
  int32_t prev;
  int32_t next;
  bool alive;
};

struct Candidate {
  int32_t rank;
  int32_t left;
  int32_t right;
  int32_t left_id;
  int32_t right_id;
  int32_t merged_id;
};

// Heap order: the top is the lowest rank, then the leftmost pair.
struct CandidateAfter {
  bool operator()(const Candidate& a, const Candidate& b) const {
    return a.rank != b.rank ? a.rank > b.rank : a.left > b.left;
  }
};

}  // namespace

void BpeModel::merge_fast(std::vector<int32_t>& ids) const {
  const auto n = static_cast<int32_t>(ids.size());
  std::vector<Symbol> sym(n);
  for (int32_t i = 0; i < n; ++i) sym[i] = {ids[i], i - 1, i + 1 < n ? i + 1 : -1, true};
  std::vector<Candidate> heap;
  heap.reserve(n);
  const auto consider = [&](int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    if (const Merge* m = find_merge(sym[l].id, sym[r].id)) {
      heap.push_back({m->rank, l, r, sym[l].id, sym[r].id, m->id});
      std::push_heap(heap.begin(), heap.end(), CandidateAfter{});
    }
  };
  for (int32_t i = 0; i + 1 < n; ++i) consider(i, i + 1);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), CandidateAfter{});
    const Candidate c = heap.back();
    heap.pop_back();
    Symbol& l = sym[c.left];
    Symbol& r = sym[c.right];
    // Stale: one side merged since this candidate was pushed.
    if (!l.alive || !r.alive || l.next != c.right || l.id != c.left_id || r.id != c.right_id) continue;
    l.id = c.merged_id;
    l.next = r.next;
    if (r.next >= 0) sym[r.next].prev = c.left;
    r.alive = false;
    consider(l.prev, c.left);
    consider(c.left, l.next);
  }
  ids.clear();
  for (int32_t i = 0; i >= 0 && i < n; i = sym[i].next) ids.push_back(sym[i].id);
}

void BpeModel::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  const bool cacheable = word.size() <= kMaxCachedWord;
  if (cacheable) {
    std::shared_lock lock(cache_mutex_);
    auto it = cache_.find(word);
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> ids;
  if (!initial_symbols(word, ids)) merge_fast(ids);
  std::vector<int32_t> result;
  emit(ids, result);
  out.insert(out.end(), result.begin(), result.end());
  if (cacheable) {
    std::unique_lock lock(cache_mutex_);
    if (cache_.size() >= kMaxCacheEntries) cache_.clear();
    cache_.emplace(std::string(word), std::move(result));
  }
}

void BpeModel::clear_cache() const {
  std::unique_lock lock(cache_mutex_);
  cache_.clear();
}

void BpeModel::encode_word_reference(std::string_view word, std::vector<int32_t>& out) const {
  std::vector<int32_t> ids;
  if (!initial_symbols(word, ids)) {
    for (;;) {
      int32_t best_rank = -1;
      size_t best_pos = 0;
      int32_t best_id = -1;
      for (size_t i = 0; i + 1 < ids.size(); ++i) {
        const Merge* m = find_merge(ids[i], ids[i + 1]);
        if (m != nullptr && (best_rank < 0 || m->rank < best_rank)) {
          best_rank = m->rank;
          best_pos = i;
          best_id = m->id;
        }
      }
      if (best_rank < 0) break;
      ids[best_pos] = best_id;
      ids.erase(ids.begin() + static_cast<std::ptrdiff_t>(best_pos) + 1);
    }
  }
  emit(ids, out);
}

}  // namespace tpinfer
