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
// Cased letters (Unicode LC) as DeepSeek-LLM's tokenizer.json lists them;
// written as escapes so that no editor or tool can normalize them.
constexpr std::string_view kDeepseekLlmLetters =
    R"re(\s?[A-Za-z\x{B5}\x{C0}-\x{D6}\x{D8}-\x{F6}\x{F8}-\x{1BA}\x{1BC}-\x{1BF}\x{1C4}-\x{293})re"
    R"re(\x{295}-\x{2AF}\x{370}-\x{373}\x{376}\x{377}\x{37B}-\x{37D}\x{37F}\x{386}\x{388}-\x{38A})re"
    R"re(\x{38C}\x{38E}-\x{3A1}\x{3A3}-\x{3F5}\x{3F7}-\x{481}\x{48A}-\x{52F}\x{531}-\x{556})re"
    R"re(\x{10A0}-\x{10C5}\x{13A0}-\x{13F5}\x{13F8}-\x{13FD}\x{1C90}-\x{1CBA}\x{1CBD}-\x{1CBF})re"
    R"re(\x{1D00}-\x{1D2B}\x{1D6B}-\x{1D77}\x{1D79}-\x{1D9A}\x{1E00}-\x{1F15}\x{1F18}-\x{1F1D})re"
    R"re(\x{1F20}-\x{1F45}\x{1F48}-\x{1F4D}\x{1F50}-\x{1F57}\x{1F59}\x{1F5B}\x{1F5D})re"
    R"re(\x{1F5F}-\x{1F7D}\x{1F80}-\x{1FB4}\x{1FB6}-\x{1FBC}\x{1FBE}\x{1FC2}-\x{1FC4})re"
    R"re(\x{1FC6}-\x{1FCC}\x{1FD0}-\x{1FD3}\x{1FD6}-\x{1FDB}\x{1FE0}-\x{1FEC}\x{1FF2}-\x{1FF4})re"
    R"re(\x{1FF6}-\x{1FFC}\x{2102}\x{2107}\x{210A}-\x{2113}\x{2115}\x{2119}-\x{211D}\x{2124})re"
    R"re(\x{2126}\x{2128}\x{212A}-\x{212D}\x{212F}-\x{2134}\x{2139}\x{213C}-\x{213F})re"
    R"re(\x{2145}-\x{2149}\x{214E}\x{2183}\x{2184}\x{2C00}-\x{2C7B}\x{2C7E}-\x{2CE4})re"
    R"re(\x{2CEB}-\x{2CEE}\x{2CF2}\x{2CF3}\x{A640}-\x{A66D}\x{A680}-\x{A69B}\x{A722}-\x{A76F})re"
    R"re(\x{A771}-\x{A787}\x{A78B}-\x{A78E}\x{AB70}-\x{ABBF}\x{FB00}-\x{FB06}\x{FB13}-\x{FB17})re"
    R"re(\x{FF21}-\x{FF3A}\x{FF41}-\x{FF5A}\x{10400}-\x{1044F}\x{104B0}-\x{104D3})re"
    R"re(\x{104D8}-\x{104FB}\x{10C80}-\x{10CB2}\x{10CC0}-\x{10CF2}\x{118A0}-\x{118DF})re"
    R"re(\x{1E900}-\x{1E943}]+)re";
constexpr std::string_view kCjk = R"re([\x{4E00}-\x{9FA5}\x{800}-\x{4E00}\x{AC00}-\x{D7FF}]+)re";
constexpr std::string_view kDeepseekV3Main =
    R"re([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";
constexpr std::string_view kPoro = R"re( ?[^(\s|.,!?\x{2026}\x{3002}\x{FF0C}\x{3001}\x{964}\x{6D4}\x{60C})]+)re";
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
     {R"re([\r\n])re", kDeepseekLlmLetters,
      R"re(\s?[!-/:-~\x{FF01}-\x{FF0F}\x{FF1A}-\x{FF5E}\x{2018}-\x{201F}\x{3000}-\x{3002}]+)re", R"re(\s+$)re", kCjk,
      R"re(\p{N}+)re"},
     false,
     false},
    {{"deepseek-coder"}, {R"re([\r\n])re", R"re(\s?\p{L}+)re", R"re(\s?\p{P}+)re", kCjk, R"re(\p{N})re"}, false, false},
    {{"deepseek-v3"},
     {R"re(\p{N}{1,3})re", R"re([\x{4E00}-\x{9FA5}\x{3040}-\x{309F}\x{30A0}-\x{30FF}]+)re", kDeepseekV3Main},
     false,
     false},
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
