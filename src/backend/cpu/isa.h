// Instruction-set levels of the CPU kernels and how one is chosen.
//
// Levels are ordered: scalar < avx2 < avx512. A level is usable when the CPU has
// every feature its code paths use:
//   avx2:   AVX2, FMA, F16C
//   avx512: the avx2 set plus AVX-512 F, BW, VL, DQ and VNNI
// The level the dispatching routines use is the best usable one, capped by the
// environment variable TPINFER_ISA=scalar|avx2|avx512 when it is set (a cap above
// what the CPU has is no error: the CPU's best is used). It is decided once, on
// first use, and never changes afterwards. Tests and benchmarks that want a
// specific level call the explicit-level overloads in quant.h / matmul.h / ops.h.
#pragma once

#include <optional>
#include <string_view>
#include <vector>

namespace tpinfer::cpu {

enum class Isa : int { kScalar = 0, kAvx2 = 1, kAvx512 = 2 };

// "scalar", "avx2", "avx512".
const char* isa_name(Isa isa);
// Parses the names above (case-insensitive); nullopt for anything else.
std::optional<Isa> parse_isa(std::string_view name);

// The best level this CPU supports (cpuid, checked once).
Isa cpu_isa();
// Whether this CPU can run code of level `isa`.
bool isa_supported(Isa isa);
// Every supported level, lowest first (always starts with kScalar).
std::vector<Isa> supported_isas();

// The cap rule on its own, for tests: `env` is the value of TPINFER_ISA or null.
// Throws ConfigError naming the valid choices if `env` is set but not a level.
Isa resolve_isa(Isa cpu_best, const char* env);

// The level the dispatching routines use: resolve_isa(cpu_isa(), getenv("TPINFER_ISA")),
// computed once. Throws ConfigError (on every call) if TPINFER_ISA is invalid.
Isa dispatch_isa();

}  // namespace tpinfer::cpu
