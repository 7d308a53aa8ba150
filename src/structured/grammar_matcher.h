// Constrained decoding over a Grammar: which tokens keep the output a valid
// prefix of the language, one token at a time.
//
//   auto vocab = TokenVocabulary::build(token_bytes, eog_ids);      // once per model
//   auto grammar = CompiledGrammar::create(Grammar::parse_gbnf(text), vocab);
//   GrammarMatcher m(grammar);                                       // one per sequence
//   TokenBitmask mask(vocab->size());
//   m.fill_mask(mask);         // allowed tokens now; sample among them
//   m.accept_token(id);        // advance (false, unchanged, if not allowed)
//
// From a tpinfer Tokenizer (in the caller: this layer knows no tokenizer):
// token_bytes[id] = tok.is_special(id) ? "" : tok.token_bytes(id), and the
// eog ids are those with tok.is_eog(id) (bench/structured_bench.cc does it).
//
// The matcher works on bytes: a token's raw bytes (byte-level BPE pieces may
// split a UTF-8 character) are fed one by one through the grammar's stacks.
// The set of stacks reachable after a prefix is a *state*; CompiledGrammar
// interns states and memoizes the transition (state, byte) -> state, so after
// warm-up a byte costs one table lookup: a lazily built DFA over stack sets.
// A mask is the walk of the vocabulary's byte trie from a state, pruned at the
// first byte with no transition, and is cached per state (LRU, bounded), since
// JSON decoding revisits the same states constantly.
//
// Thread safety: TokenVocabulary is immutable. CompiledGrammar may be shared by
// any number of matchers on any threads: its mutable caches are behind one
// mutex, so concurrent fill_mask/accept calls are safe and serialize on it.
// One GrammarMatcher belongs to one sequence (not thread-safe itself).
//
// Memory: the interned states and transitions grow with the distinct states a
// grammar reaches (1 KiB of transitions per state stepped from), up to
// Options::max_states: past it accept_token/accept_bytes/fill_mask throw
// GrammarError (the grammar is too ambiguous; the request should fail). Masks
// are bounded by Options::max_cached_masks.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "structured/grammar.h"

namespace tpinfer {

// One bit per token id.
class TokenBitmask {
 public:
  TokenBitmask() = default;
  explicit TokenBitmask(size_t n) : n_(n), words_((n + 63) / 64, 0) {}
  size_t size() const { return n_; }
  bool test(size_t i) const { return (words_[i >> 6] >> (i & 63)) & 1; }
  void set(size_t i) { words_[i >> 6] |= uint64_t{1} << (i & 63); }
  void clear() { std::fill(words_.begin(), words_.end(), 0); }
  size_t count() const;
  std::vector<uint64_t>& words() { return words_; }
  const std::vector<uint64_t>& words() const { return words_; }

 private:
  size_t n_ = 0;
  std::vector<uint64_t> words_;
};

// A model's vocabulary as raw bytes, arranged as a byte trie in preorder for
// mask walks. Built once per model; shareable by every grammar.
class TokenVocabulary {
 public:
  // token_bytes[id]: the raw bytes token id decodes to. Tokens with no bytes
  // (special and control tokens: the caller leaves them empty) are never
  // allowed, except the end-of-generation ids `eog`, which are allowed exactly
  // when the grammar is complete.
  static std::shared_ptr<const TokenVocabulary> build(std::vector<std::string> token_bytes, std::vector<int32_t> eog);

  size_t size() const { return bytes_.size(); }
  const std::string& token_bytes(int32_t id) const { return bytes_[static_cast<size_t>(id)]; }
  bool is_eog(int32_t id) const;
  const std::vector<int32_t>& eog() const { return eog_; }

  // The trie: node i (preorder) consumes byte_[i] at depth_[i] (1 = first
  // byte); its subtree ends before end_[i]; tokens_[tok_begin_[i] ..
  // tok_begin_[i + 1]) end exactly there.
  struct Trie {
    std::vector<uint8_t> byte;
    std::vector<uint16_t> depth;
    std::vector<uint32_t> end;
    std::vector<uint32_t> tok_begin;
    std::vector<int32_t> tokens;
  };
  const Trie& trie() const { return trie_; }

 private:
  std::vector<std::string> bytes_;
  std::vector<int32_t> eog_;
  Trie trie_;
};

// A grammar bound to a vocabulary, with the caches every matcher of it shares.
class CompiledGrammar {
 public:
  struct Options {
    size_t max_cached_masks = 1024;  // masks kept per grammar (LRU): at most 16 MiB at 128k tokens
    // A bound on the matcher's interned states (about 150 bytes each, plus
    // 1 KiB for each one stepped from). JSON Schema grammars need thousands;
    // an ambiguous user grammar ([ab]* "a" [ab]{20}) could need millions.
    size_t max_states = 200000;
  };
  static std::shared_ptr<CompiledGrammar> create(Grammar grammar, std::shared_ptr<const TokenVocabulary> vocab,
                                                 Options options);
  static std::shared_ptr<CompiledGrammar> create(Grammar grammar, std::shared_ptr<const TokenVocabulary> vocab) {
    return create(std::move(grammar), std::move(vocab), Options{});
  }
  ~CompiledGrammar();

  const Grammar& grammar() const;
  const TokenVocabulary& vocabulary() const;

  // Counters (for tests and benchmarks).
  struct Stats {
    size_t states = 0;           // interned stack sets
    size_t transition_rows = 0;  // states stepped from (1 KiB each)
    size_t stack_nodes = 0;      // interned stack entries
    size_t mask_hits = 0, mask_misses = 0;
    size_t cached_masks = 0;
  };
  Stats stats() const;

 private:
  friend class GrammarMatcher;
  struct Impl;
  explicit CompiledGrammar(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The decoding state of one sequence. Copyable (a shared grammar and the
// state after each token), e.g. to try a continuation and drop it.
class GrammarMatcher {
 public:
  explicit GrammarMatcher(std::shared_ptr<CompiledGrammar> grammar);

  // Advances by a token: its bytes, or for an end-of-generation id the end of
  // the output (allowed only when is_complete(); the matcher is then
  // terminated). Returns false and leaves the matcher unchanged when the token
  // is not allowed (or the matcher is terminated).
  bool accept_token(int32_t id);
  // Advances by raw bytes; false (unchanged) when they do not continue a valid
  // prefix. Counts as one token for rollback().
  bool accept_bytes(std::string_view bytes);

  // The output so far is a whole sentence of the grammar (EOG allowed).
  bool is_complete() const;
  // Some byte can still follow.
  bool can_continue() const;
  // An end-of-generation token was accepted.
  bool is_terminated() const { return terminated_; }

  // Sets exactly the tokens accept_token would accept now (mask resized to
  // the vocabulary).
  void fill_mask(TokenBitmask& mask);

  // Undoes the last n accepted tokens (n <= tokens_accepted()), EOG included.
  void rollback(size_t n);
  size_t tokens_accepted() const { return history_.size() - 1 + (terminated_ ? 1 : 0); }
  void reset();

 private:
  std::shared_ptr<CompiledGrammar> grammar_;
  std::vector<uint32_t> history_;  // state after each accepted token; [0] is the start
  bool terminated_ = false;
};

}  // namespace tpinfer
