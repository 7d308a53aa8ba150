// Tokenizer::from_hf_dir: a Hugging Face tokenizer.json (model BPE with its
// normalizer, pre-tokenizer and post-processor) plus tokenizer_config.json,
// generation_config.json and chat_template.jinja when present.
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "core/error.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_spec.h"

namespace tpinfer {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

std::optional<std::string> read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::optional<json> read_json(const fs::path& p) {
  const std::optional<std::string> text = read_text(p);
  if (!text) return std::nullopt;
  try {
    return json::parse(*text);
  } catch (const json::exception& e) {
    throw FormatError(cat(p.string(), ": invalid JSON: ", e.what()));
  }
}

// Field access with errors that name the file and the field.
struct Reader {
  std::string file;

  [[noreturn]] void fail(const std::string& what) const { throw FormatError(cat(file, ": ", what)); }

  std::string str(const json& j, const char* key, const std::string& fallback = "") const {
    if (!j.contains(key) || j[key].is_null()) return fallback;
    if (!j[key].is_string()) fail(cat("\"", key, "\" must be a string"));
    return j[key].get<std::string>();
  }
  bool boolean(const json& j, const char* key, bool fallback) const {
    if (!j.contains(key) || j[key].is_null()) return fallback;
    if (!j[key].is_boolean()) fail(cat("\"", key, "\" must be true or false"));
    return j[key].get<bool>();
  }
};

bool is_byte_token_text(std::string_view s) {
  const auto hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F') || (c >= 'a' && c <= 'f'); };
  return s.size() == 6 && s.starts_with("<0x") && s[5] == '>' && hex(s[3]) && hex(s[4]);
}

// The id of an added_tokens entry; fails unless it is an object with an
// integer id in [0, INT32_MAX].
int64_t added_token_id(const Reader& r, const json& a) {
  if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() || a["id"].get<int64_t>() < 0 ||
      a["id"].get<int64_t>() > INT32_MAX) {
    r.fail(cat("added_tokens entry ", a.dump().substr(0, 80), " has no token id"));
  }
  return a["id"].get<int64_t>();
}

void read_vocab(const Reader& r, const json& model, const json& added, TokenizerSpec& spec) {
  if (!model.contains("vocab") || !model["vocab"].is_object()) r.fail("model.vocab must be an object {token: id}");
  int64_t max_id = -1;
  for (const auto& [text, id] : model["vocab"].items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX) {
      r.fail(cat("model.vocab[\"", text, "\"] is not a token id"));
    }
    max_id = std::max(max_id, id.get<int64_t>());
  }
  for (const json& a : added) max_id = std::max(max_id, added_token_id(r, a));
  if (max_id < 0) r.fail("the vocabulary is empty");
  // Ids are dense in every real tokenizer; a file that names id 2^31 - 1
  // with a handful of tokens must not make us allocate 2^31 strings.
  const int64_t entries = static_cast<int64_t>(model["vocab"].size() + added.size());
  if (max_id >= 2 * entries + 1024) {
    r.fail(cat("token ids go up to ", max_id, " for only ", entries,
               " tokens (ids must be dense: at most 2 x tokens + 1024)"));
  }
  // Ids missing from both lists (there should be none) stay empty and Unused.
  spec.tokens.assign(max_id + 1, std::string());
  spec.types.assign(max_id + 1, TokenType::Unused);
  for (const auto& [text, id] : model["vocab"].items()) {
    const auto i = id.get<int64_t>();
    spec.tokens[i] = text;
    spec.types[i] = spec.byte_fallback && is_byte_token_text(text) ? TokenType::Byte : TokenType::Normal;
  }
  for (const json& a : added) {
    const int64_t id = added_token_id(r, a);
    if (!a.contains("content") || !a["content"].is_string()) r.fail("added_tokens entry without content");
    spec.tokens[id] = a["content"].get<std::string>();
    spec.types[id] = r.boolean(a, "special", false) ? TokenType::Control : TokenType::UserDefined;
    const bool l = r.boolean(a, "lstrip", false), rs = r.boolean(a, "rstrip", false);
    if (l || rs) spec.strip[static_cast<int32_t>(id)] = {l, rs};
  }
}

