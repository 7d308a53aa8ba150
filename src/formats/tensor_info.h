// A tensor as stored in a model file: name, type, shape and a view of its bytes
// inside the memory-mapped file. Readers check that the bytes lie inside the file
// before handing a TensorInfo out.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace tpinfer {

struct TensorInfo {
  std::string name;            // canonical (GGUF-style) name, e.g. "blk.0.attn_q.weight"
  DType type = DType::F32;
  // Row-major, outermost first (PyTorch order): a linear weight [out, in] is
  // {rows = out, cols = in}; a norm weight is {n}. GGUF's ne[] is the reverse.
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // into the mapped file
  uint64_t nbytes = 0;
  std::string file;     // file it lives in (for errors)
  uint64_t offset = 0;  // absolute byte offset of `data` in that file

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  int64_t rows() const { return shape.size() < 2 ? 1 : numel() / shape.back(); }
  int64_t cols() const { return shape.empty() ? 1 : shape.back(); }
};

}  // namespace tpinfer
