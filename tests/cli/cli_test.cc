// The tpinfer binary as a user runs it: malformed model files give a clean
// error naming the file and exit code 1 (never a crash), and the commands that
// work print what they promise.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "model/synth.h"
#include "test_util.h"
#include "tokenizer/tokenizer_test_util.h"

namespace tpinfer {
namespace {

using testing::TempDir;

// Little-endian byte writer for hand-made files.
struct Bytes {
  std::string b;
  template <typename T>
  Bytes& put(T v) {
    char tmp[sizeof(T)];
    std::memcpy(tmp, &v, sizeof(T));
    b.append(tmp, sizeof(T));
    return *this;
  }
  Bytes& str(const std::string& s) {
    put<uint64_t>(s.size());
    b += s;
    return *this;
  }
  void save(const std::string& path) const { std::ofstream(path, std::ios::binary) << b; }
};

// A GGUF v3 file with one u32 metadata value and `tensors` F32 tensors of 8
// values at the given offsets, data section sized `data_bytes`.
Bytes gguf(uint64_t n_tensors_field, const std::vector<uint64_t>& offsets, uint64_t data_bytes) {
  Bytes f;
  f.b = "GGUF";
  f.put<uint32_t>(3).put<uint64_t>(n_tensors_field).put<uint64_t>(1);
  f.str("general.alignment").put<uint32_t>(4).put<uint32_t>(32);
  for (size_t i = 0; i < offsets.size(); ++i) {
    std::string name = "t";  // (built in two steps: GCC 12 warns falsely on "t" + to_string)
    name += std::to_string(i);
    f.str(name).put<uint32_t>(1).put<uint64_t>(8).put<uint32_t>(0).put<uint64_t>(offsets[i]);
  }
  while (f.b.size() % 32 != 0) f.b += '\0';
  f.b.append(data_bytes, '\x01');
  return f;
}

void expect_clean_error(const std::string& file, const std::string& what) {
  for (const std::string& cmd : {"inspect -m " + file, "run -m " + file + " -p hi -n 1"}) {
    std::string out;
    const int code = testing::run_command(testing::binary() + " " + cmd, &out);
    EXPECT_EQ(code, 1) << what << ": " << cmd << "\n" << out;
    EXPECT_NE(out.find("error: "), std::string::npos) << what << "\n" << out;
    EXPECT_NE(out.find(file), std::string::npos) << what << ": the message must name the file\n" << out;
    EXPECT_EQ(out.find("Sanitizer"), std::string::npos) << out;
  }
}

TEST(CliMalformed, EachGivesCleanErrorAndExit1) {
  TempDir dir;
  // Sanity: the hand-made file itself is fine for the reader (2 tensors, no overlap).
  const std::string good = dir.file("good.gguf");
  gguf(2, {0, 32}, 64).save(good);

  Bytes magic = gguf(2, {0, 32}, 64);
  magic.b[0] = 'X';
  magic.save(dir.file("magic.gguf"));
  expect_clean_error(dir.file("magic.gguf"), "wrong magic");

  const Bytes whole = gguf(2, {0, 32}, 64);
  for (size_t cut : {size_t{3}, size_t{10}, size_t{30}, whole.b.size() / 2, whole.b.size() - 1}) {
    Bytes t;
    t.b = whole.b.substr(0, cut);
    const std::string path = dir.file("cut" + std::to_string(cut) + ".gguf");
    t.save(path);
    expect_clean_error(path, "truncated at " + std::to_string(cut));
  }

  gguf(1, {4096}, 64).save(dir.file("offset.gguf"));
  expect_clean_error(dir.file("offset.gguf"), "tensor offset past the end");

  gguf(uint64_t{1} << 60, {0}, 64).save(dir.file("count.gguf"));
  expect_clean_error(dir.file("count.gguf"), "2^60 tensors");

  Bytes strlen_past = gguf(1, {0}, 64);
  const uint64_t huge = uint64_t{1} << 40;
  std::memcpy(&strlen_past.b[24], &huge, 8);  // the first key's length
  strlen_past.save(dir.file("strlen.gguf"));
  expect_clean_error(dir.file("strlen.gguf"), "string length past the end");

  gguf(2, {0, 0}, 64).save(dir.file("overlap.gguf"));
  expect_clean_error(dir.file("overlap.gguf"), "overlapping tensors");

  // safetensors whose JSON header is not JSON, inside an otherwise good HF folder.
  SynthSpec spec = testing::small_spec(Arch::Llama);
  write_synth_model(spec, dir.file("hf"));
  Bytes st;
  st.put<uint64_t>(16);
  st.b += "{not json at all";
  st.b.append(8, '\0');
  st.save((dir.path() / "hf" / "model.safetensors").string());
  for (const std::string& cmd : {"inspect -m " + dir.file("hf")}) {
    std::string out;
    EXPECT_EQ(testing::run_command(testing::binary() + " " + cmd, &out), 1) << out;
    EXPECT_NE(out.find("model.safetensors"), std::string::npos) << out;
    EXPECT_NE(out.find("JSON"), std::string::npos) << out;
  }
}

TEST(CliRun, JsonOutputAndStats) {
  TempDir dir;
  SynthSpec s = testing::small_spec(Arch::Llama);
  s.dtype = DType::Q8_0;
  write_synth_model(s, dir.file("m.gguf"));
  std::string out;
  ASSERT_EQ(testing::run_command(testing::binary() + " run -m " + dir.file("m.gguf") +
                                     " -p 'the rank' -n 12 --temperature 0 --ignore-eos --json -tp 2 2>/dev/null",
                                 &out),
            0)
      << out;
  const auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["tokens"].size(), 12u);
  EXPECT_GT(j["prompt_tokens"].size(), 1u);
  EXPECT_EQ(j["stats"]["tensor_parallel_size"], 2);
  EXPECT_EQ(j["stats"]["ranks"].size(), 2u);
  // 2 all-reduces per layer + 1 for the embedding, per generated token.
  EXPECT_DOUBLE_EQ(j["stats"]["decode_comm"]["all_reduces_per_token"].get<double>(), 2.0 * s.layers + 1);
  EXPECT_GT(j["stats"]["decode_comm"]["bytes_per_token"].get<double>(), 0.0);
  // Every rank's time in collectives during decode, and the least of them as a
  // share (what communication added on the critical path): at most the driver's.
  ASSERT_EQ(j["stats"]["decode_rank_collective_seconds"].size(), 2u);
  for (const auto& seconds : j["stats"]["decode_rank_collective_seconds"]) EXPECT_GT(seconds.get<double>(), 0.0);
  const double critical = j["stats"]["decode_critical_comm_share"].get<double>();
  EXPECT_GT(critical, 0.0);
  EXPECT_LE(critical, j["stats"]["decode_comm"]["collective_share"].get<double>());
}

TEST(CliRun, InvalidTensorParallelSizeListsValidOnes) {
  TempDir dir;
  write_synth_model(testing::small_spec(Arch::Llama), dir.file("m.gguf"));
  std::string out;
  EXPECT_EQ(testing::run_command(testing::binary() + " run -m " + dir.file("m.gguf") + " -p hi -tp 3", &out), 1);
  EXPECT_NE(out.find("tensor-parallel-size 3 does not divide 4 attention heads; valid: 1, 2, 4"), std::string::npos)
      << out;
}

// A MoE model end to end: synth presets, run in both layouts with the same
// greedy tokens, the expert load in the stats.
TEST(CliRun, MixtureOfExpertsBothLayouts) {
  TempDir dir;
  std::string out;
  ASSERT_EQ(testing::run_command(testing::binary() + " synth --preset tiny-mixtral --layers 1 -o " + dir.file("m.gguf"),
                                 &out),
            0)
      << out;
  std::vector<int> tokens[2];
  for (const bool ep : {false, true}) {
    ASSERT_EQ(testing::run_command(testing::binary() + " run -m " + dir.file("m.gguf") +
                                       " -p 'the rank' -n 8 --temperature 0 --ignore-eos --json -tp 2" +
                                       (ep ? " --enable-expert-parallel" : "") + " 2>/dev/null",
                                   &out),
              0)
        << out;
    const auto j = nlohmann::json::parse(out);
    tokens[ep ? 1 : 0] = j["tokens"].get<std::vector<int>>();
    EXPECT_EQ(j["stats"]["expert_parallel"], ep);
    ASSERT_EQ(j["stats"]["expert_load"].size(), 1u);  // one layer
    uint64_t routed = 0;
    for (const auto& e : j["stats"]["expert_load"][0]) routed += e.get<uint64_t>();
    // Prompt and all generated tokens but the last went through the layer, 2 experts each.
    EXPECT_EQ(routed, 2 * (j["prompt_tokens"].size() + 8 - 1));
    EXPECT_EQ(j["stats"]["ranks"][1]["experts"], ep ? nlohmann::json({4, 8}) : nlohmann::json({0, 8}));
  }
  EXPECT_EQ(tokens[0], tokens[1]);
  ASSERT_EQ(testing::run_command(testing::binary() + " run -m " + dir.file("m.gguf") +
                                     " -p hi -n 2 --enable-expert-parallel -tp 2",
                                 &out),
            0);
  EXPECT_NE(out.find("expert load (tokens per expert, all layers): "), std::string::npos) << out;
  EXPECT_NE(out.find("| max/mean "), std::string::npos) << out;
  EXPECT_EQ(testing::run_command(testing::binary() + " synth --preset nope -o " + dir.file("x.gguf"), &out), 1);
  EXPECT_NE(out.find("valid: tiny-mixtral, tiny-qwen2-moe, tiny-qwen3-moe"), std::string::npos) << out;
}

// ---- tokenize / detokenize / run --chat on the bible model, against the library.

std::string bible_gguf() { return test::shared_dir() + "/bible/bible-q8_0.gguf"; }

// One shell word: single quotes, with each ' written as '\''.
std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// stdout of `tpinfer ARGS` (stderr dropped); the test fails unless it exits 0.
std::string tpinfer_stdout(const std::string& args) {
  std::string out;
  const int code = testing::run_command("(" + testing::binary() + " " + args + ") 2>/dev/null", &out);
  EXPECT_EQ(code, 0) << args << "\n" << out;
  return out;
}

std::string ids_text(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) {
    if (!s.empty()) s += ' ';
    s += std::to_string(id);
  }
  return s;
}