void read_merges(const Reader& r, const json& model, TokenizerSpec& spec) {
  if (!model.contains("merges")) return;
  if (!model["merges"].is_array()) r.fail("model.merges must be an array");
  for (const json& m : model["merges"]) {
    if (m.is_string()) {
      const std::string s = m.get<std::string>();
      const size_t sp = s.find(' ', 1);
      if (sp == std::string::npos) r.fail(cat("merge \"", s, "\" is not \"left right\""));
      spec.merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      spec.merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
    } else {
      r.fail(cat("merge ", m.dump(), " is neither \"left right\" nor [left, right]"));
    }
  }
}

void read_model(const Reader& r, const json& tj, TokenizerSpec& spec) {
  if (!tj.contains("model") || !tj["model"].is_object()) r.fail("no \"model\" object");
  const json& model = tj["model"];
  const std::string type = r.str(model, "type", "BPE");
  if (type != "BPE") r.fail(cat("unsupported tokenizer model type \"", type, "\"; supported: BPE"));
  if (!r.str(model, "continuing_subword_prefix").empty() || !r.str(model, "end_of_word_suffix").empty()) {
    r.fail("BPE continuing_subword_prefix / end_of_word_suffix are not supported");
  }
  spec.model = TokenizerModel::Bpe;
  spec.byte_fallback = r.boolean(model, "byte_fallback", false);
  spec.ignore_merges = r.boolean(model, "ignore_merges", false);
  spec.fuse_unk = r.boolean(model, "fuse_unk", false);
  const json added = tj.contains("added_tokens") && tj["added_tokens"].is_array() ? tj["added_tokens"] : json::array();
  read_vocab(r, model, added, spec);
  read_merges(r, model, spec);
  const std::string unk = r.str(model, "unk_token");
  if (!unk.empty()) {
    for (size_t i = 0; i < spec.tokens.size(); ++i) {
      if (spec.tokens[i] == unk) spec.unk = static_cast<int32_t>(i);
    }
  }
}

std::string split_pattern(const Reader& r, const json& st) {
  const json& p = st.contains("pattern") ? st["pattern"] : json();
  if (p.contains("Regex") && p["Regex"].is_string()) return p["Regex"].get<std::string>();
  if (p.contains("String") && p["String"].is_string()) {
    // A literal: quote it for PCRE2.
    return "\\Q" + p["String"].get<std::string>() + "\\E";
  }
  r.fail(cat("Split pre-tokenizer without a pattern: ", st.dump()));
}

SplitBehavior behavior_of(const Reader& r, const std::string& b) {
  if (b == "Isolated") return SplitBehavior::Isolated;
  if (b == "Removed") return SplitBehavior::Removed;
  if (b == "MergedWithPrevious") return SplitBehavior::MergedWithPrevious;
  if (b == "MergedWithNext") return SplitBehavior::MergedWithNext;
  if (b == "Contiguous") return SplitBehavior::Contiguous;
  r.fail(cat("unknown split behavior \"", b, "\""));
}

