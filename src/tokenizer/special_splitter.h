// Splits text on the strings of special / added tokens before the model sees
// it. At each position the longest token string that starts there wins
// (leftmost-longest, as Hugging Face's added-vocabulary matcher does); the text
// between matches is returned as plain fragments. A token may strip the
// whitespace to its left / right (Hugging Face lstrip / rstrip).
//
// Two sets are kept: tokens matched only when the caller asks to parse special
// tokens (control tokens: "<|im_start|>", "<s>") and tokens matched always
// (user-defined / non-special added tokens, e.g. MPT's runs of spaces), which
// is how both Hugging Face and llama.cpp treat them.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tpinfer {

struct Fragment {
  int32_t token = -1;     // >= 0: a matched special token
  std::string_view text;  // when token < 0: plain text (never empty)
};

class SpecialSplitter {
 public:
  struct Entry {
    std::string text;
    int32_t id = -1;
    bool always = false;  // matched even without parse_special
    bool lstrip = false;
    bool rstrip = false;
  };

  SpecialSplitter() = default;
  explicit SpecialSplitter(std::vector<Entry> entries);

  std::vector<Fragment> split(std::string_view text, bool parse_special) const;
  // The plain reference: tries every entry at every position.
  std::vector<Fragment> split_reference(std::string_view text, bool parse_special) const;

  const std::vector<Entry>& entries() const { return entries_; }

 private:
  // A byte trie over the entry strings; node 0 is the root.
  struct Node {
    std::vector<std::pair<uint8_t, int32_t>> children;  // sorted by byte
    int32_t entry = -1;                                 // first entry with this text
    int32_t always_entry = -1;                          // first such entry matched without parse_special
  };
  std::vector<Entry> entries_;
  std::vector<Node> nodes_;
  bool has_always_ = false;
  bool has_any_ = false;

  int32_t child(int32_t node, uint8_t b) const;
  // Index of the longest usable entry starting at text[pos], or -1.
  int32_t longest_at(std::string_view text, size_t pos, bool parse_special) const;
  std::vector<Fragment> assemble(std::string_view text, const std::vector<std::pair<size_t, int32_t>>& hits) const;
};

}  // namespace tpinfer
