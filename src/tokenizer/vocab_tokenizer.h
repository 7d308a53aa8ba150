// The one Tokenizer implementation: a Vocab, a merge model (SpmModel or
// BpeModel), a PreTokenizer and a SpecialSplitter, configured by a
// TokenizerSpec. Exposed (beyond the Tokenizer interface) so that tests can
// compare its fast paths with their references.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tokenizer/bpe.h"
#include "tokenizer/special_splitter.h"
#include "tokenizer/spm.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_spec.h"

namespace tpinfer {

class VocabTokenizer final : public Tokenizer {
 public:
  explicit VocabTokenizer(TokenizerSpec spec);

  std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special) const override;
  // Same result through the reference algorithms (no cache, no heap, no trie).
  std::vector<int32_t> encode_reference(std::string_view text, bool add_special, bool parse_special) const;

  std::string token_bytes(int32_t id, bool skip_special = false) const override;
  void decode_token(int32_t id, bool skip_special, DecodeState& state, std::string& out) const override;

  int32_t vocab_size() const override { return vocab_.size(); }
  int32_t bos() const override { return spec_.bos; }
  int32_t eos() const override { return spec_.eos; }
  bool add_bos_token() const override { return spec_.add_bos; }
  bool add_eos_token() const override { return spec_.add_eos; }
  bool is_eog(int32_t id) const override { return vocab_.valid(id) && eog_[id]; }
  bool is_special(int32_t id) const override;
  TokenType token_type(int32_t id) const override;
  const std::string& chat_template() const override { return spec_.chat_template; }
  std::string token_text(int32_t id) const override;
  int32_t token_id(std::string_view text) const override { return vocab_.find(text); }

  const TokenizerSpec& spec() const { return spec_; }
  const Vocab& vocab() const { return vocab_; }
  const PreTokenizer& pre_tokenizer() const { return spec_.pre; }
  const BpeModel* bpe() const { return bpe_.get(); }
  const SpmModel* spm() const { return spm_.get(); }
  const SpecialSplitter& splitter() const { return splitter_; }

 private:
  TokenizerSpec spec_;
  Vocab vocab_;
  std::unique_ptr<BpeModel> bpe_;
  std::unique_ptr<SpmModel> spm_;
  SpecialSplitter splitter_;
  std::vector<std::string> pieces_;  // decoded bytes of each token
  std::vector<uint8_t> eog_;

  void check_id(int32_t id) const;
  void mark_eog();
  void build_model();
  void build_splitter();
  void build_pieces();
  std::string normalize(std::string_view fragment, bool fragment_start) const;
  template <bool kReference>
  std::vector<int32_t> encode_impl(std::string_view text, bool add_special, bool parse_special) const;
  template <bool kReference>
  void encode_fragment(std::string_view fragment, bool fragment_start, std::vector<int32_t>& out) const;
};

}  // namespace tpinfer