void read_pre_tokenizer(const Reader& r, const json& pt, TokenizerSpec& spec) {
  if (pt.is_null()) return;
  const std::string type = r.str(pt, "type");
  if (type == "Sequence") {
    for (const json& p : pt.value("pretokenizers", json::array())) read_pre_tokenizer(r, p, spec);
  } else if (type == "ByteLevel") {
    spec.byte_level = true;
    if (r.boolean(pt, "add_prefix_space", false)) spec.pre.add_prefix_space();
    if (r.boolean(pt, "use_regex", true)) spec.pre.add_split(std::string(kGpt2Pattern), SplitBehavior::Isolated);
  } else if (type == "Split") {
    spec.pre.add_split(split_pattern(r, pt), behavior_of(r, r.str(pt, "behavior", "Isolated")),
                       r.boolean(pt, "invert", false));
  } else if (type == "Digits") {
    spec.pre.add_split(r.boolean(pt, "individual_digits", false) ? "\\p{N}" : "\\p{N}+", SplitBehavior::Isolated);
  } else if (type == "Punctuation") {
    spec.pre.add_split(R"re([\p{P}!-/:-@\[-`{-~])re", behavior_of(r, r.str(pt, "behavior", "Isolated")));
  } else if (type == "Whitespace") {
    spec.pre.add_split(R"re(\w+|[^\w\s]+)re", SplitBehavior::Removed, /*invert=*/true);
  } else if (type == "WhitespaceSplit") {
    spec.pre.add_split(R"re(\s+)re", SplitBehavior::Removed);
  } else if (type == "Metaspace") {
    if (r.str(pt, "replacement", "\xE2\x96\x81") != "\xE2\x96\x81") r.fail("Metaspace replacement other than U+2581");
    spec.escape_whitespace = true;
    const std::string scheme =
        r.str(pt, "prepend_scheme", r.boolean(pt, "add_prefix_space", true) ? "always" : "never");
    spec.add_space_prefix = scheme != "never";
    if (r.boolean(pt, "split", true)) spec.pre.add_split("\xE2\x96\x81", SplitBehavior::MergedWithNext);
  } else {
    r.fail(
        cat("unsupported pre-tokenizer \"", type,
            "\"; supported: Sequence, ByteLevel, Split, Digits, Punctuation, Whitespace, WhitespaceSplit, Metaspace"));
  }
}

// Normalizers map onto the fragment options; Unicode normal forms are not
// applied (as in llama.cpp): text is expected in NFC already.
void read_normalizer(const Reader& r, const json& nj, TokenizerSpec& spec) {
  if (nj.is_null()) return;
  const std::string type = r.str(nj, "type");
  if (type == "Sequence") {
    for (const json& n : nj.value("normalizers", json::array())) read_normalizer(r, n, spec);
  } else if (type == "Prepend" && r.str(nj, "prepend") == "\xE2\x96\x81") {
    spec.add_space_prefix = true;
  } else if (type == "Replace" && nj.contains("pattern") && nj["pattern"].value("String", "") == " " &&
             r.str(nj, "content") == "\xE2\x96\x81") {
    spec.escape_whitespace = true;
  } else if (type == "NFC" || type == "NFKC" || type == "NFD" || type == "NFKD") {
    return;
  } else {
    r.fail(cat("unsupported normalizer ", nj.dump(),
               "; supported: Sequence, Prepend(U+2581), Replace(' ' -> U+2581), NFC/NFKC (not applied)"));
  }
}

int32_t id_of(const TokenizerSpec& spec, const std::string& text) {
  if (text.empty()) return -1;
  for (size_t i = 0; i < spec.tokens.size(); ++i) {
    if (spec.tokens[i] == text) return static_cast<int32_t>(i);
  }
  return -1;
}

// TemplateProcessing: a special token before the sequence means BOS, after it EOS.
void read_post_processor(const Reader& r, const json& pp, TokenizerSpec& spec) {
  if (pp.is_null()) return;
  const std::string type = r.str(pp, "type");
  if (type == "Sequence") {
    for (const json& p : pp.value("processors", json::array())) read_post_processor(r, p, spec);
  } else if (type == "TemplateProcessing") {
    const json single = pp.value("single", json::array());
    const auto special_id = [&](const json& item) -> int32_t {
      if (!item.contains("SpecialToken")) return -1;
      return id_of(spec, item["SpecialToken"].value("id", ""));
    };
    if (!single.empty() && special_id(single.front()) >= 0) {
      spec.bos = special_id(single.front());
      spec.add_bos = true;
    }
    if (single.size() > 1 && special_id(single.back()) >= 0) {
      spec.eos = special_id(single.back());
      spec.add_eos = true;
    }
  } else if (type == "RobertaProcessing" || type == "BertProcessing") {
    const auto tok = [&](const char* key) {
      return pp.contains(key) && pp[key].is_array() && !pp[key].empty() ? id_of(spec, pp[key][0].get<std::string>())
                                                                        : -1;
    };
    spec.bos = tok("cls");
    spec.eos = tok("sep");
    spec.add_bos = spec.bos >= 0;
    spec.add_eos = spec.eos >= 0;
  }
}

