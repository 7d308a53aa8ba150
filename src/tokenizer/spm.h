// SentencePiece BPE-mode encoding by scores (GGUF tokenizer.ggml.model
// "llama"). The text (spaces already written as U+2581) starts as one symbol
// per UTF-8 character; the adjacent pair whose concatenation is a token with the
// highest score is merged, leftmost first on ties, until no pair is a token.
// Pieces of type Normal, UserDefined and Unused take part in merging (as in
// SentencePiece); a finished symbol that is an Unused piece is split back into
// the pieces it was merged from; a character that is not a piece becomes its
// <0xNN> byte tokens (byte fallback) or the unknown token.
//
// encode is the fast path (linked list + heap with lazy invalidation, pair
// lookups by string_view without copies). When no mergeable piece has a U+2581
// right after another character (true of Llama's and Phi-3's vocabularies), no
// merge can cross the start of a run of U+2581, so the text is cut there into
// words that are merged independently and cached. encode_reference is the plain
// O(n^2) rescan of the whole text that the tests compare it with.
#pragma once

#include <cstdint>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/vocab.h"

namespace tpinfer {

class SpmModel {
 public:
  SpmModel(const Vocab& vocab, int32_t unk);

  void encode(std::string_view text, std::vector<int32_t>& out) const;
  void encode_reference(std::string_view text, std::vector<int32_t>& out) const;
  bool splits_words() const { return split_words_; }
  // Empties the word cache (benchmarks measure the cold path with it).
  void clear_cache() const;

 private:
  const Vocab& vocab_;
  int32_t unk_;
  bool split_words_ = false;

  static constexpr size_t kMaxCachedWord = 128;
  static constexpr size_t kMaxCacheEntries = 1 << 17;
  mutable std::shared_mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> cache_;

  void encode_word(std::string_view text, std::vector<int32_t>& out) const;
  void encode_cached(std::string_view word, std::vector<int32_t>& out) const;

  // A piece a pair may merge into, or -1.
  int32_t mergeable(std::string_view text) const;

  // The merge history of one symbol: leaves are characters.
  struct Node {
    int32_t id;  // token of this text (-1 for an unknown character)
    uint32_t begin, len;
    int32_t left = -1, right = -1;  // children, for merged nodes
  };
  void emit(std::string_view text, const std::vector<Node>& nodes, int32_t node, std::vector<int32_t>& out) const;
  static std::vector<Node> leaves(const SpmModel& m, std::string_view text);
};

}  // namespace tpinfer
