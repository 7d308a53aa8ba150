#include "tokenizer/tokenizer.h"

#include "core/error.h"

namespace tpinfer {

std::unique_ptr<Tokenizer> Tokenizer::load(const ModelSource& model) {
  if (model.gguf() != nullptr) return from_gguf(*model.gguf());
  if (!model.hf_dir().empty()) return from_hf_dir(model.hf_dir());
  throw FormatError(cat(model.path(), ": the model has no tokenizer"));
}

}  // namespace tpinfer
