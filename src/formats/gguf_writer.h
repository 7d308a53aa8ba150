// Writes GGUF version 3 files (used by `tpinfer synth` and by tests that need
// exactly the edge case they test). Tensors are given in TensorInfo order
// (row-major shape, outermost first) with their bytes already encoded.
//
// Metadata is written in insertion order (set() on an existing key replaces its
// value in place). Tensor data starts at the first aligned offset after the
// header and each tensor is zero-padded to the alignment: 32, or the value of
// general.alignment (must be a u32 power of two). write() checks every value
// against its declared GgufType (range, kind, array element types), and every
// tensor's shape (1..4 dims, row length a multiple of the block size) against
// its byte count, throwing Error before anything is written.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "formats/gguf.h"

namespace tpinfer {

class GgufWriter {
 public:
  void set(std::string key, GgufValue value);
  // Convenience setters.
  void set_u32(std::string key, uint32_t v);
  void set_u64(std::string key, uint64_t v);
  void set_i32(std::string key, int32_t v);
  void set_f32(std::string key, float v);
  void set_bool(std::string key, bool v);
  void set_string(std::string key, std::string v);
  void set_strings(std::string key, std::vector<std::string> v);
  void set_f32s(std::string key, const std::vector<float>& v);
  void set_i32s(std::string key, const std::vector<int32_t>& v);

  void add_tensor(std::string name, DType type, std::vector<int64_t> shape, std::vector<uint8_t> bytes);

  // Writes the file (alignment 32 unless general.alignment was set). Throws Error.
  void write(const std::string& path) const;

  // Everything before the tensor data: header, metadata, tensor infos, padding.
  std::vector<uint8_t> header_bytes() const;

 private:
  uint64_t alignment() const;
  struct Tensor {
    std::string name;
    DType type;
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;
  };
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::vector<Tensor> tensors_;
};

}  // namespace tpinfer
