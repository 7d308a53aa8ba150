// Pre-tokenization: cutting a text fragment into the "words" that BPE merges
// inside of. A PreTokenizer is a sequence of stages applied in order, each to
// every piece the previous stage produced (as Hugging Face's Sequence
// pre-tokenizer and llama.cpp's multi-regex splits do):
//
//   Split(regex, behavior, invert): the matches of the regex are delimiters;
//     `behavior` says what happens to them (Hugging Face SplitDelimiterBehavior):
//     Isolated keeps matches and the text between them as separate pieces,
//     Removed drops the matches, MergedWithPrevious / MergedWithNext glue each
//     match to the piece before / after it, Contiguous merges runs of adjacent
//     matches into one isolated piece. invert swaps the roles of matches and gaps.
//   PrefixSpace: prepends ' ' to every piece that does not start with one
//     (ByteLevel add_prefix_space).
//
// No stage at all means the fragment is one piece. Presets for the GGUF key
// `tokenizer.ggml.pre` reproduce the reference tokenizers of each model family.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/regex.h"

namespace tpinfer {

enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

// The pattern of GPT-2's (and Hugging Face ByteLevel's) pre-tokenizer.
inline constexpr std::string_view kGpt2Pattern =
    R"re('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)re";

class PreTokenizer {
 public:
  PreTokenizer() = default;
  PreTokenizer(PreTokenizer&&) = default;
  PreTokenizer& operator=(PreTokenizer&&) = default;

  void add_split(std::string pattern, SplitBehavior behavior, bool invert = false);
  void add_prefix_space();
  bool empty() const { return stages_.empty(); }
  size_t num_stages() const { return stages_.size(); }

  // Pieces of `text` in order; their concatenation is `text` unless a stage
  // removes or adds text (Removed, PrefixSpace). Empty pieces are dropped.
  std::vector<std::string> split(std::string_view text) const;

 private:
  struct Stage {
    bool prefix_space = false;
    std::unique_ptr<Regex> regex;
    SplitBehavior behavior = SplitBehavior::Isolated;
    bool invert = false;
  };
  std::vector<Stage> stages_;

  static void apply_split(const Stage& st, Regex::Matcher& m, std::string_view piece, std::vector<Span>& scratch,
                          std::vector<std::string>& out);
};

// Settings implied by a GGUF `tokenizer.ggml.pre` name besides the regexes.
struct PreTokenizerPreset {
  PreTokenizer pre;
  bool ignore_merges = false;  // a word that is itself a token is not merged
  bool add_bos = false;        // default when tokenizer.ggml.add_bos_token is absent
};

// The preset for a `tokenizer.ggml.pre` value ("" means "default"). Throws
// FormatError listing the supported names for an unknown one.
PreTokenizerPreset pretokenizer_for_gguf(std::string_view name);

}  // namespace tpinfer
