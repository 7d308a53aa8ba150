// Tensor element types. The numeric values are GGML's type ids, so a GGUF file's
// type field converts directly. Quantized types store blocks of `block_size`
// values in `type_size` bytes; the block layouts live in backend/cpu/quant.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace tpinfer {

enum class DType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  BF16 = 30,
};

struct DTypeInfo {
  DType type;
  std::string_view name;  // lower case, as on the command line: "q4_k"
  uint32_t block_size;    // values per block (1 for plain types)
  uint32_t type_size;     // bytes per block
  bool quantized;
};

// Info for a known type; nullopt for an id tpinfer does not know.
std::optional<DTypeInfo> dtype_info(uint32_t ggml_id);
const DTypeInfo& dtype_info(DType t);
std::string_view dtype_name(DType t);
// Parses "f32", "Q8_0", "bf16", ... (case-insensitive).
std::optional<DType> parse_dtype(std::string_view name);

// Bytes of a row of `n` values; n must be a multiple of the block size.
inline uint64_t row_bytes(DType t, uint64_t n) {
  const DTypeInfo& info = dtype_info(t);
  return n / info.block_size * info.type_size;
}

}  // namespace tpinfer
