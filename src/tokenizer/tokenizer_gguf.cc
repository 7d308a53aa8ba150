// Tokenizer::from_gguf: reads the tokenizer.ggml.* metadata of a GGUF file.
#include <cstdint>
#include <optional>

#include "core/error.h"
#include "formats/gguf.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_spec.h"

namespace tpinfer {
namespace {

const GgufArray& array_of(const GgufFile& g, std::string_view key, GgufType elem) {
  const GgufValue* v = g.find(key);
  const GgufArray* a = v ? v->as_array() : nullptr;
  if (a == nullptr) throw FormatError(cat(g.path(), ": metadata ", key, " is missing or not an array"));
  if (!a->items.empty() && a->elem != elem) {
    throw FormatError(cat(g.path(), ": metadata ", key, " has elements of GGUF type ", static_cast<uint32_t>(a->elem),
                          ", expected ", static_cast<uint32_t>(elem)));
  }
  return *a;
}

std::vector<std::string> strings_of(const GgufFile& g, std::string_view key) {
  const GgufArray& a = array_of(g, key, GgufType::STRING);
  std::vector<std::string> out;
  out.reserve(a.items.size());
  for (const GgufValue& v : a.items) out.push_back(*v.as_string());
  return out;
}

// Optional per-token array of the same length as the token list.
template <typename T, typename Get>
std::vector<T> per_token(const GgufFile& g, std::string_view key, size_t n, Get get) {
  const GgufValue* v = g.find(key);
  if (v == nullptr) return {};
  const GgufArray* a = v->as_array();
  if (a == nullptr || a->items.size() != n) {
    throw FormatError(cat(g.path(), ": metadata ", key, " must be an array of ", n, " values (one per token)"));
  }
  std::vector<T> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const auto x = get(a->items[i]);
    if (!x) throw FormatError(cat(g.path(), ": metadata ", key, "[", i, "] is not a number"));
    out.push_back(static_cast<T>(*x));
  }
  return out;
}

std::vector<TokenType> token_types(const GgufFile& g, size_t n) {
  const auto raw = per_token<int64_t>(g, "tokenizer.ggml.token_type", n, [](const GgufValue& v) { return v.as_int(); });
  std::vector<TokenType> out;
  out.reserve(raw.size());
  for (int64_t t : raw) out.push_back(t >= 1 && t <= 6 ? static_cast<TokenType>(t) : TokenType::Undefined);
  return out;
}

std::vector<std::pair<std::string, std::string>> merges_of(const GgufFile& g) {
  std::vector<std::pair<std::string, std::string>> out;
  const std::vector<std::string> lines = strings_of(g, "tokenizer.ggml.merges");
  out.reserve(lines.size());
  for (size_t i = 0; i < lines.size(); ++i) {
    // The separator is the first space after the first character (a part is
    // never empty, and byte-level parts never contain a space).
    const size_t sp = lines[i].find(' ', 1);
    if (sp == std::string::npos) {
      throw FormatError(cat(g.path(), ": tokenizer.ggml.merges[", i, "] = \"", lines[i], "\" is not \"left right\""));
    }
    out.emplace_back(lines[i].substr(0, sp), lines[i].substr(sp + 1));
  }
  return out;
}

int32_t id_or(const GgufFile& g, std::string_view key, int32_t fallback) {
  const std::optional<int64_t> v = g.get_int(key);
  if (!v) return fallback;
  if (*v < 0 || *v > INT32_MAX) throw FormatError(cat(g.path(), ": metadata ", key, " = ", *v, " is not a token id"));
  return static_cast<int32_t>(*v);
}

void configure_spm(const GgufFile& g, TokenizerSpec& spec) {
  const auto n = static_cast<int32_t>(spec.tokens.size());
  spec.model = TokenizerModel::Spm;
  spec.escape_whitespace = true;
  spec.add_space_prefix = g.get_bool("tokenizer.ggml.add_space_prefix").value_or(true);
  // SentencePiece's conventional ids, used when the file does not name them.
  spec.bos = id_or(g, "tokenizer.ggml.bos_token_id", n > 1 ? 1 : -1);
  spec.eos = id_or(g, "tokenizer.ggml.eos_token_id", n > 2 ? 2 : -1);
  spec.unk = id_or(g, "tokenizer.ggml.unknown_token_id", 0);
  spec.add_bos = g.get_bool("tokenizer.ggml.add_bos_token").value_or(true);
}

void configure_bpe(const GgufFile& g, TokenizerSpec& spec) {
  spec.model = TokenizerModel::Bpe;
  spec.byte_level = true;
  spec.merges = merges_of(g);
  PreTokenizerPreset preset = pretokenizer_for_gguf(g.get_string("tokenizer.ggml.pre").value_or("default"));
  spec.pre = std::move(preset.pre);
  spec.ignore_merges = preset.ignore_merges;
  spec.bos = id_or(g, "tokenizer.ggml.bos_token_id", -1);
  spec.eos = id_or(g, "tokenizer.ggml.eos_token_id", -1);
  spec.unk = id_or(g, "tokenizer.ggml.unknown_token_id", -1);
  spec.add_bos = g.get_bool("tokenizer.ggml.add_bos_token").value_or(preset.add_bos);
}

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::from_gguf(const GgufFile& g) {
  const std::optional<std::string> model = g.get_string("tokenizer.ggml.model");
  if (!model) throw FormatError(cat(g.path(), ": no tokenizer (metadata tokenizer.ggml.model is missing)"));
  TokenizerSpec spec;
  spec.source = g.path();
  spec.tokens = strings_of(g, "tokenizer.ggml.tokens");
  const size_t n = spec.tokens.size();
  spec.types = token_types(g, n);
  spec.scores = per_token<float>(g, "tokenizer.ggml.scores", n, [](const GgufValue& v) { return v.as_float(); });
  if (*model == "llama") {
    configure_spm(g, spec);
  } else if (*model == "gpt2") {
    configure_bpe(g, spec);
  } else {
    throw FormatError(cat(g.path(), ": unsupported tokenizer.ggml.model \"", *model,
                          "\"; supported: llama (SentencePiece), gpt2 (byte-level BPE)"));
  }
  spec.eot = id_or(g, "tokenizer.ggml.eot_token_id", -1);
  spec.eom = id_or(g, "tokenizer.ggml.eom_token_id", -1);
  spec.add_eos = g.get_bool("tokenizer.ggml.add_eos_token").value_or(false);
  spec.chat_template = g.get_string("tokenizer.chat_template").value_or("");
  return make_tokenizer(std::move(spec));
}

}  // namespace tpinfer
