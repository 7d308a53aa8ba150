// Loading: what GGUF metadata and Hugging Face files set (special ids, flags,
// end-of-generation tokens, chat templates, added-token parsing), variants of
// tokenizer.json, and clear errors for malformed or unsupported input.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "formats/format_test_util.h"
#include "formats/gguf_writer.h"
#include "tokenizer/tokenizer_test_util.h"

namespace tpinfer {
namespace {

using nlohmann::json;
using testing::expect_error;
using testing::TempDir;

bool contains(const std::vector<int32_t>& v, int32_t x) { return std::find(v.begin(), v.end(), x) != v.end(); }

TEST(TokenizerGguf, SpecialTokensPerModel) {
  const VocabTokenizer& l3 = test::vocab_tokenizer("llama-bpe");
  EXPECT_EQ(l3.bos(), 128000);
  EXPECT_TRUE(l3.add_bos_token());  // llama-bpe implies it when the file does not say
  EXPECT_TRUE(l3.is_eog(128001));
  EXPECT_TRUE(l3.is_eog(l3.token_id("<|eot_id|>")));
  EXPECT_FALSE(l3.is_eog(128000));
  EXPECT_EQ(l3.encode("Hi", true, false).front(), 128000);

  const VocabTokenizer& qwen = test::vocab_tokenizer("qwen2");
  EXPECT_TRUE(qwen.is_eog(qwen.token_id("<|im_end|>")));
  EXPECT_TRUE(qwen.is_eog(151643));
  EXPECT_FALSE(qwen.add_bos_token());
  EXPECT_NE(qwen.chat_template().find("<|im_start|>"), std::string::npos);

  const VocabTokenizer& phi = test::vocab_tokenizer("phi-3");
  EXPECT_EQ(phi.eos(), 32000);
  EXPECT_TRUE(phi.is_eog(phi.token_id("<|end|>")));
  EXPECT_NE(phi.chat_template().find("<|assistant|>"), std::string::npos);

  const VocabTokenizer& spm = test::vocab_tokenizer("llama-spm");
  EXPECT_EQ(spm.bos(), 1);
  EXPECT_EQ(spm.eos(), 2);
  EXPECT_TRUE(spm.add_bos_token());
  EXPECT_EQ(spm.token_type(0), TokenType::Unknown);
  EXPECT_EQ(spm.token_type(3), TokenType::Byte);
  EXPECT_TRUE(test::vocab_tokenizer("gpt-2").chat_template().empty());
}

TEST(TokenizerGguf, ParseSpecial) {
  const VocabTokenizer& l3 = test::vocab_tokenizer("llama-bpe");
  const std::string chat = "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>";
  const std::vector<int32_t> with = l3.encode(chat, false, true);
  EXPECT_EQ(with.front(), l3.token_id("<|start_header_id|>"));
  EXPECT_EQ(with.back(), l3.token_id("<|eot_id|>"));
  EXPECT_FALSE(contains(l3.encode(chat, false, false), l3.token_id("<|eot_id|>")));
  EXPECT_EQ(l3.decode(with), chat);
  EXPECT_EQ(l3.decode(with, /*skip_special=*/true), "user\n\nHi");

  // SentencePiece: the fragment after a special token gets its own space prefix.
  const VocabTokenizer& spm = test::vocab_tokenizer("llama-spm");
  const std::vector<int32_t> ids = spm.encode("<s>Hello</s>", false, true);
  EXPECT_EQ(ids, (std::vector<int32_t>{1, 15043, 2}));
  EXPECT_EQ(spm.decode(ids), "<s>Hello</s>");
  EXPECT_EQ(spm.decode(ids, true), "Hello");
}

// Copies the tokenizer of a GGUF vocabulary into a new GGUF, with edits.
class GgufTokenizerFile {
 public:
  explicit GgufTokenizerFile(const std::string& from) : src_(GgufFile::open(from)) {
    for (const auto& [key, value] : src_->metadata()) {
      if (key.starts_with("tokenizer.")) w_.set(key, value);
    }
  }
  GgufWriter& writer() { return w_; }
  std::string write(const TempDir& dir, const std::string& name) {
    const std::string path = dir.file(name);
    w_.write(path);
    return path;
  }