// Texts a user types: ASCII, accents, CJK, emoji with a modifier, runs of
// spaces, an apostrophe, and the model's own special-token marker as text.
const std::vector<std::string>& cli_texts() {
  static const std::vector<std::string> t = {
      "In the beginning God created the heaven and the earth.",
      "  And   the LORD's word, créé \xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E \xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD\t!",
      "verily <|end_of_text|> 12345",
  };
  return t;
}

TEST(CliTokenize, MatchesTheLibraryAndRoundTrips) {
  const Tokenizer& tok = test::gguf_tokenizer(bible_gguf());
  for (const std::string& text : cli_texts()) {
    SCOPED_TRACE(text);
    const std::string m = "-m " + bible_gguf() + " ";
    const std::vector<int32_t> want = tok.encode(text, /*add_special=*/true, /*parse_special=*/false);
    ASSERT_GT(want.size(), 2u);
    EXPECT_EQ(want.front(), tok.bos());

    // Plain: the ids, space separated, one line.
    EXPECT_EQ(tpinfer_stdout("tokenize " + m + shell_quote(text)), ids_text(want) + "\n");
    // --no-bos drops only the BOS the model asks for.
    EXPECT_EQ(tpinfer_stdout("tokenize --no-bos " + m + shell_quote(text)),
              ids_text(tok.encode(text, false, false)) + "\n");
    // --special: the marker is one token, as the library gives it.
    EXPECT_EQ(tpinfer_stdout("tokenize --special " + m + shell_quote(text)),
              ids_text(tok.encode(text, true, true)) + "\n");

    // --json: {"tokens", "pieces"}, a piece per token, each the token's text.
    const auto j = nlohmann::json::parse(tpinfer_stdout("tokenize --json " + m + shell_quote(text)));
    EXPECT_EQ(j["tokens"].get<std::vector<int32_t>>(), want);
    ASSERT_EQ(j["pieces"].size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(j["pieces"][i].get<std::string>(), tok.token_text(want[i])) << i;

    // detokenize of those ids gives the text back (the BOS decodes to nothing),
    // as the library's decode does; plain ends with a newline.
    const std::vector<int32_t> body(want.begin() + 1, want.end());
    EXPECT_EQ(tok.decode(body), text);
    EXPECT_EQ(tpinfer_stdout("detokenize " + m + ids_text(body)), text + "\n");
    EXPECT_EQ(tpinfer_stdout("detokenize " + m + ids_text(want)), tok.decode(want) + "\n");
    const auto d = nlohmann::json::parse(tpinfer_stdout("detokenize --json " + m + ids_text(body)));
    EXPECT_EQ(d["text"].get<std::string>(), text);
  }
  // An id outside the vocabulary is an error, not a crash.
  std::string out;
  EXPECT_EQ(testing::run_command(testing::binary() + " detokenize -m " + bible_gguf() + " 5 4096", &out), 1) << out;
  EXPECT_NE(out.find("outside the vocabulary"), std::string::npos) << out;
}

// Vocabulary-only GGUF files (no tensors), as llama-tokenize takes them: every
// string of each vocabulary's test vectors tokenizes to the ids its Hugging Face
// tokenizer gave (no BOS, special tokens as text), one output line per text of
// one invocation, and detokenizes as the library decodes.
TEST(CliTokenize, VocabularyOnlyFilesGiveTheReferenceIds) {
  for (const std::string& name : test::vocab_names()) {
    SCOPED_TRACE(name);
    const std::string path = test::vocab_path(name);
    const std::vector<std::string> inputs = test::vocab_test_inputs(path);
    const std::vector<std::vector<int32_t>> expected = test::vocab_test_ids(path);
    ASSERT_EQ(inputs.size(), expected.size());
    ASSERT_FALSE(inputs.empty());
    std::string args = "tokenize --no-bos -m " + path + " --";
    for (const std::string& text : inputs) {
      args += ' ';
      args += shell_quote(text);
    }
    std::istringstream out(tpinfer_stdout(args));
    std::vector<std::string> lines;
    for (std::string line; std::getline(out, line);) lines.push_back(line);
    ASSERT_EQ(lines.size(), inputs.size());
    for (size_t i = 0; i < inputs.size(); ++i) {
      EXPECT_EQ(lines[i], ids_text(expected[i])) << "string " << i << ": \"" << inputs[i] << "\"";
    }
    // detokenize on the same file gives what the library decodes.
    const std::vector<int32_t>& ids = expected.back();
    EXPECT_EQ(tpinfer_stdout("detokenize -m " + path + " " + ids_text(ids)),
              test::vocab_tokenizer(name).decode(ids) + "\n");
  }
}

// run --chat: the prompt tokens are the chat template's rendering, tokenized
// with special tokens recognised, BOS added once. The bible GGUF has no chat
// template, so --chat uses ChatML; --chat-template FILE uses the file (here
// Llama 2's, which writes bos_token itself, so no second BOS is added).
TEST(CliRun, ChatPromptIsTheTemplatesRenderingTokenized) {
  const Tokenizer& tok = test::gguf_tokenizer(bible_gguf());
  ASSERT_TRUE(tok.chat_template().empty());
  const std::string bos = tok.token_text(tok.bos());
  auto prompt_tokens = [&](const std::string& extra) {
    const auto j = nlohmann::json::parse(tpinfer_stdout("run -m " + bible_gguf() + " -n 1 --temperature 0 --json --chat " +
                                                        extra + " -p " + shell_quote("Who begat Enos?")));
    return j["prompt_tokens"].get<std::vector<int32_t>>();
  };
  auto with_bos = [&](const std::vector<int32_t>& ids) {
    std::vector<int32_t> v = {tok.bos()};
    v.insert(v.end(), ids.begin(), ids.end());
    return v;
  };

  // ChatML, as Jinja2 renders the shared chatml.jinja: no BOS in the text, so
  // the tokenizer adds it.
  const std::string chatml = "<|im_start|>user\nWho begat Enos?<|im_end|>\n<|im_start|>assistant\n";
  EXPECT_EQ(prompt_tokens(""), with_bos(tok.encode(chatml, false, true)));
  const std::string chatml_sys =
      "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWho begat Enos?<|im_end|>\n<|im_start|>assistant\n";
  EXPECT_EQ(prompt_tokens("--system 'Be brief.'"), with_bos(tok.encode(chatml_sys, false, true)));

  // Llama 2's template with the model's BOS/EOS text: it starts with BOS,
  // which --chat recognises as the special token, once.
  const std::string file =
      testing::source_dir() + "/tests/tokenizer/data/templates/meta-llama-Llama-2-7b-chat-hf.jinja";
  const std::string rendered = bos + "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nWho begat Enos? [/INST]";
  const std::vector<int32_t> got = prompt_tokens("--system 'Be brief.' --chat-template " + file);
  EXPECT_EQ(got, tok.encode(rendered, false, true));
  ASSERT_FALSE(got.empty());
  EXPECT_EQ(got.front(), tok.bos());
  EXPECT_NE(got.size() > 1 ? got[1] : -1, tok.bos());
}

}  // namespace
}  // namespace tpinfer
