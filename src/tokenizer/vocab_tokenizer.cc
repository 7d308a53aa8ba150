#include "tokenizer/vocab_tokenizer.h"

#include <algorithm>
#include <array>

#include "core/error.h"
#include "tokenizer/byte_level.h"

namespace tpinfer {
namespace {

constexpr std::string_view kSpaceMark = "\xE2\x96\x81";  // U+2581

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  std::string out;
  out.reserve(s.size() + s.size() / 2);
  size_t pos = 0;
  for (size_t hit; (hit = s.find(from, pos)) != std::string::npos; pos = hit + from.size()) {
    out.append(s, pos, hit - pos).append(to);
  }
  out.append(s, pos, std::string::npos);
  s = std::move(out);
}

// Texts of tokens that end a turn in the chat formats of well-known model
// families (the list llama.cpp keeps, for GGUF files that do not say).
constexpr std::array<std::string_view, 14> kEndOfGenerationTexts = {
    "<|eot_id|>", "<|im_end|>", "<|end|>",         "<end_of_turn>",      "<|endoftext|>",         "<|eom_id|>",
    "<EOT>",      "_<EOT>",     "<|end_of_text|>", "<end_of_utterance>", "<｜end▁of▁sentence｜>", "<|return|>",
    "<|call|>",   "[EOS]"};

// Ids in range, and a BOS / EOS wherever one must be added.
void validate(const TokenizerSpec& spec) {
  const auto n = static_cast<int64_t>(spec.tokens.size());
  if (n == 0) throw FormatError(cat(spec.source, ": tokenizer has no tokens"));
  const auto check = [&](int32_t id, const char* what) {
    if (id >= n || id < -1) {
      throw FormatError(cat(spec.source, ": ", what, " token id ", id, " out of range (vocabulary of ", n, ")"));
    }
  };
  check(spec.bos, "BOS");
  check(spec.eos, "EOS");
  check(spec.eot, "EOT");
  check(spec.eom, "EOM");
  check(spec.unk, "unknown");
  for (int32_t id : spec.extra_eog) check(id, "end-of-generation");
  if (spec.add_bos && spec.bos < 0) {
    throw FormatError(cat(spec.source, ": add_bos_token is set but there is no BOS token"));
  }
  if (spec.add_eos && spec.eos < 0) {
    throw FormatError(cat(spec.source, ": add_eos_token is set but there is no EOS token"));
  }
}

}  // namespace

std::unique_ptr<Tokenizer> make_tokenizer(TokenizerSpec spec) {
  return std::make_unique<VocabTokenizer>(std::move(spec));
}

VocabTokenizer::VocabTokenizer(TokenizerSpec spec) : spec_(std::move(spec)) {
  validate(spec_);
  // The vocabulary takes the token arrays; the spec keeps only the options.
  vocab_ = Vocab(std::move(spec_.tokens), std::move(spec_.types), std::move(spec_.scores));
  spec_.tokens.clear();
  spec_.types.clear();
  spec_.scores.clear();
  mark_eog();
  build_model();
  build_splitter();
  build_pieces();
}

void VocabTokenizer::build_model() {
  if (spec_.model == TokenizerModel::Spm) {
    spm_ = std::make_unique<SpmModel>(vocab_, spec_.unk);
    return;
  }
  BpeOptions opt;
  opt.byte_level = spec_.byte_level;
  opt.ignore_merges = spec_.ignore_merges;
  opt.byte_fallback = spec_.byte_fallback;
  opt.unk = spec_.unk;
  opt.fuse_unk = spec_.fuse_unk;
  bpe_ = std::make_unique<BpeModel>(vocab_, spec_.merges, opt);
  spec_.merges.clear();
  spec_.merges.shrink_to_fit();
}

void VocabTokenizer::mark_eog() {
  eog_.assign(vocab_.size(), 0);
  const auto mark = [&](int32_t id) {
    if (!vocab_.valid(id)) return;
    eog_[id] = 1;
    // A token that ends generation is a control token even if the file forgot
    // to say so: it must not be matched as text or printed by default.
    if (vocab_.type(id) == TokenType::Normal) vocab_.set_type(id, TokenType::Control);
  };
  mark(spec_.eos);
  mark(spec_.eot);
  mark(spec_.eom);
  for (int32_t id : spec_.extra_eog) mark(id);
  for (std::string_view text : kEndOfGenerationTexts) mark(vocab_.find(text));
  // gpt-oss (harmony format): "<|end|>" ends a message, not the generation.
  const int32_t end = vocab_.find("<|end|>");
  if (end >= 0 && vocab_.find("<|return|>") >= 0 && vocab_.find("<|call|>") >= 0 && end != spec_.eos) eog_[end] = 0;
}

