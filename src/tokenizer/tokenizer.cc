#include "tokenizer/tokenizer.h"

#include <filesystem>

#include "core/error.h"
#include "formats/gguf.h"

namespace tpinfer {

std::unique_ptr<Tokenizer> Tokenizer::load(const ModelSource& model) {
  if (model.gguf() != nullptr) return from_gguf(*model.gguf());
  if (!model.hf_dir().empty()) return from_hf_dir(model.hf_dir());
  throw FormatError(cat(model.path(), ": the model has no tokenizer"));
}

std::unique_ptr<Tokenizer> Tokenizer::open(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) return from_hf_dir(path);
  return from_gguf(*GgufFile::open(path));
}

}  // namespace tpinfer
