// Tokenizers: SentencePiece-style (scores, byte fallback; GGUF tokenizer.ggml.model
// "llama") and byte-level BPE (merge ranks, per-model pre-tokenizer regex, GPT-2
// byte-to-unicode mapping; "gpt2"), loaded from GGUF metadata (tokenizer.ggml.*)
// or from a Hugging Face tokenizer.json (+ tokenizer_config.json).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "formats/model_source.h"

namespace tpinfer {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Loads the tokenizer of a model (GGUF metadata, or tokenizer.json in a
  // Hugging Face folder). Throws FormatError if there is none or it is malformed.
  static std::unique_ptr<Tokenizer> load(const ModelSource& model);
  static std::unique_ptr<Tokenizer> from_gguf(const GgufFile& gguf);
  static std::unique_ptr<Tokenizer> from_hf_dir(const std::string& dir);

  // Encodes text. add_special: prepend BOS (and append EOS) where the model
  // asks for it (add_bos_token / tokenizer.ggml.add_bos_token). parse_special:
  // recognise special/added tokens written in the text ("<|im_start|>").
  virtual std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special) const = 0;

  // The bytes of one token (special tokens render as their text unless
  // skip_special). May be a partial UTF-8 sequence.
  virtual std::string token_bytes(int32_t id, bool skip_special = false) const = 0;
  std::string decode(const std::vector<int32_t>& ids, bool skip_special = false) const;

  virtual int32_t vocab_size() const = 0;
  virtual int32_t bos() const = 0;  // -1 when none
  virtual int32_t eos() const = 0;  // -1 when none
  // End-of-generation tokens (eos, eot, <|im_end|>, ...).
  virtual bool is_eog(int32_t id) const = 0;
  virtual bool is_special(int32_t id) const = 0;
  // The model's own chat template, empty if it has none.
  virtual const std::string& chat_template() const = 0;
  virtual std::string token_text(int32_t id) const = 0;  // the vocabulary entry as stored
};

// Turns a stream of tokens into text without ever emitting a broken UTF-8
// sequence: bytes of an incomplete character are held until it completes.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok, bool skip_special = true) : tok_(tok), skip_special_(skip_special) {}
  // Returns the text that became complete with this token (possibly empty).
  std::string push(int32_t id);
  // Returns what is left (invalid trailing bytes become U+FFFD).
  std::string finish();

 private:
  const Tokenizer& tok_;
  bool skip_special_;
  std::string pending_;
};

}  // namespace tpinfer
