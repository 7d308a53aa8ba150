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
// lookups by string_view without copies); encode_reference is the plain O(n^2)
// rescan the tests compare it with.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "tokenizer/vocab.h"

namespace tpinfer {

class SpmModel {
 public:
  SpmModel(const Vocab& vocab, int32_t unk) : vocab_(vocab), unk_(unk) {}

  void encode(std::string_view text, std::vector<int32_t>& out) const;
  void encode_reference(std::string_view text, std::vector<int32_t>& out) const;

 private:
  const Vocab& vocab_;
  int32_t unk_;

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
