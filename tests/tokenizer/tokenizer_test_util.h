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
