// libFuzzer harness: tpinfer::fuzz::hf_tokenizer (see fuzz_targets.h).
#include "fuzz_targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const tpinfer::fuzz::ScratchDir dir;
  (void)tpinfer::fuzz::hf_tokenizer(dir, data, size);
  return 0;
}
