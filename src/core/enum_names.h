// An enum's names, in declaration order (its values must run 0, 1, 2, ...):
// the one list that printing, parsing and the "valid: a, b, c" part of an
// error read, for the enums that appear in options, messages and files.
//
//   constexpr EnumNames<DeviceKind, 2> kDevices{{"cpu", "cuda"}};
//   kDevices[DeviceKind::Cuda]   -> "cuda"
//   kDevices.find("cpu")     -> DeviceKind::Cpu (nullopt for an unknown name)
//   kDevices.valid()         -> "cpu, cuda"
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace tpinfer {

template <typename E, size_t N>
struct EnumNames {
  std::array<const char*, N> names;

  // "?" for a value outside the list (a corrupt or newer enum value).
  constexpr const char* operator[](E value) const {
    const auto i = static_cast<size_t>(value);
    return i < N ? names[i] : "?";
  }
  std::optional<E> find(std::string_view name) const {
    for (size_t i = 0; i < N; ++i) {
      if (name == names[i]) return static_cast<E>(i);
    }
    return std::nullopt;
  }
  std::string valid() const {
    std::string out;
    for (const char* n : names) {
      if (!out.empty()) out += ", ";
      out += n;
    }
    return out;
  }
};

}  // namespace tpinfer
