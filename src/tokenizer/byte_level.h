// The GPT-2 byte-to-unicode mapping used by byte-level BPE vocabularies: every
// byte is written as one printable code point, so that a vocabulary of strings
// can hold arbitrary bytes. Printable Latin-1 bytes (! .. ~, ¡ .. ¬, ® .. ÿ) map
// to themselves; the other 68 bytes map, in byte order, to U+0100 upwards
// (' ' -> 'Ġ' U+0120, '\n' -> 'Ċ' U+010A).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace tpinfer {

class ByteLevelMap {
 public:
  ByteLevelMap();

  // The UTF-8 text of the code point that stands for byte b.
  const std::string& encode_byte(uint8_t b) const { return encoded_[b]; }
  std::string encode(std::string_view bytes) const;

  // The byte a code point stands for, or -1 when it stands for none.
  int byte_of(uint32_t codepoint) const { return codepoint < decoded_.size() ? decoded_[codepoint] : -1; }
  // Maps byte-level text back to bytes. Returns false (and leaves out partial)
  // if some character is not a byte-level code point.
  bool decode(std::string_view text, std::string& out) const;

 private:
  std::array<std::string, 256> encoded_;
  std::array<int16_t, 324> decoded_;  // code points 0 .. 0x143
};

}  // namespace tpinfer
