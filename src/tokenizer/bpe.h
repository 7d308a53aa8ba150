// Byte-pair encoding with merge ranks (GPT-2 / Llama 3 / Qwen style, and
// Hugging Face "BPE" models in general). A word starts as one symbol per
// character (byte-level vocabularies: one per byte, through the GPT-2 byte map);
// the adjacent pair with the lowest merge rank is merged, leftmost first, until
// no pair has a merge.
//
// encode_word is the fast path: a doubly linked list of symbols, a binary heap of
// candidate pairs with lazy invalidation, merges keyed by (left id, right id),
// and a bounded cache of recent words (thread-safe). encode_word_reference is the
// plain O(n^2) rescan that the tests compare it with.
#pragma once

#include <array>
#include <cstdint>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "tokenizer/byte_level.h"
#include "tokenizer/vocab.h"

namespace tpinfer {

struct BpeOptions {
  bool byte_level = true;      // map bytes through the GPT-2 byte map first
  bool ignore_merges = false;  // a word that is itself a token is emitted as is
  bool byte_fallback = false;  // a character not in the vocabulary becomes <0xNN> tokens
  int32_t unk = -1;            // otherwise it becomes this (if >= 0) ...
  bool fuse_unk = false;       // ... and consecutive unknowns become one
};

class BpeModel {
 public:
  // merges[i] = (left, right) with rank i, strings as in the vocabulary. Merges
  // whose parts or result are not tokens can never apply and are skipped.
  BpeModel(const Vocab& vocab, const std::vector<std::pair<std::string, std::string>>& merges, BpeOptions opt);

  // Appends the ids of one pre-tokenized word (raw text bytes).
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;
  void encode_word_reference(std::string_view word, std::vector<int32_t>& out) const;

  size_t num_merges() const { return merges_.size(); }
  // Empties the word cache (benchmarks measure the cold path with it).
  void clear_cache() const;
  const BpeOptions& options() const { return opt_; }

 private:
  struct Merge {
    int32_t rank;
    int32_t id;
  };
  const Vocab& vocab_;
  BpeOptions opt_;
  ByteLevelMap byte_map_;
  std::array<int32_t, 256> byte_ids_{};  // byte-level: id of each byte's character
  std::unordered_map<uint64_t, Merge> merges_;

  static constexpr size_t kMaxCachedWord = 128;
  static constexpr size_t kMaxCacheEntries = 1 << 17;
  mutable std::shared_mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> cache_;

  static uint64_t key(int32_t a, int32_t b) {
    return (uint64_t{static_cast<uint32_t>(a)} << 32) | static_cast<uint32_t>(b);
  }
  const Merge* find_merge(int32_t a, int32_t b) const {
    if (a < 0 || b < 0) return nullptr;
    auto it = merges_.find(key(a, b));
    return it == merges_.end() ? nullptr : &it->second;
  }
  // The symbols a word starts as (ids; -1 for a character that has no token).
  // Returns true if the whole word is one token under ignore_merges.
  bool initial_symbols(std::string_view word, std::vector<int32_t>& ids) const;
  void append_unknown(std::vector<int32_t>& ids, size_t& unknown_run) const;
  void merge_fast(std::vector<int32_t>& ids) const;
  void emit(const std::vector<int32_t>& ids, std::vector<int32_t>& out) const;
};

}  // namespace tpinfer
