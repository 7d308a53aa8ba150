// Shared helpers for the tokenizer tests: paths to the shared test data and a
// cache of loaded tokenizers (loading Llama 3's 280k merges takes a moment).
#pragma once

#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "formats/gguf.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/vocab_tokenizer.h"

namespace tpinfer::test {

inline std::string shared_dir() { return std::string(TPINFER_SHARED_DIR) + "/models"; }
inline std::string vocab_path(const std::string& name) { return shared_dir() + "/vocab/ggml-vocab-" + name + ".gguf"; }

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The vocabularies under models/vocab, by the NAME in ggml-vocab-NAME.gguf.
inline const std::vector<std::string>& vocab_names() {
  static const std::vector<std::string> names = {"llama-spm", "llama-bpe", "gpt-2", "qwen2",
                                                 "falcon",    "mpt",       "phi-3", "deepseek-llm"};
  return names;
}

// The test vectors beside a vocabulary file (from llama.cpp's models/ folder):
// the strings of VOCAB.inp, and the ids of each (one line of VOCAB.out, made by
// the model's Hugging Face tokenizer without BOS/EOS or special tokens).
inline std::vector<std::string> vocab_test_inputs(const std::string& vocab_file) {
  const std::string text = read_file(vocab_file + ".inp");
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> out;
  size_t pos = 0;
  for (size_t hit; (hit = text.find(sep, pos)) != std::string::npos; pos = hit + sep.size()) {
    out.push_back(text.substr(pos, hit - pos));
  }
  return out;
}

inline std::vector<std::vector<int32_t>> vocab_test_ids(const std::string& vocab_file) {
  std::istringstream in(read_file(vocab_file + ".out"));
  std::vector<std::vector<int32_t>> out;
  for (std::string line; std::getline(in, line);) {
    std::istringstream ls(line);
    std::vector<int32_t> ids;
    for (int32_t id; ls >> id;) ids.push_back(id);
    out.push_back(std::move(ids));
  }
  return out;
}

inline const VocabTokenizer& gguf_tokenizer(const std::string& path) {
  static std::mutex mu;
  static std::map<std::string, std::unique_ptr<Tokenizer>> cache;
  std::lock_guard lock(mu);
  auto& slot = cache[path];
  if (!slot) slot = Tokenizer::from_gguf(*GgufFile::open(path));
  return dynamic_cast<const VocabTokenizer&>(*slot);
}

inline const VocabTokenizer& vocab_tokenizer(const std::string& name) { return gguf_tokenizer(vocab_path(name)); }

}  // namespace tpinfer::test
