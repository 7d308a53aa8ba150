// GGUF reader (versions 2 and 3). The whole file is memory-mapped; metadata and
// the tensor index are parsed and validated up front: every count, length, size
// and offset is checked against the file size before it is used, so a malformed
// or truncated file raises FormatError("<file>: offset N: expected ..., found ...")
// and never reads out of bounds or allocates more than the file could hold.
//
// Validated: magic, version (1 is rejected; 2 and 3 read), little-endian only;
// counts of key-value pairs, tensors and array elements against the bytes left
// (each element takes at least its minimum encoded size); string lengths; value
// and array element type ids; bool bytes (0 or 1); array nesting (at most
// kGgufMaxArrayDepth levels); duplicate keys and tensor names; general.alignment
// (u32, a power of two; default 32); tensor n_dims (1..4), dimensions (< 2^63,
// product without overflow), type ids (dtype_info), ne[0] a multiple of the
// block size, offsets a multiple of the alignment, data inside the file and no
// two tensors overlapping. Tensor bytes are row_bytes(ne[0]) x the other dims.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/mapped_file.h"
#include "formats/tensor_info.h"

namespace tpinfer {

enum class GgufType : uint32_t {
  U8 = 0,
  I8 = 1,
  U16 = 2,
  I16 = 3,
  U32 = 4,
  I32 = 5,
  F32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  U64 = 10,
  I64 = 11,
  F64 = 12,
};

std::string_view gguf_type_name(GgufType t);  // "u32", "string", ...

// Limits that keep a hostile file from exhausting the stack or memory (each
// array element costs sizeof(GgufValue) in memory, even a one-byte u8). Real
// models hold a few arrays of up to ~10^6 elements (tokens, merges, scores).
inline constexpr int kGgufMaxArrayDepth = 8;                   // arrays of arrays of ...
inline constexpr uint64_t kGgufMaxMetadataItems = 1ull << 24;  // array elements, all arrays together

struct GgufValue;
struct GgufArray {
  GgufType elem = GgufType::U8;
  std::vector<GgufValue> items;
};

// One metadata value. Integers of every width are held as int64_t or uint64_t
// (by signedness), floats as double; `type` keeps the exact on-disk type.
struct GgufValue {
  GgufType type = GgufType::U8;
  std::variant<uint64_t, int64_t, double, bool, std::string, GgufArray> value;

  std::optional<int64_t> as_int() const;   // any integer type (and bool)
  std::optional<double> as_float() const;  // any integer or float type
  const std::string* as_string() const;
  const GgufArray* as_array() const;
};

class GgufFile {
 public:
  // Opens and validates `path`. Throws FormatError on any malformed content, and
  // Error when the file cannot be opened or mapped.
  static std::unique_ptr<GgufFile> open(const std::string& path);

  const std::string& path() const { return file_->path(); }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t file_size() const { return file_->size(); }

  // Metadata in file order.
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return metadata_; }
  const GgufValue* find(std::string_view key) const;
  // Typed lookups: nullopt when the key is absent or holds another kind of value
  // (get_int: any integer type that fits in int64, not bool; get_float: any
  // integer or float type; get_bool: only bool).
  std::optional<int64_t> get_int(std::string_view key) const;
  std::optional<double> get_float(std::string_view key) const;
  std::optional<std::string> get_string(std::string_view key) const;
  std::optional<bool> get_bool(std::string_view key) const;

  // Tensors in file order; shapes in TensorInfo's row-major order (reversed ne[]);
  // data points into the mapping, which lives as long as this GgufFile.
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* tensor(std::string_view name) const;

 private:
  GgufFile() = default;
  std::unique_ptr<MappedFile> file_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::map<std::string, size_t, std::less<>> metadata_index_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;
};

}  // namespace tpinfer
