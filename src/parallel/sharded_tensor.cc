#include "parallel/sharded_tensor.h"

#include <cstring>

#include "backend/cpu/quant.h"
#include "core/error.h"

namespace tpinfer {

ShardedTensor ShardedTensor::load(const TensorInfo& t, const TensorSlice& slice) {
  ShardedTensor s;
  s.type_ = t.type;
  const int64_t rows = t.rows(), cols = t.cols();
  const uint64_t stride = row_bytes(t.type, static_cast<uint64_t>(cols));
  switch (slice.kind) {
    case SplitKind::Replicated:
      s.rows_ = rows;
      s.cols_ = cols;
      s.data_ = t.data;
      s.row_stride_ = stride;
      break;
    case SplitKind::Rows:
      if (slice.range.begin < 0 || slice.range.end > rows || slice.range.begin > slice.range.end) {
        throw FormatError(cat(t.file, ": tensor ", t.name, " has ", rows, " rows; rows [", slice.range.begin, ", ",
                              slice.range.end, ") do not exist"));
      }
      s.rows_ = slice.range.size();
      s.cols_ = cols;
      s.data_ = t.data + static_cast<uint64_t>(slice.range.begin) * stride;
      s.row_stride_ = stride;
      break;
    case SplitKind::Cols: {
      const int64_t block = dtype_info(t.type).block_size;
      if (slice.range.begin < 0 || slice.range.end > cols || slice.range.begin % block != 0 ||
          slice.range.size() % block != 0) {
        throw FormatError(cat(t.file, ": tensor ", t.name, " (", dtype_name(t.type), ", ", cols,
                              " columns): columns [", slice.range.begin, ", ", slice.range.end,
                              ") do not fall on its ", block, "-value blocks"));
      }
      s.rows_ = rows;
      s.cols_ = slice.range.size();
      s.row_stride_ = row_bytes(t.type, static_cast<uint64_t>(s.cols_));
      const uint64_t skip = row_bytes(t.type, static_cast<uint64_t>(slice.range.begin));
      s.owned_.resize(static_cast<size_t>(s.row_stride_ * static_cast<uint64_t>(rows)));
      for (int64_t r = 0; r < rows; ++r) {
        std::memcpy(s.owned_.data() + static_cast<uint64_t>(r) * s.row_stride_,
                    t.data + static_cast<uint64_t>(r) * stride + skip, s.row_stride_);
      }
      s.data_ = s.owned_.data();
      break;
    }
  }
  return s;
}

void ShardedTensor::interleave_for_matmul() {
  const cpu::WeightView plain = view();
  if (!cpu::can_interleave(plain)) return;
  std::vector<uint8_t> packed(static_cast<size_t>(cpu::interleaved_size(plain)));
  const cpu::WeightView v = cpu::interleave_rows(plain, packed.data());
  owned_ = std::move(packed);
  data_ = owned_.data();
  row_stride_ = v.row_stride;
  layout_ = v.layout;
}

ShardedTensor ShardedTensor::concat_rows(const std::vector<ShardedTensor>& parts) {
  ShardedTensor s;
  if (parts.empty()) return s;
  s.type_ = parts[0].type_;
  s.cols_ = parts[0].cols_;
  s.row_stride_ = row_bytes(s.type_, static_cast<uint64_t>(s.cols_));
  for (const ShardedTensor& p : parts) {
    if (p.layout_ != cpu::WeightLayout::kRows) throw Error("concat_rows: a part is already interleaved");
    if (p.type_ != s.type_ || p.cols_ != s.cols_) {
      throw FormatError(cat("cannot fuse tensors of types ", dtype_name(s.type_), "/", dtype_name(p.type_),
                            " with ", s.cols_, "/", p.cols_, " columns"));
    }
    s.rows_ += p.rows_;
  }
  s.owned_.resize(static_cast<size_t>(s.row_stride_ * static_cast<uint64_t>(s.rows_)));
  uint8_t* out = s.owned_.data();
  for (const ShardedTensor& p : parts) {
    for (int64_t r = 0; r < p.rows_; ++r, out += s.row_stride_) std::memcpy(out, p.row(r), s.row_stride_);
  }
  s.data_ = s.owned_.data();
  return s;
}

std::vector<float> load_vector_f32(const TensorInfo& t, Range range) {
  if (dtype_info(t.type).quantized) {
    throw FormatError(cat(t.file, ": tensor ", t.name, " is ", dtype_name(t.type), "; expected f32, f16 or bf16"));
  }
  if (range.begin < 0 || range.end > t.numel() || range.begin > range.end) {
    throw FormatError(cat(t.file, ": tensor ", t.name, " has ", t.numel(), " values; [", range.begin, ", ",
                          range.end, ") do not exist"));
  }
  std::vector<float> out(static_cast<size_t>(range.size()));
  const uint64_t elem = dtype_info(t.type).type_size;
  cpu::dequantize_row(t.type, t.data + static_cast<uint64_t>(range.begin) * elem, out.data(), range.size());
  return out;
}

std::vector<float> load_vector_f32(const TensorInfo& t) { return load_vector_f32(t, {0, t.numel()}); }

}  // namespace tpinfer