// "bos_token": "<s>" or {"content": "<s>", ...}.
std::string token_string(const json& cfg, const char* key) {
  if (!cfg.contains(key)) return "";
  const json& v = cfg[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) return v["content"].get<std::string>();
  return "";
}

void read_tokenizer_config(const Reader& r, const json& cfg, TokenizerSpec& spec) {
  if (const int32_t id = id_of(spec, token_string(cfg, "bos_token")); id >= 0) spec.bos = id;
  if (const int32_t id = id_of(spec, token_string(cfg, "eos_token")); id >= 0) spec.eos = id;
  spec.add_bos = r.boolean(cfg, "add_bos_token", spec.add_bos);
  spec.add_eos = r.boolean(cfg, "add_eos_token", spec.add_eos);
  if (!cfg.contains("chat_template")) return;
  const json& ct = cfg["chat_template"];
  if (ct.is_string()) {
    spec.chat_template = ct.get<std::string>();
  } else if (ct.is_array()) {  // [{"name": "default", "template": "..."}, ...]
    for (const json& t : ct) {
      if (t.value("name", "") == "default" && t.contains("template"))
        spec.chat_template = t["template"].get<std::string>();
    }
  }
}

void read_generation_config(const json& gen, TokenizerSpec& spec) {
  if (!gen.contains("eos_token_id")) return;
  const json& e = gen["eos_token_id"];
  const auto add = [&](const json& v) {
    if (v.is_number_integer()) spec.extra_eog.push_back(v.get<int32_t>());
  };
  if (e.is_array()) {
    for (const json& v : e) add(v);
  } else {
    add(e);
  }
}

std::unique_ptr<Tokenizer> from_hf_dir_checked(const std::string& dir);

}  // namespace

// Every field is checked where it is read; the catch turns a JSON type error
// that a check missed into the same FormatError instead of an escape.
std::unique_ptr<Tokenizer> Tokenizer::from_hf_dir(const std::string& dir) {
  try {
    return from_hf_dir_checked(dir);
  } catch (const json::exception& e) {
    throw FormatError(cat(dir, ": malformed tokenizer files: ", e.what()));
  }
}

namespace {

std::unique_ptr<Tokenizer> from_hf_dir_checked(const std::string& dir) {
  const fs::path base(dir);
  const fs::path tok_path = base / "tokenizer.json";
  const std::optional<json> tj = read_json(tok_path);
  if (!tj) throw FormatError(cat(dir, ": no tokenizer.json (cannot open ", tok_path.string(), ")"));
  const Reader r{tok_path.string()};
  TokenizerSpec spec;
  spec.source = tok_path.string();
  read_model(r, *tj, spec);
  read_normalizer(r, tj->value("normalizer", json()), spec);
  read_pre_tokenizer(r, tj->value("pre_tokenizer", json()), spec);
  if (spec.add_space_prefix && !spec.escape_whitespace) {
    r.fail("normalizer prepends U+2581 without replacing spaces by U+2581: not supported");
  }
  read_post_processor(r, tj->value("post_processor", json()), spec);
  if (const auto cfg = read_json(base / "tokenizer_config.json")) {
    read_tokenizer_config(Reader{(base / "tokenizer_config.json").string()}, *cfg, spec);
  }
  if (const auto gen = read_json(base / "generation_config.json")) read_generation_config(*gen, spec);
  if (spec.chat_template.empty()) {
    if (auto t = read_text(base / "chat_template.jinja")) spec.chat_template = std::move(*t);
  }
  return make_tokenizer(std::move(spec));
}

}  // namespace
}  // namespace tpinfer