void VocabTokenizer::build_splitter() {
  std::vector<SpecialSplitter::Entry> entries;
  for (int32_t id = 0; id < vocab_.size(); ++id) {
    const TokenType t = vocab_.type(id);
    if (t != TokenType::Control && t != TokenType::UserDefined && t != TokenType::Unknown) continue;
    SpecialSplitter::Entry e;
    e.text = vocab_.text(id);
    e.id = id;
    e.always = t == TokenType::UserDefined;
    if (auto it = spec_.strip.find(id); it != spec_.strip.end()) {
      e.lstrip = it->second.left;
      e.rstrip = it->second.right;
    }
    entries.push_back(std::move(e));
  }
  splitter_ = SpecialSplitter(std::move(entries));
}

void VocabTokenizer::build_pieces() {
  const ByteLevelMap byte_map;
  pieces_.resize(vocab_.size());
  for (int32_t id = 0; id < vocab_.size(); ++id) {
    const std::string& text = vocab_.text(id);
    std::string& piece = pieces_[id];
    switch (vocab_.type(id)) {
      case TokenType::Control:
      case TokenType::Unknown:
      case TokenType::UserDefined:
        piece = text;
        continue;
      case TokenType::Byte:
        for (int b = 0; b < 256; ++b) {
          if (vocab_.byte_token(static_cast<uint8_t>(b)) == id) piece = std::string(1, static_cast<char>(b));
        }
        if (piece.empty()) piece = text;
        continue;
      default:
        break;
    }
    if (spec_.byte_level) {
      if (!byte_map.decode(text, piece)) piece = text;  // not byte-level text: print as stored
    } else {
      piece = text;
      if (spec_.escape_whitespace) replace_all(piece, kSpaceMark, " ");
    }
  }
}

void VocabTokenizer::check_id(int32_t id) const {
  if (!vocab_.valid(id)) throw Error(cat("token id ", id, " out of range (vocabulary of ", vocab_.size(), ")"));
}

bool VocabTokenizer::is_special(int32_t id) const {
  if (!vocab_.valid(id)) return false;
  const TokenType t = vocab_.type(id);
  return t == TokenType::Control || t == TokenType::Unknown;
}

TokenType VocabTokenizer::token_type(int32_t id) const {
  check_id(id);
  return vocab_.type(id);
}

std::string VocabTokenizer::token_text(int32_t id) const {
  check_id(id);
  return vocab_.text(id);
}

std::string VocabTokenizer::token_bytes(int32_t id, bool skip_special) const {
  check_id(id);
  if (skip_special && is_special(id)) return {};
  return pieces_[id];
}

void VocabTokenizer::decode_token(int32_t id, bool skip_special, DecodeState& state, std::string& out) const {
  check_id(id);
  const TokenType t = vocab_.type(id);
  if (t == TokenType::Control || t == TokenType::Unknown || t == TokenType::UserDefined) {
    if (!(skip_special && is_special(id))) out += pieces_[id];
    state.fragment_start = true;
    return;
  }
  std::string_view piece = pieces_[id];
  if (spec_.add_space_prefix && state.fragment_start && !piece.empty() && piece[0] == ' ') piece.remove_prefix(1);
  out += piece;
  state.fragment_start = false;
}

std::string VocabTokenizer::normalize(std::string_view fragment, bool fragment_start) const {
  std::string s;
  s.reserve(fragment.size() + 1);
  if (spec_.add_space_prefix && fragment_start) s += ' ';
  s += fragment;
  if (spec_.escape_whitespace) replace_all(s, " ", kSpaceMark);
  return s;
}

template <bool kReference>
void VocabTokenizer::encode_fragment(std::string_view fragment, bool fragment_start, std::vector<int32_t>& out) const {
  const std::string text = normalize(fragment, fragment_start);
  if (spm_) {
    if (kReference) {
      spm_->encode_reference(text, out);
    } else {
      spm_->encode(text, out);
    }
    return;
  }
  const auto word = [&](std::string_view w) {
    if (kReference) {
      bpe_->encode_word_reference(w, out);
    } else {
      bpe_->encode_word(w, out);
    }
  };
  if (spec_.pre.empty()) {
    word(text);
    return;
  }
  for (const std::string& w : spec_.pre.split(text)) word(w);
}

template <bool kReference>
std::vector<int32_t> VocabTokenizer::encode_impl(std::string_view text, bool add_special, bool parse_special) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 2);
  if (add_special && spec_.add_bos) out.push_back(spec_.bos);
  const std::vector<Fragment> fragments =
      kReference ? splitter_.split_reference(text, parse_special) : splitter_.split(text, parse_special);
  bool fragment_start = true;
  for (const Fragment& f : fragments) {
    if (f.token >= 0) {
      out.push_back(f.token);
      fragment_start = true;
    } else {
      encode_fragment<kReference>(f.text, fragment_start, out);
      fragment_start = false;
    }
  }
  if (add_special && spec_.add_eos) out.push_back(spec_.eos);
  return out;
}

std::vector<int32_t> VocabTokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
  return encode_impl<false>(text, add_special, parse_special);
}

std::vector<int32_t> VocabTokenizer::encode_reference(std::string_view text, bool add_special,
                                                      bool parse_special) const {
  return encode_impl<true>(text, add_special, parse_special);
}

}  // namespace tpinfer
