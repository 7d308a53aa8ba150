// Random test strings that stress tokenizers: ASCII words and code, Latin
// accents (precomposed and with combining marks), CJK, Hangul, kana, emoji with
// ZWJ sequences, skin tones, flags and variation selectors, runs of mixed
// whitespace, and text that looks like broken bytes or escapes ("Ã©", "\xC3(",
// "<0xFF>", "ï»¿"). Always valid UTF-8.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "core/utf8.h"

namespace tpinfer::test {

inline uint32_t pick(std::mt19937& rng, uint32_t lo, uint32_t hi) {
  return std::uniform_int_distribution<uint32_t>(lo, hi)(rng);
}

inline void append_piece(std::mt19937& rng, std::string& s) {
  static const std::vector<std::string> words = {"the",    "Hello",  "world", "don't", "I'll",    "we've",
                                                 "HTTP",   "x86_64", "foo()", "a+b=c", "3.14159", "1234567",
                                                 "self.x", "<div>",  "'s",    "--"};
  static const std::vector<std::string> lookalikes = {"Ã©",      "\\xC3(",        "<0xFF>", "<0x0A>",      "ï»¿",
                                                      "\\u00e9", "&#233;",        "â€™",    "%E2%82%AC",   "<s>",
                                                      "</s>",    "<|endoftext|>", "<unk>",  "\xE2\x96\x81"};
  static const std::vector<uint32_t> spaces = {' ', ' ', ' ', '\t', '\n', '\r', 0xA0, 0x3000, 0x2028, 0x2003, 0x200B};
  switch (pick(rng, 0, 11)) {
    case 0:
    case 1:
      s += words[pick(rng, 0, words.size() - 1)];
      break;
    case 2:  // printable ASCII soup
      for (uint32_t n = pick(rng, 1, 6); n > 0; --n) s += static_cast<char>(pick(rng, 0x21, 0x7E));
      break;
    case 3:  // Latin-1 / Latin Extended-A letters
      for (uint32_t n = pick(rng, 1, 5); n > 0; --n) utf8::append(s, pick(rng, 0xC0, 0x17F));
      break;
    case 4:  // letters with combining marks
      for (uint32_t n = pick(rng, 1, 3); n > 0; --n) {
        s += static_cast<char>(pick(rng, 'a', 'z'));
        for (uint32_t m = pick(rng, 1, 3); m > 0; --m) utf8::append(s, pick(rng, 0x300, 0x36F));
      }
      break;
    case 5: {  // CJK, Hangul, kana, Cyrillic, Khmer
      static const uint32_t lo[] = {0x4E00, 0xAC00, 0x3041, 0x30A1, 0x0410, 0x1780};
      static const uint32_t hi[] = {0x9FFF, 0xD7A3, 0x3096, 0x30FA, 0x044F, 0x17DD};
      const int r = static_cast<int>(pick(rng, 0, 5));
      for (uint32_t n = pick(rng, 1, 4); n > 0; --n) utf8::append(s, pick(rng, lo[r], hi[r]));
      break;
    }
    case 6:  // emoji, ZWJ sequences, skin tones, variation selector
      utf8::append(s, pick(rng, 0x1F300, 0x1F6FF));
      if (pick(rng, 0, 1)) utf8::append(s, pick(rng, 0x1F3FB, 0x1F3FF));
      if (pick(rng, 0, 1)) {
        utf8::append(s, 0x200D);
        utf8::append(s, pick(rng, 0x1F466, 0x1F469));
      }
      if (pick(rng, 0, 2) == 0) utf8::append(s, 0xFE0F);
      break;
    case 7:  // a flag: two regional indicators
      utf8::append(s, pick(rng, 0x1F1E6, 0x1F1FF));
      utf8::append(s, pick(rng, 0x1F1E6, 0x1F1FF));
      break;
    case 8:
    case 9:  // whitespace runs
      for (uint32_t n = pick(rng, 1, 5); n > 0; --n) utf8::append(s, spaces[pick(rng, 0, spaces.size() - 1)]);
      break;
    case 10:
      s += lookalikes[pick(rng, 0, lookalikes.size() - 1)];
      break;
    default:  // any code point of the BMP or the supplementary planes (no surrogates)
      for (;;) {
        const uint32_t cp = pick(rng, 0x80, 0x10FFFF);
        if (cp < 0xD800 || cp > 0xDFFF) {
          utf8::append(s, cp);
          break;
        }
      }
  }
}

inline std::string random_text(std::mt19937& rng, uint32_t max_pieces = 12) {
  std::string s;
  for (uint32_t n = pick(rng, 0, max_pieces); n > 0; --n) append_piece(rng, s);
  return s;
}

}  // namespace tpinfer::test
