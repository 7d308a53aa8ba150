// Everything a loader (GGUF metadata, Hugging Face tokenizer.json) extracts
// about a tokenizer, in one format-independent struct; make_tokenizer() checks
// it and builds the Tokenizer.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tokenizer/pretokenizer.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/vocab.h"

namespace tpinfer {

enum class TokenizerModel {
  Spm,  // SentencePiece BPE mode: merge by scores
  Bpe,  // merge by ranks
};

struct TokenizerSpec {
  std::string source;  // file the tokenizer came from (for errors)
  TokenizerModel model = TokenizerModel::Bpe;
  std::vector<std::string> tokens;
  std::vector<TokenType> types;                             // empty: all Normal
  std::vector<float> scores;                                // empty: all 0 (Spm needs them)
  std::vector<std::pair<std::string, std::string>> merges;  // Bpe: rank = index

  PreTokenizer pre;                // Bpe: splits fragments into words
  bool byte_level = false;         // GPT-2 byte map on the way in and out
  bool escape_whitespace = false;  // ' ' <-> U+2581
  bool add_space_prefix = false;   // ' ' before each fragment (see tokenizer.h)
  bool ignore_merges = false;
  bool byte_fallback = false;  // Bpe: unknown characters as <0xNN> tokens
  bool fuse_unk = false;

  int32_t bos = -1, eos = -1, eot = -1, eom = -1, unk = -1;
  bool add_bos = false, add_eos = false;
  std::vector<int32_t> extra_eog;  // more end-of-generation ids (generation_config.json)

  struct Strip {
    bool left = false, right = false;
  };
  std::map<int32_t, Strip> strip;  // added tokens that eat neighbouring whitespace

  std::string chat_template;
};

// Throws FormatError (naming spec.source) when ids are out of range or
// add_bos / add_eos are set without a BOS / EOS token.
std::unique_ptr<Tokenizer> make_tokenizer(TokenizerSpec spec);

}  // namespace tpinfer
