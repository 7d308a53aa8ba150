#include "backend/cpu/isa.h"

#include <cctype>
#include <cstdlib>
#include <string>

#include "core/enum_names.h"
#include "core/error.h"

namespace tpinfer::cpu {
namespace {

Isa detect_cpu_isa() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  if (!avx2) return Isa::kScalar;
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                      __builtin_cpu_supports("avx512vnni");
  return avx512 ? Isa::kAvx512 : Isa::kAvx2;
#else
  return Isa::kScalar;
#endif
}

}  // namespace

constexpr EnumNames<Isa, 3> kIsas{{"scalar", "avx2", "avx512"}};

const char* isa_name(Isa isa) { return kIsas[isa]; }

std::optional<Isa> parse_isa(std::string_view name) {
  std::string lower(name);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return kIsas.find(lower);
}

Isa cpu_isa() {
  static const Isa best = detect_cpu_isa();
  return best;
}

bool isa_supported(Isa isa) { return static_cast<int>(isa) <= static_cast<int>(cpu_isa()); }

std::vector<Isa> supported_isas() {
  std::vector<Isa> out;
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512}) {
    if (isa_supported(isa)) out.push_back(isa);
  }
  return out;
}

Isa resolve_isa(Isa cpu_best, const char* env) {
  if (env == nullptr || *env == '\0') return cpu_best;
  const std::optional<Isa> cap = parse_isa(env);
  if (!cap) {
    throw ConfigError(cat("TPINFER_ISA=", env, " is not an instruction set; valid: scalar, avx2, avx512"));
  }
  return static_cast<int>(*cap) < static_cast<int>(cpu_best) ? *cap : cpu_best;
}

Isa dispatch_isa() {
  // A throwing initializer leaves the static uninitialized, so a bad value is
  // reported on every call rather than silently ignored after the first.
  static const Isa chosen = resolve_isa(cpu_isa(), std::getenv("TPINFER_ISA"));
  return chosen;
}

}  // namespace tpinfer::cpu
