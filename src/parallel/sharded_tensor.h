// A rank's slice of one weight tensor, materialized straight from the mapped
// model file: a row range is a view into the mapping (no copy); a column range,
// or rows of several tensors fused into one matrix, is copied into memory the
// slice owns. Nothing here ever copies more than the rank's own slice.
#pragma once

#include <cstdint>
#include <vector>

#include "backend/cpu/matmul.h"
#include "formats/tensor_info.h"
#include "parallel/shard_plan.h"

namespace tpinfer {

class ShardedTensor {
 public:
  ShardedTensor() = default;
  // The slice of `t` described by `slice` (rows or columns of a 2-D tensor, or
  // all of it). Throws FormatError if a column range does not fall on the
  // tensor type's block boundary.
  static ShardedTensor load(const TensorInfo& t, const TensorSlice& slice);
  // Rows of several slices stacked into one matrix (e.g. gate and up, fused).
  static ShardedTensor concat_rows(const std::vector<ShardedTensor>& parts);

  // Stores the slice in the layout the CPU matmul reads fastest, if it has one
  // for this type and shape (cpu::can_interleave: Q4_0 / Q4_K / Q8_0, 8 rows or more);
  // the slice then owns that copy only (a view into the mapping is dropped).
  // Only for matrices used through cpu::matmul: afterwards row() must not be
  // called and view() is of layout kInterleaved8 (read it only via backend/cpu).
  void interleave_for_matmul();

  cpu::WeightView view() const { return {type_, rows_, cols_, data_, row_stride_, layout_}; }
  DType type() const { return type_; }
  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  // Row r in the plain layout (not after interleave_for_matmul()).
  const uint8_t* row(int64_t r) const { return data_ + static_cast<uint64_t>(r) * row_stride_; }
  // Bytes of weight data this rank holds for the slice.
  uint64_t bytes() const { return static_cast<uint64_t>(rows_) * row_bytes(type_, static_cast<uint64_t>(cols_)); }

 private:
  DType type_ = DType::F32;
  int64_t rows_ = 0;
  int64_t cols_ = 0;
  const uint8_t* data_ = nullptr;
  uint64_t row_stride_ = 0;
  cpu::WeightLayout layout_ = cpu::WeightLayout::kRows;
  std::vector<uint8_t> owned_;
};

// A 1-D tensor (norm weight, bias) or a range of it, widened to f32.
std::vector<float> load_vector_f32(const TensorInfo& t, Range range);
std::vector<float> load_vector_f32(const TensorInfo& t);

}  // namespace tpinfer
