// Tokenizers: SentencePiece-style (scores, byte fallback; GGUF tokenizer.ggml.model
// "llama") and byte-level BPE (merge ranks, per-model pre-tokenizer regex, GPT-2
// byte-to-unicode mapping; "gpt2"), loaded from GGUF metadata (tokenizer.ggml.*)
// or from a Hugging Face tokenizer.json (+ tokenizer_config.json).
//
// Contract:
// - encode() is const and thread-safe. Text is split first on added tokens:
//   user-defined (non-special added) tokens always, control tokens only with
//   parse_special (longest match at each position). Each remaining fragment is
//   normalized (SentencePiece: a space is prepended to a fragment at the start of
//   the text or right after a special token when add_space_prefix, and spaces
//   become U+2581), pre-tokenized (BPE) and merged.
// - decode(encode(x, *, false)) == x for every valid UTF-8 x with byte-level BPE
//   vocabularies, except that bytes whose byte-level character is not in the
//   vocabulary are dropped (Falcon lacks 28, MPT the 13 that never occur in
//   UTF-8; most have all 256). With SentencePiece vocabularies the space that encode()
//   prepends is dropped again when decoding (the first text token of the output
//   and each one right after a special token loses one leading space), so
//   decode(encode(x)) == x with every U+2581 of x replaced by ' '.
// - Token ids outside [0, vocab_size()) raise Error in the decoding functions.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "formats/model_source.h"
#include "tokenizer/vocab.h"

namespace tpinfer {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Loads the tokenizer of a model (GGUF metadata, or tokenizer.json in a
  // Hugging Face folder). Throws FormatError if there is none or it is malformed.
  static std::unique_ptr<Tokenizer> load(const ModelSource& model);
  // Loads only the tokenizer from `path`: a GGUF file (a whole model or a
  // vocabulary-only file with no tensors, as llama.cpp's ggml-vocab-*.gguf) or a
  // folder with tokenizer.json. Reads no weights and checks none.
  static std::unique_ptr<Tokenizer> open(const std::string& path);
  static std::unique_ptr<Tokenizer> from_gguf(const GgufFile& gguf);
  // `dir` holds tokenizer.json, and optionally tokenizer_config.json,
  // generation_config.json (more end-of-generation ids) and chat_template.jinja.
  static std::unique_ptr<Tokenizer> from_hf_dir(const std::string& dir);

  // Encodes text. add_special: prepend BOS (and append EOS) where the model
  // asks for it (add_bos_token / tokenizer.ggml.add_bos_token). parse_special:
  // recognise special/added tokens written in the text ("<|im_start|>").
  virtual std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special) const = 0;

  // The bytes of one token (special tokens render as their text unless
  // skip_special). May be a partial UTF-8 sequence.
  virtual std::string token_bytes(int32_t id, bool skip_special = false) const = 0;
  std::string decode(const std::vector<int32_t>& ids, bool skip_special = false) const;

  // Decoding one token at a time: what decode() does for each id. The state
  // remembers whether the next text token starts a fragment (see the contract
  // on the leading space above).
  struct DecodeState {
    bool fragment_start = true;
  };
  virtual void decode_token(int32_t id, bool skip_special, DecodeState& state, std::string& out) const = 0;

  virtual int32_t vocab_size() const = 0;
  virtual int32_t bos() const = 0;  // -1 when none
  virtual int32_t eos() const = 0;  // -1 when none
  virtual bool add_bos_token() const = 0;
  virtual bool add_eos_token() const = 0;
  // End-of-generation tokens (eos, eot, <|im_end|>, ...).
  virtual bool is_eog(int32_t id) const = 0;
  // Control and unknown tokens: skipped by skip_special.
  virtual bool is_special(int32_t id) const = 0;
  virtual TokenType token_type(int32_t id) const = 0;
  // The model's own chat template, empty if it has none.
  virtual const std::string& chat_template() const = 0;
  virtual std::string token_text(int32_t id) const = 0;  // the vocabulary entry as stored
  // The id whose vocabulary entry is exactly `text`, or -1.
  virtual int32_t token_id(std::string_view text) const = 0;
};

// Turns a stream of tokens into text without ever emitting a broken UTF-8
// sequence: bytes of an incomplete character are held until it completes;
// bytes that can never form a character come out as U+FFFD right away. The
// concatenation of everything returned equals utf8::sanitize(decode(all ids)).
class StreamDecoder {
 public:
  // `keep`: special tokens decoded even when skip_special (the server keeps a
  // tool-call format's marker tokens, such as <|python_tag|>, for its parser).
  explicit StreamDecoder(const Tokenizer& tok, bool skip_special = true, std::vector<int32_t> keep = {})
      : tok_(tok), skip_special_(skip_special), keep_(std::move(keep)) {}
  // Returns the text that became complete with this token (possibly empty).
  std::string push(int32_t id);
  // Returns what is left (invalid trailing bytes become U+FFFD) and resets.
  std::string finish();

 private:
  const Tokenizer& tok_;
  bool skip_special_;
  std::vector<int32_t> keep_;
  std::string pending_;
  Tokenizer::DecodeState state_;
};

}  // namespace tpinfer
