#include "structured/grammar_matcher.h"

#include <algorithm>
#include <bit>
#include <list>
#include <mutex>
#include <numeric>
#include <unordered_map>

namespace tpinfer {

size_t TokenBitmask::count() const {
  size_t c = 0;
  for (const uint64_t w : words_) c += static_cast<size_t>(std::popcount(w));
  return c;
}

// --- TokenVocabulary ---

std::shared_ptr<const TokenVocabulary> TokenVocabulary::build(std::vector<std::string> token_bytes,
                                                              std::vector<int32_t> eog) {
  auto v = std::make_shared<TokenVocabulary>();
  v->bytes_ = std::move(token_bytes);
  for (const int32_t id : eog) {
    if (id < 0 || static_cast<size_t>(id) >= v->bytes_.size()) {
      throw Error(cat("end-of-generation token ", id, " is outside the vocabulary of ", v->bytes_.size()));
    }
  }
  std::sort(eog.begin(), eog.end());
  eog.erase(std::unique(eog.begin(), eog.end()), eog.end());
  v->eog_ = std::move(eog);

  // Sorted by bytes, tokens visit the trie in preorder: a prefix sorts before
  // its extensions and equal byte strings are adjacent.
  std::vector<int32_t> ids;
  for (size_t i = 0; i < v->bytes_.size(); ++i) {
    const int32_t id = static_cast<int32_t>(i);
    if (!v->bytes_[i].empty() && !v->is_eog(id)) ids.push_back(id);
  }
  std::stable_sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) { return v->bytes_[a] < v->bytes_[b]; });
  Trie& t = v->trie_;
  std::vector<uint32_t> path;  // node index at each depth of the current token
  std::string_view prev;
  for (const int32_t id : ids) {
    const std::string& b = v->bytes_[id];
    if (b.size() > 0xFFFF) throw Error(cat("token ", id, " is longer than 65535 bytes"));
    size_t lcp = 0;
    while (lcp < prev.size() && lcp < b.size() && prev[lcp] == b[lcp]) ++lcp;
    while (path.size() > lcp) {
      t.end[path.back()] = static_cast<uint32_t>(t.byte.size());
      path.pop_back();
    }
    for (size_t d = lcp; d < b.size(); ++d) {
      path.push_back(static_cast<uint32_t>(t.byte.size()));
      t.byte.push_back(static_cast<uint8_t>(b[d]));
      t.depth.push_back(static_cast<uint16_t>(d + 1));
      t.end.push_back(0);
      t.tok_begin.push_back(static_cast<uint32_t>(t.tokens.size()));
    }
    t.tokens.push_back(id);
    prev = b;
  }
  while (!path.empty()) {
    t.end[path.back()] = static_cast<uint32_t>(t.byte.size());
    path.pop_back();
  }
  t.tok_begin.push_back(static_cast<uint32_t>(t.tokens.size()));
  return v;
}

bool TokenVocabulary::is_eog(int32_t id) const { return std::binary_search(eog_.begin(), eog_.end(), id); }

// --- CompiledGrammar ---

struct CompiledGrammar::Impl {
  static constexpr int32_t kUnknown = -2, kDead = -1;

  Grammar grammar;
  std::shared_ptr<const TokenVocabulary> vocab;
  Options options;

  std::mutex mu;
  // Interned stack entries: node 0 is the empty stack; node (pos, below) holds
  // a grammar position over the stack `below`. A state's nodes are the stacks'
  // tops, each a Bytes position, or 0 when the grammar may end there.
  std::vector<uint32_t> node_pos{0}, node_below{0};
  std::unordered_map<uint64_t, uint32_t> node_index;
  std::vector<std::vector<uint32_t>> state_nodes;
  std::unordered_map<std::string, uint32_t> state_index;
  // Transitions: a row of 256 (kUnknown, kDead or the next state) per state
  // that was stepped from; states a mask walk reaches at the trie's leaves
  // never are, so they cost no row.
  std::vector<int32_t> row;  // per state: its row in trans, or -1
  std::vector<int32_t> trans;
  std::vector<uint8_t> complete, can_continue;
  uint32_t initial = 0;

  // Masks per state, least recently used first.
  struct Mask {
    bool sparse = false;
    std::vector<int32_t> ids;     // sparse: the allowed ids
    std::vector<uint64_t> words;  // dense: the bits
    std::list<uint32_t>::iterator lru;
  };
  std::unordered_map<uint32_t, Mask> masks;
  std::list<uint32_t> lru;
  size_t hits = 0, misses = 0;
  std::vector<int32_t> walk_states;  // scratch: the state at each trie depth