 private:
  std::unique_ptr<GgufFile> src_;
  GgufWriter w_;
};

std::unique_ptr<Tokenizer> load_gguf(const std::string& path) { return Tokenizer::from_gguf(*GgufFile::open(path)); }

TEST(TokenizerGguf, SpmWithoutSpacePrefix) {
  TempDir dir;
  GgufTokenizerFile f(test::vocab_path("llama-spm"));
  f.writer().set_bool("tokenizer.ggml.add_space_prefix", false);
  const auto tok = load_gguf(f.write(dir, "spm.gguf"));
  const VocabTokenizer& with = test::vocab_tokenizer("llama-spm");
  EXPECT_EQ(with.encode("Hello", false, false), std::vector<int32_t>{15043});  // "▁Hello"
  const std::vector<int32_t> ids = tok->encode("Hello", false, false);
  EXPECT_NE(ids, std::vector<int32_t>{15043});
  EXPECT_EQ(tok->decode(ids), "Hello");
  EXPECT_EQ(tok->decode(tok->encode(" a  b ", false, false)), " a  b ");
}

TEST(TokenizerGguf, Errors) {
  TempDir dir;
  {
    GgufWriter w;
    w.set_string("general.architecture", "llama");
    const std::string path = dir.file("none.gguf");
    w.write(path);
    expect_error<FormatError>([&] { load_gguf(path); }, path, {"tokenizer.ggml.model"});
  }
  {
    GgufTokenizerFile f(test::vocab_path("gpt-2"));
    f.writer().set_string("tokenizer.ggml.model", "bert");
    const std::string path = f.write(dir, "bert.gguf");
    expect_error<FormatError>([&] { load_gguf(path); }, path, {"bert", "gpt2"});
  }
  {
    GgufTokenizerFile f(test::vocab_path("gpt-2"));
    f.writer().set_string("tokenizer.ggml.pre", "mystery");
    const std::string path = f.write(dir, "pre.gguf");
    expect_error<FormatError>([&] { load_gguf(path); }, "mystery", {"qwen2"});
  }
  {
    GgufTokenizerFile f(test::vocab_path("gpt-2"));
    f.writer().set_i32s("tokenizer.ggml.token_type", {1, 1, 1});
    const std::string path = f.write(dir, "types.gguf");
    expect_error<FormatError>([&] { load_gguf(path); }, path, {"tokenizer.ggml.token_type"});
  }
  {
    GgufTokenizerFile f(test::vocab_path("gpt-2"));
    f.writer().set_strings("tokenizer.ggml.merges", {"Ġ t", "nospace"});
    const std::string path = f.write(dir, "merges.gguf");
    expect_error<FormatError>([&] { load_gguf(path); }, path, {"tokenizer.ggml.merges[1]"});
  }
  {
    GgufTokenizerFile f(test::vocab_path("gpt-2"));
    f.writer().set_u32("tokenizer.ggml.bos_token_id", 999999);
    const std::string path = f.write(dir, "bos.gguf");
    expect_error<FormatError>([&] { load_gguf(path); }, path, {"BOS", "999999"});
  }
  {
    GgufTokenizerFile f(test::vocab_path("gpt-2"));
    f.writer().set_strings("tokenizer.ggml.tokens", {});
    f.writer().set_i32s("tokenizer.ggml.token_type", {});
    const std::string path = f.write(dir, "empty.gguf");
    expect_error<FormatError>([&] { load_gguf(path); }, path, {"no tokens"});
  }
}

// --- Hugging Face folders ---------------------------------------------------

json bible_tokenizer_json() {
  return json::parse(test::read_file(test::shared_dir() + "/bible/bible-bf16/tokenizer.json"));
}

void write_json(const std::string& path, const json& j) { testing::write_text(path, j.dump()); }

TEST(TokenizerHf, MergesAsPairsAndConfigFiles) {
  TempDir dir;
  json tj = bible_tokenizer_json();
  json pairs = json::array();
  for (const json& m : tj["model"]["merges"]) {
    const std::string s = m;
    const size_t sp = s.find(' ', 1);
    pairs.push_back({s.substr(0, sp), s.substr(sp + 1)});
  }
  tj["model"]["merges"] = pairs;
  write_json(dir.file("tokenizer.json"), tj);
  write_json(dir.file("tokenizer_config.json"),
             {{"add_bos_token", false},
              {"chat_template",
               json::array({{{"name", "tool_use"}, {"template", "T"}}, {{"name", "default"}, {"template", "D"}}})}});
  write_json(dir.file("generation_config.json"), {{"eos_token_id", json::array({4095, 7})}});
  const auto tok = Tokenizer::from_hf_dir(dir.path().string());
  const std::string text = test::read_file(test::shared_dir() + "/bible/kjv-valid.txt").substr(0, 20000);
  const VocabTokenizer& ref = test::gguf_tokenizer(test::shared_dir() + "/bible/bible-q8_0.gguf");
  EXPECT_EQ(tok->encode(text, false, false), ref.encode(text, false, false));
  EXPECT_FALSE(tok->add_bos_token());  // tokenizer_config.json overrides the post-processor
  EXPECT_EQ(tok->chat_template(), "D");
  EXPECT_TRUE(tok->is_eog(7));
  EXPECT_TRUE(tok->is_eog(4095));
}

TEST(TokenizerHf, ChatTemplateFile) {
  TempDir dir;
  write_json(dir.file("tokenizer.json"), bible_tokenizer_json());
  testing::write_text(dir.file("chat_template.jinja"), "{{ messages }}");
  EXPECT_EQ(Tokenizer::from_hf_dir(dir.path().string())->chat_template(), "{{ messages }}");
}

// A Llama-2-style tokenizer.json: SentencePiece-like BPE on raw UTF-8, spaces
// as U+2581 through the normalizer (or a Metaspace pre-tokenizer), byte fallback.
json spm_style_tokenizer_json(bool metaspace) {
  const std::string m = "\xE2\x96\x81";
  json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}};
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof(buf), "<0x%02X>", b);
    vocab[buf] = 3 + b;
  }
  int next = 259;
  for (const std::string& t : {m, std::string("a"), std::string("b"), m + "a", std::string("ab"), m + "ab", m + m}) {
    vocab[t] = next++;
  }
  json tj = {{"model",
              {{"type", "BPE"},
               {"byte_fallback", true},
               {"fuse_unk", true},
               {"unk_token", "<unk>"},
               {"vocab", vocab},
               {"merges", json::array({"a b", m + " ab", m + " a", m + " " + m})}}},
             {"added_tokens", json::array({{{"id", 0}, {"content", "<unk>"}, {"special", true}},
                                           {{"id", 1}, {"content", "<s>"}, {"special", true}},
                                           {{"id", 2}, {"content", "</s>"}, {"special", true}}})},
             {"post_processor",
              {{"type", "TemplateProcessing"},
               {"single", json::array({{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                                       {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})}}}};
  if (metaspace) {
    tj["normalizer"] = nullptr;
    tj["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", m}, {"prepend_scheme", "first"}, {"split", false}};
  } else {
    tj["normalizer"] = {
        {"type", "Sequence"},
        {"normalizers", json::array({{{"type", "Prepend"}, {"prepend", m}},
                                     {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", m}}})}};
    tj["pre_tokenizer"] = nullptr;
  }
  return tj;
}

TEST(TokenizerHf, SentencePieceStyleBpe) {
  for (bool metaspace : {false, true}) {
    TempDir dir;
    write_json(dir.file("tokenizer.json"), spm_style_tokenizer_json(metaspace));
    const auto tok = Tokenizer::from_hf_dir(dir.path().string());
    // "ab ab" -> "▁ab▁ab": merges a+b, ▁+ab.
    EXPECT_EQ(tok->encode("ab ab", true, false), (std::vector<int32_t>{1, 264, 264})) << metaspace;
    // "é" is not in the vocabulary: its two bytes.
    EXPECT_EQ(tok->encode("\xC3\xA9", false, false), (std::vector<int32_t>{259, 3 + 0xC3, 3 + 0xA9})) << metaspace;
    EXPECT_EQ(tok->token_type(3), TokenType::Byte);
    for (std::string_view x : {"ab ab", "  a\xC3\xA9 b\n", "", "b"}) {
      EXPECT_EQ(tok->decode(tok->encode(x, true, false), true), x) << metaspace;
    }
  }
}

TEST(TokenizerHf, Errors) {
  TempDir dir;
  expect_error<FormatError>([&] { Tokenizer::from_hf_dir(dir.path().string()); }, "tokenizer.json");
  testing::write_text(dir.file("tokenizer.json"), "{ not json");
  expect_error<FormatError>([&] { Tokenizer::from_hf_dir(dir.path().string()); }, dir.file("tokenizer.json"),
                            {"invalid JSON"});
  json tj = bible_tokenizer_json();
  tj["model"]["type"] = "WordPiece";
  write_json(dir.file("tokenizer.json"), tj);
  expect_error<FormatError>([&] { Tokenizer::from_hf_dir(dir.path().string()); }, dir.file("tokenizer.json"),
                            {"WordPiece", "BPE"});
  tj = bible_tokenizer_json();
  tj["pre_tokenizer"] = {{"type", "UnicodeScripts"}};
  write_json(dir.file("tokenizer.json"), tj);
  expect_error<FormatError>([&] { Tokenizer::from_hf_dir(dir.path().string()); }, dir.file("tokenizer.json"),
                            {"UnicodeScripts"});
  tj = bible_tokenizer_json();
  tj["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}};
  write_json(dir.file("tokenizer.json"), tj);
  expect_error<FormatError>([&] { Tokenizer::from_hf_dir(dir.path().string()); }, "(unclosed");
  tj = bible_tokenizer_json();
  tj["model"]["merges"][5] = 42;
  write_json(dir.file("tokenizer.json"), tj);
  expect_error<FormatError>([&] { Tokenizer::from_hf_dir(dir.path().string()); }, dir.file("tokenizer.json"),
                            {"merge 42"});
  for (const json& bad_id : {json("1"), json(-1), json(nullptr), json(4294967296LL)}) {
    tj = bible_tokenizer_json();
    tj["added_tokens"] = json::array({{{"id", bad_id}, {"content", "<x>"}}});
    write_json(dir.file("tokenizer.json"), tj);
    expect_error<FormatError>([&] { Tokenizer::from_hf_dir(dir.path().string()); }, dir.file("tokenizer.json"),
                              {"has no token id"});
  }
  tj = bible_tokenizer_json();
  tj["added_tokens"] = json::array({"<x>"});
  write_json(dir.file("tokenizer.json"), tj);
  expect_error<FormatError>([&] { Tokenizer::from_hf_dir(dir.path().string()); }, dir.file("tokenizer.json"),
                            {"has no token id"});
  tj = bible_tokenizer_json();
  tj["added_tokens"] = json::array({{{"id", 100000000}, {"content", "<x>"}}});
  write_json(dir.file("tokenizer.json"), tj);
  expect_error<FormatError>([&] { Tokenizer::from_hf_dir(dir.path().string()); }, dir.file("tokenizer.json"),
                            {"ids must be dense"});
  tj = bible_tokenizer_json();
  tj["model"]["vocab"]["Ġthe"] = "x";
  write_json(dir.file("tokenizer.json"), tj);
  expect_error<FormatError>([&] { Tokenizer::from_hf_dir(dir.path().string()); }, dir.file("tokenizer.json"),
                            {"not a token id"});
}

}  // namespace
}  // namespace tpinfer
