// Tokenizer throughput on 1 MB of English: the King James validation text
// repeated to 1 MiB, encoded by the bible model's byte-level BPE, Llama 3's
// BPE (llama-bpe vocabulary) and Llama 2's SentencePiece. "Cold" empties the
// word caches before every pass; "Warm" keeps them. Reports bytes/s.
//
// The shared models folder is ../shared/models next to the source tree (as for
// the tests), or $TPINFER_SHARED_DIR/models.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>

#include "formats/gguf.h"
#include "shared_models.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/vocab_tokenizer.h"

namespace tpinfer {
namespace {

using bench::models_dir;

const std::string& one_megabyte() {
  static const std::string text = [] {
    std::ifstream in(models_dir() + "/bible/kjv-valid.txt", std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    const std::string chunk = ss.str();
    std::string t;
    while (!chunk.empty() && t.size() < (1u << 20)) t += chunk;
    t.resize(chunk.empty() ? 0 : 1u << 20);
    return t;
  }();
  return text;
}

const VocabTokenizer* tokenizer(const std::string& rel) {
  static std::map<std::string, std::unique_ptr<Tokenizer>> cache;
  auto& slot = cache[rel];
  if (!slot) slot = Tokenizer::from_gguf(*GgufFile::open(models_dir() + "/" + rel));
  return dynamic_cast<const VocabTokenizer*>(slot.get());
}

void encode_1mb(benchmark::State& state, const std::string& rel, bool cold) {
  const std::string& text = one_megabyte();
  const VocabTokenizer* tok = nullptr;
  try {
    tok = tokenizer(rel);
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    return;
  }
  if (text.empty()) {
    state.SkipWithError("kjv-valid.txt not found");
    return;
  }
  size_t n_tokens = 0;
  for (auto _ : state) {
    if (cold) {
      state.PauseTiming();
      if (tok->bpe() != nullptr) tok->bpe()->clear_cache();
      if (tok->spm() != nullptr) tok->spm()->clear_cache();
      state.ResumeTiming();
    }
    const std::vector<int32_t> ids = tok->encode(text, true, false);
    n_tokens = ids.size();
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(text.size()));
  state.counters["tokens"] = static_cast<double>(n_tokens);
}

BENCHMARK_CAPTURE(encode_1mb, BibleBpeCold, std::string("bible/bible-q8_0.gguf"), true)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(encode_1mb, BibleBpeWarm, std::string("bible/bible-q8_0.gguf"), false)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(encode_1mb, Llama3BpeCold, std::string("vocab/ggml-vocab-llama-bpe.gguf"), true)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(encode_1mb, Llama3BpeWarm, std::string("vocab/ggml-vocab-llama-bpe.gguf"), false)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(encode_1mb, Llama2SpmCold, std::string("vocab/ggml-vocab-llama-spm.gguf"), true)
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(encode_1mb, Llama2SpmWarm, std::string("vocab/ggml-vocab-llama-spm.gguf"), false)
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace tpinfer