  uint32_t node(uint32_t pos, uint32_t below) {
    const uint64_t key = (uint64_t{pos} << 32) | below;
    const auto [it, inserted] = node_index.emplace(key, static_cast<uint32_t>(node_pos.size()));
    if (inserted) {
      node_pos.push_back(pos);
      node_below.push_back(below);
    }
    return it->second;
  }

  // The stack tops reached from position `pos` over stack `below` without
  // consuming a byte: calls push their continuation, ends return.
  void expand(uint32_t pos, uint32_t below, std::vector<uint32_t>& out) {
    const Grammar::Element& e = grammar.elements()[pos];
    switch (e.kind) {
      case Grammar::Kind::End:
        if (below == 0) {
          out.push_back(0);
        } else {
          expand(node_pos[below], node_below[below], out);
        }
        break;
      case Grammar::Kind::Bytes:
        out.push_back(node(pos, below));
        break;
      case Grammar::Kind::Rule: {
        // A call in tail position returns straight to the caller's caller.
        const bool tail = grammar.elements()[pos + 1].kind == Grammar::Kind::End;
        const uint32_t cont = tail ? below : node(pos + 1, below);
        for (const uint32_t alt : grammar.alternatives(e.value)) expand(alt, cont, out);
        break;
      }
    }
  }

  uint32_t intern(std::vector<uint32_t>& nodes) {
    std::sort(nodes.begin(), nodes.end());
    nodes.erase(std::unique(nodes.begin(), nodes.end()), nodes.end());
    std::string key(reinterpret_cast<const char*>(nodes.data()), nodes.size() * sizeof(uint32_t));
    const auto [it, inserted] = state_index.emplace(std::move(key), static_cast<uint32_t>(state_nodes.size()));
    if (inserted) {
      if (state_nodes.size() >= options.max_states) {
        state_index.erase(it);
        throw GrammarError(cat("the grammar needs more than ", options.max_states,
                               " matcher states (CompiledGrammar::Options::max_states): too ambiguous to follow"));
      }
      complete.push_back(!nodes.empty() && nodes[0] == 0);
      can_continue.push_back(!nodes.empty() && nodes.back() != 0);
      state_nodes.push_back(nodes);
      row.push_back(-1);
    }
    return it->second;
  }

  int32_t step_slow(uint32_t state, uint8_t b) {
    std::vector<uint32_t> next;
    for (const uint32_t n : state_nodes[state]) {
      if (n == 0) continue;
      const uint32_t pos = node_pos[n];
      if (grammar.byte_sets()[grammar.elements()[pos].value].has(b)) expand(pos + 1, node_below[n], next);
    }
    const int32_t s = next.empty() ? kDead : static_cast<int32_t>(intern(next));
    if (row[state] < 0) {
      row[state] = static_cast<int32_t>(trans.size() / 256);
      trans.resize(trans.size() + 256, kUnknown);
    }
    trans[size_t(row[state]) * 256 + b] = s;
    return s;
  }
  int32_t step(uint32_t state, uint8_t b) {
    const int32_t r = row[state];
    const int32_t s = r < 0 ? kUnknown : trans[size_t(r) * 256 + b];
    return s != kUnknown ? s : step_slow(state, b);
  }

  // Walks the vocabulary trie from `state`, pruning a subtree at the first byte
  // that has no transition.
  void compute_mask(uint32_t state, TokenBitmask& mask) {
    mask.clear();
    const TokenVocabulary::Trie& t = vocab->trie();
    std::vector<int32_t>& at = walk_states;
    at.assign(1, static_cast<int32_t>(state));
    const size_t n = t.byte.size();
    for (size_t i = 0; i < n;) {
      const uint16_t d = t.depth[i];
      const int32_t s = step(static_cast<uint32_t>(at[d - 1]), t.byte[i]);
      if (s < 0) {
        i = t.end[i];
        continue;
      }
      if (at.size() <= d) at.resize(d + 1);
      at[d] = s;
      for (uint32_t k = t.tok_begin[i]; k < t.tok_begin[i + 1]; ++k) mask.set(static_cast<size_t>(t.tokens[k]));
      ++i;
    }
    if (complete[state]) {
      for (const int32_t id : vocab->eog()) mask.set(static_cast<size_t>(id));
    }
  }

