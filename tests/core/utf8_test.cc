// core/utf8: validation and U+FFFD replacement by maximal subparts (the
// reference StreamDecoder is checked against).
#include "core/utf8.h"

#include <gtest/gtest.h>

namespace tpinfer {
namespace {

TEST(Utf8, SanitizeMaximalSubparts) {
  EXPECT_EQ(utf8::sanitize("abc"), "abc");
  EXPECT_EQ(utf8::sanitize("\xF0\x9F\x98"), "\xEF\xBF\xBD");          // one truncated character
  EXPECT_EQ(utf8::sanitize("\xE0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD");  // E0 80 is never valid
  EXPECT_EQ(utf8::sanitize("\xF0\x9F\x41"),
            "\xEF\xBF\xBD"
            "A");
  EXPECT_EQ(utf8::sanitize("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // a surrogate
  EXPECT_EQ(utf8::sanitize("\xC3\xA9\xFF"), "\xC3\xA9\xEF\xBF\xBD");
  EXPECT_FALSE(utf8::is_valid("\xC0\xAF"));
  EXPECT_TRUE(utf8::is_valid("\xF4\x8F\xBF\xBF"));
  EXPECT_FALSE(utf8::is_valid("\xF4\x90\x80\x80"));
}

}  // namespace
}  // namespace tpinfer
