// safetensors reader and writer. A file is an 8-byte little-endian header length,
// a JSON header {name: {dtype, shape, data_offsets}, "__metadata__": {...}} and
// the data. The reader maps the file and validates the header: its length (at
// most the file size less 8, and at most kSafetensorsMaxHeader), JSON syntax
// (nesting at most kSafetensorsMaxJsonDepth, no duplicate names), known dtypes
// (F32, F16, BF16; others are rejected naming the dtype and tensor), shapes of
// non-negative integers, data_offsets [begin, end] inside the data section,
// sizes equal to numel x dtype size, no two tensors overlapping, __metadata__ a
// string-to-string map. Any violation raises FormatError
// "<file>: offset N: expected ..., found ..." (N is 8, the header's start, for
// problems inside the JSON; the tensor's data offset for problems with its data).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/mapped_file.h"
#include "formats/tensor_info.h"

namespace tpinfer {

inline constexpr uint64_t kSafetensorsMaxHeader = 100ull << 20;  // bytes of JSON
inline constexpr int kSafetensorsMaxJsonDepth = 64;

class SafetensorsFile {
 public:
  // Maps and validates `path`. FormatError on malformed content; Error when the
  // file cannot be opened.
  static std::unique_ptr<SafetensorsFile> open(const std::string& path);

  const std::string& path() const { return file_->path(); }
  // Tensors in header order with the names as stored in the file (Hugging Face
  // names); data points into the mapping, which lives as long as this object.
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* tensor(std::string_view name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  SafetensorsFile() = default;
  std::unique_ptr<MappedFile> file_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> index_;
  std::map<std::string, std::string> metadata_;
};

// Writes __metadata__ (when set) then the tensors in the order added, data
// contiguous in that order; the JSON is padded with spaces to a multiple of 8
// bytes, as the reference implementation does. Throws Error on a bad dtype,
// shape/byte-count mismatch or a duplicate name.
class SafetensorsWriter {
 public:
  // type: F32, F16 or BF16; bytes little-endian, row-major.
  void add_tensor(std::string name, DType type, std::vector<int64_t> shape, std::vector<uint8_t> bytes);
  void set_metadata(std::string key, std::string value);
  void write(const std::string& path) const;
  // The padded JSON header write() would write.
  std::string header_json() const;

 private:
  struct Tensor {
    std::string name;
    DType type;
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;
  };
  std::vector<Tensor> tensors_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace tpinfer
