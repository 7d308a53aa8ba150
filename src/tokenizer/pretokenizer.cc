#include "tokenizer/pretokenizer.h"

#include <initializer_list>

#include "core/error.h"

namespace tpinfer {

void PreTokenizer::add_split(std::string pattern, SplitBehavior behavior, bool invert) {
  Stage st;
  st.regex = std::make_unique<Regex>(std::move(pattern));
  st.behavior = behavior;
  st.invert = invert;
  stages_.push_back(std::move(st));
}

void PreTokenizer::add_prefix_space() {
  Stage st;
  st.prefix_space = true;
  stages_.push_back(std::move(st));
}

std::vector<std::string> PreTokenizer::split(std::string_view text) const {
  std::vector<std::string> pieces;
  if (text.empty()) return pieces;
  pieces.emplace_back(text);
  std::vector<Span> scratch;
  for (const Stage& st : stages_) {
    if (st.prefix_space) {
      for (std::string& p : pieces) {
        if (p[0] != ' ') p.insert(p.begin(), ' ');
      }
      continue;
    }
    Regex::Matcher matcher(*st.regex);
    std::vector<std::string> next;
    next.reserve(pieces.size() * 2);
    for (const std::string& p : pieces) apply_split(st, matcher, p, scratch, next);
    pieces = std::move(next);
  }
  return pieces;
}

// Cuts `piece` into segments that alternate between delimiters (matches, or
// gaps when inverted) and content, then emits them as `behavior` says.
void PreTokenizer::apply_split(const Stage& st, Regex::Matcher& m, std::string_view piece, std::vector<Span>& matches,
                               std::vector<std::string>& out) {
  matches.clear();
  m.find_all(piece, matches);
  struct Segment {
    Span span;
    bool delim;
  };
  std::vector<Segment> segs;
  size_t pos = 0;
  for (const Span& s : matches) {
    if (s.begin > pos) segs.push_back({{pos, s.begin}, st.invert});
    segs.push_back({s, !st.invert});
    pos = s.end;
  }
  if (pos < piece.size()) segs.push_back({{pos, piece.size()}, st.invert});

  const auto text_of = [&](Span s) { return piece.substr(s.begin, s.end - s.begin); };
  std::string pending;  // MergedWithNext: delimiters waiting for the next piece
  for (size_t i = 0; i < segs.size(); ++i) {
    const Segment& sg = segs[i];
    switch (st.behavior) {
      case SplitBehavior::Isolated:
        out.emplace_back(text_of(sg.span));
        break;
      case SplitBehavior::Removed:
        if (!sg.delim) out.emplace_back(text_of(sg.span));
        break;
      case SplitBehavior::Contiguous:
        if (sg.delim && i > 0 && segs[i - 1].delim) {
          out.back() += text_of(sg.span);
        } else {
          out.emplace_back(text_of(sg.span));
        }
        break;
      case SplitBehavior::MergedWithPrevious:
        if (sg.delim && i > 0 && !segs[i - 1].delim) {
          out.back() += text_of(sg.span);
        } else {
          out.emplace_back(text_of(sg.span));
        }
        break;
      case SplitBehavior::MergedWithNext:
        if (sg.delim) {
          if (!pending.empty()) out.push_back(std::move(pending));
          pending = std::string(text_of(sg.span));
        } else {
          out.push_back(pending + std::string(text_of(sg.span)));
          pending.clear();
        }
        break;
    }
  }
  if (!pending.empty()) out.push_back(std::move(pending));
}

namespace {

// Regexes as the models' own tokenizer.json files write them (PCRE2 accepts
// their syntax: \p{..}, (?i:..), lookaheads, possessive quantifiers).
constexpr std::string_view kLlama3 =
    R"re((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";
constexpr std::string_view kQwen2 =
    R"re((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";
constexpr std::string_view kGpt2NoTrailing =
    R"re('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S))re";
constexpr std::string_view kDeepseekLlmLetters =
    "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-"
    "ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+";
constexpr std::string_view kCjk = "[一-龥ࠀ-一가-퟿]+";
constexpr std::string_view kDeepseekV3Main =
    R"re([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";
constexpr std::string_view kPoro = R"re( ?[^(\s|.,!?…。，、।۔،)]+)re";
constexpr std::string_view kTekken =
    R"re([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";
constexpr std::string_view kGpt4o =
    R"re([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";
constexpr std::string_view kSeedCoder =
    R"re((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+)re";

struct Preset {
  std::initializer_list<std::string_view> names;
  std::initializer_list<std::string_view> regexes;
  bool ignore_merges;
  bool add_bos;
};

// Which names share which regexes follows llama.cpp's table (llama-vocab.cpp);
// the regexes themselves are the models' originals.
const Preset kPresets[] = {
    {{"default", ""},
     {R"re([\p{P}\$\+<=>\^~\|]+)re", kGpt2NoTrailing, R"re(\p{N}+)re", "[0-9][0-9][0-9]"},
     false,
     false},
    {{"llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2"}, {kLlama3}, true, true},
    {{"dbrx", "smaug-bpe", "chatglm-bpe", "glm4"}, {kLlama3}, false, false},
    {{"deepseek-llm"},
     {"[\r\n]", kDeepseekLlmLetters, "\\s?[!-/:-~！-／：-～‘-‟　-。]+", "\\s+$", kCjk, R"re(\p{N}+)re"},
     false,
     false},
    {{"deepseek-coder"}, {"[\r\n]", R"re(\s?\p{L}+)re", R"re(\s?\p{P}+)re", kCjk, R"re(\p{N})re"}, false, false},
    {{"deepseek-v3"}, {R"re(\p{N}{1,3})re", "[一-龥぀-ゟ゠-ヿ]+", kDeepseekV3Main}, false, false},
    {{"falcon"}, {R"re([\p{P}\$\+<=>\^~\|`]+)re", kGpt2NoTrailing, "[0-9][0-9][0-9]"}, false, false},
    {{"gpt-2", "mpt", "olmo", "jais", "trillion", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de",
      "jina-v1-en", "jina-v2-code", "roberta-bpe", "a.x-4.0", "mellum", "modern-bert", "exaone4", "granite-docling"},
     {kGpt2NoTrailing},
     false,
     false},
    {{"starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", "minerva-7b"},
     {R"re(\p{N})re", kGpt2NoTrailing},
     false,
     false},
    {{"qwen2", "stablelm2", "hunyuan", "deepseek-r1-qwen", "megrez"}, {kQwen2}, false, false},
    {{"poro-chat", "bloom", "gpt3-finnish"}, {kPoro}, false, false},
    {{"viking"}, {kPoro, R"re(\p{N})re"}, false, false},
    {{"tekken"}, {kTekken}, true, true},
    {{"gpt-4o", "llama4"}, {kGpt4o}, false, false},
    {{"seed-coder"}, {kSeedCoder}, false, false},
};

}  // namespace

PreTokenizerPreset pretokenizer_for_gguf(std::string_view name) {
  for (const Preset& p : kPresets) {
    for (std::string_view n : p.names) {
      if (n != name) continue;
      PreTokenizerPreset out;
      for (std::string_view re : p.regexes) out.pre.add_split(std::string(re), SplitBehavior::Isolated);
      out.ignore_merges = p.ignore_merges;
      out.add_bos = p.add_bos;
      return out;
    }
  }
  std::string known;
  for (const Preset& p : kPresets) {
    for (std::string_view n : p.names) {
      if (n.empty()) continue;
      if (!known.empty()) known += ", ";
      known += n;
    }
  }
  throw FormatError(cat("unsupported pre-tokenizer tokenizer.ggml.pre = \"", name, "\"; supported: ", known));
}

}  // namespace tpinfer
