// libFuzzer harness: arbitrary bytes through two real tokenizers, the bible
// model's byte-level BPE and Llama's SentencePiece (see fuzz_targets.h).
#include "fuzz_targets.h"

namespace {

struct Tokenizers {
  std::unique_ptr<tpinfer::GgufFile> bible_gguf = tpinfer::GgufFile::open(std::string(TPINFER_SHARED_DIR) +
                                                                           "/models/bible/bible-q8_0.gguf");
  std::unique_ptr<tpinfer::GgufFile> spm_gguf =
      tpinfer::GgufFile::open(std::string(TPINFER_SHARED_DIR) + "/models/vocab/ggml-vocab-llama-spm.gguf");
  std::unique_ptr<tpinfer::Tokenizer> bible = tpinfer::Tokenizer::from_gguf(*bible_gguf);
  std::unique_ptr<tpinfer::Tokenizer> spm = tpinfer::Tokenizer::from_gguf(*spm_gguf);
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const Tokenizers t;
  (void)tpinfer::fuzz::tokenizer_text(*t.bible, /*spm=*/false, data, size);
  (void)tpinfer::fuzz::tokenizer_text(*t.spm, /*spm=*/true, data, size);
  return 0;
}
