// libFuzzer harness: tpinfer::fuzz::request, the server's request parser on
// arbitrary request bodies (see fuzz_targets.h).
#include "fuzz_targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)tpinfer::fuzz::request(data, size);
  return 0;
}
