// libFuzzer harness: arbitrary chat template text rendering a fixed
// conversation (see fuzz_targets.h).
#include "fuzz_targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)tpinfer::fuzz::chat_template_source(data, size);
  return 0;
}