  void fill_mask(uint32_t state, TokenBitmask& mask) {
    if (mask.size() != vocab->size()) mask = TokenBitmask(vocab->size());
    if (const auto it = masks.find(state); it != masks.end()) {
      ++hits;
      Mask& m = it->second;
      lru.splice(lru.end(), lru, m.lru);
      if (m.sparse) {
        mask.clear();
        for (const int32_t id : m.ids) mask.set(static_cast<size_t>(id));
      } else {
        mask.words() = m.words;
      }
      return;
    }
    ++misses;
    compute_mask(state, mask);
    if (options.max_cached_masks == 0) return;
    if (masks.size() >= options.max_cached_masks) {
      masks.erase(lru.front());
      lru.pop_front();
    }
    Mask m;
    const size_t count = mask.count();
    m.sparse = count * 32 < mask.size();  // a list of ids is smaller than the bits
    if (m.sparse) {
      m.ids.reserve(count);
      for (size_t w = 0; w < mask.words().size(); ++w) {
        for (uint64_t bits = mask.words()[w]; bits; bits &= bits - 1) {
          m.ids.push_back(static_cast<int32_t>(w * 64 + static_cast<size_t>(std::countr_zero(bits))));
        }
      }
    } else {
      m.words = mask.words();
    }
    lru.push_back(state);
    m.lru = std::prev(lru.end());
    masks.emplace(state, std::move(m));
  }
};

CompiledGrammar::CompiledGrammar(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CompiledGrammar::~CompiledGrammar() = default;

std::shared_ptr<CompiledGrammar> CompiledGrammar::create(Grammar grammar, std::shared_ptr<const TokenVocabulary> vocab,
                                                         Options options) {
  if (!vocab) throw Error("CompiledGrammar: no vocabulary");
  auto impl = std::make_unique<Impl>();
  impl->grammar = std::move(grammar);
  impl->vocab = std::move(vocab);
  impl->options = options;
  std::vector<uint32_t> start;
  for (const uint32_t alt : impl->grammar.alternatives(impl->grammar.root())) impl->expand(alt, 0, start);
  impl->initial = impl->intern(start);
  return std::shared_ptr<CompiledGrammar>(new CompiledGrammar(std::move(impl)));
}

const Grammar& CompiledGrammar::grammar() const { return impl_->grammar; }
const TokenVocabulary& CompiledGrammar::vocabulary() const { return *impl_->vocab; }

CompiledGrammar::Stats CompiledGrammar::stats() const {
  std::lock_guard lock(impl_->mu);
  Stats s;
  s.states = impl_->state_nodes.size();
  s.transition_rows = impl_->trans.size() / 256;
  s.stack_nodes = impl_->node_pos.size();
  s.mask_hits = impl_->hits;
  s.mask_misses = impl_->misses;
  s.cached_masks = impl_->masks.size();
  return s;
}

// --- GrammarMatcher ---

GrammarMatcher::GrammarMatcher(std::shared_ptr<CompiledGrammar> grammar) : grammar_(std::move(grammar)) {
  if (!grammar_) throw Error("GrammarMatcher: no grammar");
  history_.push_back(grammar_->impl_->initial);
}

bool GrammarMatcher::accept_token(int32_t id) {
  const TokenVocabulary& vocab = *grammar_->impl_->vocab;
  if (terminated_ || id < 0 || static_cast<size_t>(id) >= vocab.size()) return false;
  if (vocab.is_eog(id)) {
    if (!is_complete()) return false;
    terminated_ = true;
    return true;
  }
  const std::string& bytes = vocab.token_bytes(id);
  return !bytes.empty() && accept_bytes(bytes);
}

bool GrammarMatcher::accept_bytes(std::string_view bytes) {
  if (terminated_) return false;
  CompiledGrammar::Impl& g = *grammar_->impl_;
  std::lock_guard lock(g.mu);
  int32_t s = static_cast<int32_t>(history_.back());
  for (const char c : bytes) {
    s = g.step(static_cast<uint32_t>(s), static_cast<uint8_t>(c));
    if (s < 0) return false;
  }
  history_.push_back(static_cast<uint32_t>(s));
  return true;
}

bool GrammarMatcher::is_complete() const {
  CompiledGrammar::Impl& g = *grammar_->impl_;
  std::lock_guard lock(g.mu);
  return g.complete[history_.back()];
}

bool GrammarMatcher::can_continue() const {
  if (terminated_) return false;
  CompiledGrammar::Impl& g = *grammar_->impl_;
  std::lock_guard lock(g.mu);
  return g.can_continue[history_.back()];
}

void GrammarMatcher::fill_mask(TokenBitmask& mask) {
  CompiledGrammar::Impl& g = *grammar_->impl_;
  if (terminated_) {
    mask = TokenBitmask(g.vocab->size());
    return;
  }
  std::lock_guard lock(g.mu);
  g.fill_mask(history_.back(), mask);
}

void GrammarMatcher::rollback(size_t n) {
  if (n > tokens_accepted()) throw Error(cat("rollback of ", n, " tokens; only ", tokens_accepted(), " accepted"));
  if (n > 0 && terminated_) {
    terminated_ = false;
    --n;
  }
  history_.resize(history_.size() - n);
}

void GrammarMatcher::reset() {
  history_.resize(1);
  terminated_ = false;
}

}  // namespace tpinfer
