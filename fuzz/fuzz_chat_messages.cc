// libFuzzer harness: arbitrary JSON conversations rendered by real chat
// templates (see fuzz_targets.h).
#include "fuzz_targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::vector<tpinfer::ChatTemplate> templates =
      tpinfer::fuzz::real_templates(std::string(TPINFER_SHARED_DIR) + "/models/templates");
  (void)tpinfer::fuzz::chat_template_messages(templates, data, size);
  return 0;
}
