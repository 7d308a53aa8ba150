#include "tokenizer/byte_level.h"

#include "core/utf8.h"

namespace tpinfer {

ByteLevelMap::ByteLevelMap() {
  decoded_.fill(-1);
  int next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    const int cp = printable ? b : next++;
    utf8::append(encoded_[b], static_cast<uint32_t>(cp));
    decoded_[cp] = static_cast<int16_t>(b);
  }
}

std::string ByteLevelMap::encode(std::string_view bytes) const {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) out += encoded_[static_cast<uint8_t>(c)];
  return out;
}

bool ByteLevelMap::decode(std::string_view text, std::string& out) const {
  for (size_t i = 0; i < text.size();) {
    const utf8::Char c = utf8::classify(text, i);
    if (c.kind != utf8::Kind::Complete) return false;
    const int b = byte_of(utf8::decode(text, i, c.len));
    if (b < 0) return false;
    out += static_cast<char>(b);
    i += c.len;
  }
  return true;
}

}  // namespace tpinfer
