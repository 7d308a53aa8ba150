// A tokenizer vocabulary: token strings with their types (GGUF
// tokenizer.ggml.token_type values) and scores, and a hash index from string to
// id. Strings are stored as the model stores them (byte-level BPE: GPT-2
// mapped characters; SentencePiece: U+2581 for spaces, "<0x0A>" byte tokens).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace tpinfer {

enum class TokenType : uint8_t {
  Undefined = 0,
  Normal = 1,
  Unknown = 2,
  Control = 3,
  UserDefined = 4,
  Unused = 5,
  Byte = 6,
};

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

class Vocab {
 public:
  Vocab() = default;
  // scores and types may be empty (all 0 / Normal); otherwise one per token.
  // A string listed twice keeps its first id in the index.
  Vocab(std::vector<std::string> tokens, std::vector<TokenType> types, std::vector<float> scores);

  int32_t size() const { return static_cast<int32_t>(tokens_.size()); }
  bool valid(int32_t id) const { return id >= 0 && id < size(); }
  int32_t find(std::string_view text) const {
    auto it = index_.find(text);
    return it == index_.end() ? -1 : it->second;
  }
  const std::string& text(int32_t id) const { return tokens_[id]; }
  TokenType type(int32_t id) const { return types_[id]; }
  void set_type(int32_t id, TokenType t) { types_[id] = t; }
  float score(int32_t id) const { return scores_[id]; }
  // The id of the byte token "<0xNN>" (type Byte), or -1.
  int32_t byte_token(uint8_t b) const { return byte_tokens_[b]; }
  bool has_byte_tokens() const;

 private:
  std::vector<std::string> tokens_;
  std::vector<TokenType> types_;
  std::vector<float> scores_;
  std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>> index_;
  std::array<int32_t, 256> byte_tokens_{};
};

}  // namespace tpinfer
