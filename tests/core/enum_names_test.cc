// EnumNames: names by value, values by name, the "valid:" list, and a value
// outside the list (a corrupt one read from a file) printed as "?".
#include "core/enum_names.h"

#include <gtest/gtest.h>

#include <cstdint>

namespace tpinfer {
namespace {

enum class Color : uint32_t { Red, Green, Blue };
constexpr EnumNames<Color, 3> kColors{{"red", "green", "blue"}};

TEST(EnumNames, NamesValuesAndTheValidList) {
  EXPECT_STREQ(kColors[Color::Green], "green");
  static_assert(std::string_view(kColors[Color::Blue]) == "blue");
  for (Color c : {Color::Red, Color::Green, Color::Blue}) EXPECT_EQ(kColors.find(kColors[c]), c);
  EXPECT_EQ(kColors.find("Green"), std::nullopt);  // case-sensitive
  EXPECT_EQ(kColors.find(""), std::nullopt);
  EXPECT_EQ(kColors.valid(), "red, green, blue");
  EXPECT_STREQ(kColors[static_cast<Color>(3)], "?");
  EXPECT_STREQ(kColors[static_cast<Color>(0xffffffffu)], "?");
}

}  // namespace
}  // namespace tpinfer
