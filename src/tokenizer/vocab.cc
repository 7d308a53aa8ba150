#include "tokenizer/vocab.h"

#include <cstdio>

#include "core/error.h"

namespace tpinfer {
namespace {

// "<0xNN>" -> NN, or -1.
int parse_byte_token(std::string_view s) {
  if (s.size() != 6 || !s.starts_with("<0x") || s[5] != '>') return -1;
  int v = 0;
  for (size_t i = 3; i < 5; ++i) {
    const char c = s[i];
    int d;
    if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if (c >= 'A' && c <= 'F') {
      d = c - 'A' + 10;
    } else if (c >= 'a' && c <= 'f') {
      d = c - 'a' + 10;
    } else {
      return -1;
    }
    v = v * 16 + d;
  }
  return v;
}

}  // namespace

Vocab::Vocab(std::vector<std::string> tokens, std::vector<TokenType> types, std::vector<float> scores)
    : tokens_(std::move(tokens)), types_(std::move(types)), scores_(std::move(scores)) {
  const size_t n = tokens_.size();
  if (types_.empty()) types_.assign(n, TokenType::Normal);
  if (scores_.empty()) scores_.assign(n, 0.0f);
  if (types_.size() != n || scores_.size() != n) {
    throw FormatError(
        cat("tokenizer: ", n, " tokens but ", types_.size(), " token types and ", scores_.size(), " scores"));
  }
  byte_tokens_.fill(-1);
  index_.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const auto id = static_cast<int32_t>(i);
    index_.emplace(tokens_[i], id);
    if (types_[i] == TokenType::Byte) {
      const int b = parse_byte_token(tokens_[i]);
      if (b >= 0 && byte_tokens_[b] < 0) byte_tokens_[b] = id;
    }
  }
}

bool Vocab::has_byte_tokens() const {
  for (int32_t id : byte_tokens_) {
    if (id >= 0) return true;
  }
  return false;
}

}  // namespace tpinfer
