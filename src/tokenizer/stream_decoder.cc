#include <algorithm>

#include "core/utf8.h"
#include "tokenizer/tokenizer.h"

namespace tpinfer {

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  std::string out;
  DecodeState state;
  for (int32_t id : ids) decode_token(id, skip_special, state, out);
  return out;
}

std::string StreamDecoder::push(int32_t id) {
  const bool skip = skip_special_ && std::find(keep_.begin(), keep_.end(), id) == keep_.end();
  tok_.decode_token(id, skip, state_, pending_);
  // Emit every complete character and replace every sequence that can never
  // become one; keep only a truncated character at the very end.
  std::string out;
  size_t i = 0;
  while (i < pending_.size()) {
    const utf8::Char c = utf8::classify(pending_, i);
    if (c.kind == utf8::Kind::Truncated) break;
    if (c.kind == utf8::Kind::Complete) {
      out.append(pending_, i, c.len);
    } else {
      out.append(utf8::kReplacement);
    }
    i += c.len;
  }
  pending_.erase(0, i);
  return out;
}

std::string StreamDecoder::finish() {
  std::string out = utf8::sanitize(pending_);
  pending_.clear();
  state_ = {};
  return out;
}

}  // namespace tpinfer
