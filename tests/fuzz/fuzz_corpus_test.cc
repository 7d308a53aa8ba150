// Every file of fuzz/corpus (the seeds, and the regression-* inputs the fuzzers
// found) fed through the same entry points as the libFuzzer harnesses
// (fuzz/fuzz_targets.h), in the normal test binary: a finding that was fixed
// stays fixed, under the sanitizer build too. The targets throw
// InvariantViolation or let a non-tpinfer exception escape on a finding, which
// fails the test; the resource-limit inputs must be rejected before allocating.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "../../fuzz/fuzz_targets.h"

namespace tpinfer {
namespace {

namespace fs = std::filesystem;

std::string corpus_dir(const std::string& harness) {
  return std::string(TPINFER_SOURCE_DIR) + "/fuzz/corpus/" + harness;
}
std::string shared_dir() { return std::string(TPINFER_SHARED_DIR); }

std::vector<uint8_t> read(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

// Runs `target` over every file of the harness's corpus; returns name -> result.
std::map<std::string, fuzz::Result> run_corpus(
    const std::string& harness, const std::function<fuzz::Result(const uint8_t*, size_t)>& target) {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(corpus_dir(harness))) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  EXPECT_GE(files.size(), 2u) << corpus_dir(harness);
  std::map<std::string, fuzz::Result> results;
  for (const fs::path& p : files) {
    SCOPED_TRACE(p.string());
    const std::vector<uint8_t> bytes = read(p);
    EXPECT_NO_THROW(results[p.filename().string()] = target(bytes.data(), bytes.size()));
  }
  return results;
}

TEST(FuzzCorpus, Gguf) {
  const fuzz::ScratchDir dir;
  const auto r = run_corpus("gguf", [&](const uint8_t* d, size_t n) { return fuzz::gguf(dir, d, n); });
  EXPECT_TRUE(r.at("synth-tiny-q8_0.gguf").accepted);
  EXPECT_TRUE(r.at("kv-every-type.gguf").accepted);
  EXPECT_TRUE(r.at("tensor-type12.gguf").accepted);  // q4_K
  // Counts the file cannot hold: rejected up front, naming the count.
  EXPECT_FALSE(r.at("limit-tensor-count-2e60.gguf").accepted);
  EXPECT_NE(r.at("limit-tensor-count-2e60.gguf").error.find("1152921504606846976"), std::string::npos);
  EXPECT_FALSE(r.at("limit-string-length-2e63.gguf").accepted);
  EXPECT_NE(r.at("limit-string-length-2e63.gguf").error.find("9223372036854775808"), std::string::npos);
  EXPECT_FALSE(r.at("limit-array-count-1e9.gguf").accepted);
  EXPECT_NE(r.at("limit-array-count-1e9.gguf").error.find("1000000000"), std::string::npos);
}

TEST(FuzzCorpus, Safetensors) {
  const fuzz::ScratchDir dir;
  const auto r =
      run_corpus("safetensors", [&](const uint8_t* d, size_t n) { return fuzz::safetensors(dir, d, n); });
  EXPECT_TRUE(r.at("three-dtypes.safetensors").accepted) << r.at("three-dtypes.safetensors").error;
  EXPECT_TRUE(r.at("synth-tiny-bf16.safetensors").accepted);
  // Found by fuzz_safetensors: a number past the double range (1e400) made
  // nlohmann throw out_of_range through SafetensorsFile::open.
  const fuzz::Result& overflow = r.at("regression-number-overflow.safetensors");
  EXPECT_FALSE(overflow.accepted);
  EXPECT_NE(overflow.error.find("offset 8: expected a JSON header"), std::string::npos) << overflow.error;
}

TEST(FuzzCorpus, HfFolder) {
  const fuzz::ScratchDir dir;
  const auto r = run_corpus("hf_folder", [&](const uint8_t* d, size_t n) { return fuzz::hf_folder(dir, d, n); });
  EXPECT_TRUE(r.at("llama-tiny").accepted) << r.at("llama-tiny").error;
  EXPECT_TRUE(r.at("llama-tiny-no-index").accepted) << r.at("llama-tiny-no-index").error;
  // The bible's index names shards that are not there.
  EXPECT_FALSE(r.at("bible-config-index-tokconfig").accepted);
  // The same overflow in config.json (read_json in model_source.cc).
  const fuzz::Result& overflow = r.at("regression-number-overflow");
  EXPECT_FALSE(overflow.accepted);
  EXPECT_NE(overflow.error.find("config.json: offset 0: expected JSON"), std::string::npos) << overflow.error;
}

TEST(FuzzCorpus, HfTokenizer) {
  const fuzz::ScratchDir dir;
  const auto r =
      run_corpus("hf_tokenizer", [&](const uint8_t* d, size_t n) { return fuzz::hf_tokenizer(dir, d, n); });
  EXPECT_TRUE(r.at("synth-tiny.json").accepted) << r.at("synth-tiny.json").error;
  EXPECT_TRUE(r.at("bpe-bytelevel.json").accepted) << r.at("bpe-bytelevel.json").error;
  // An added token whose "id" is a string (found by fuzz_hf_tokenizer, where
  // it escaped as a JSON type_error) is refused by name.
  const fuzz::Result& string_id = r.at("regression-added-token-id-string");
  EXPECT_FALSE(string_id.accepted);
  EXPECT_NE(string_id.error.find("has no token id"), std::string::npos) << string_id.error;
  // Id 2^31 - 1 among three tokens would have allocated 2^31 strings.
  const fuzz::Result& sparse = r.at("regression-sparse-token-id");
  EXPECT_FALSE(sparse.accepted);
  EXPECT_NE(sparse.error.find("ids must be dense"), std::string::npos) << sparse.error;
}

TEST(FuzzCorpus, Tokenizer) {
  const auto bible_gguf = GgufFile::open(shared_dir() + "/models/bible/bible-q8_0.gguf");
  const auto spm_gguf = GgufFile::open(shared_dir() + "/models/vocab/ggml-vocab-llama-spm.gguf");
  const auto bible = Tokenizer::from_gguf(*bible_gguf);
  const auto spm = Tokenizer::from_gguf(*spm_gguf);
  for (const auto* tok : {bible.get(), spm.get()}) {
    const auto r = run_corpus("tokenizer", [&](const uint8_t* d, size_t n) {
      return fuzz::tokenizer_text(*tok, tok == spm.get(), d, n);
    });
    for (const auto& [name, result] : r) EXPECT_TRUE(result.accepted) << name << ": " << result.error;
  }
}

TEST(FuzzCorpus, ChatTemplate) {
  const auto r = run_corpus("chat_template", fuzz::chat_template_source);
  EXPECT_TRUE(r.at("chatml.jinja").accepted) << r.at("chatml.jinja").error;
  EXPECT_TRUE(r.at("microsoft-Phi-3.5-mini-instruct.jinja").accepted) << r.at("microsoft-Phi-3.5-mini-instruct.jinja").error;
  // Found by fuzz_chat_template: a str.format field index or item index with
  // more digits than fit in 64 bits is Python's ValueError, not an
  // out_of_range from std::stoul/stoll escaping render().
  for (const char* name : {"regression-format-index-overflow", "regression-format-item-overflow"}) {
    EXPECT_NE(r.at(name).error.find("ValueError: Too many decimal digits in format string"), std::string::npos)
        << name << ": " << r.at(name).error;
  }
  // The same in an attribute path (map/sort attribute='...'): a plain lookup
  // that finds nothing.
  EXPECT_TRUE(r.at("regression-attribute-index-overflow").accepted) << r.at("regression-attribute-index-overflow").error;
}

TEST(FuzzCorpus, ChatMessages) {
  const std::vector<ChatTemplate> templates = fuzz::real_templates(shared_dir() + "/models/templates");
  const auto r = run_corpus("chat_messages", [&](const uint8_t* d, size_t n) {
    return fuzz::chat_template_messages(templates, d, n);
  });
  EXPECT_TRUE(r.at("tools.json").accepted) << r.at("tools.json").error;
  EXPECT_TRUE(r.at("plain.json").accepted) << r.at("plain.json").error;
}

TEST(FuzzCorpus, Request) {
  const auto r = run_corpus("request", fuzz::request);
  for (const char* name : {"completion.json", "completion-tokens.json", "chat.json", "tokenize.json", "detokenize.json"}) {
    EXPECT_TRUE(r.at(name).accepted) << name;
  }
}

}  // namespace
}  // namespace tpinfer
