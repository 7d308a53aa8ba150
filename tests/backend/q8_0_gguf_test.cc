// Bit-exactness against files made by GGUF's own tools: bible-q8_0.gguf holds
// the Q8_0 quantization (by the `gguf` Python package) of the BF16 weights in
// bible-bf16.gguf. Quantizing each BF16 row with our Q8_0 quantizer must give
// the very bytes of the Q8_0 file, on every instruction-set level; and the
// matmul of the Q8_0 file's weights must agree with the BF16 file's.
//
// The GGUF reader of formats/ is another engineer's work in progress, so this
// test walks the file with a deliberately minimal parser of its own (enough for
// these two well-formed files, no validation beyond bounds checks).
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/matmul.h"
#include "backend/cpu/quant.h"
#include "core/half.h"

namespace tpinfer::cpu {
namespace {

struct Tensor {
  uint32_t type = 0;
  std::vector<uint64_t> ne;  // GGUF order: ne[0] is the row length
  uint64_t offset = 0;       // from the start of the data section
};

struct MiniGguf {
  std::vector<uint8_t> bytes;
  std::map<std::string, Tensor> tensors;
  uint64_t data_start = 0;

  const uint8_t* data(const Tensor& t) const { return bytes.data() + data_start + t.offset; }
};

class Cursor {
 public:
  explicit Cursor(const std::vector<uint8_t>& b) : b_(b) {}
  template <typename T>
  T get() {
    if (pos_ + sizeof(T) > b_.size()) throw std::runtime_error("truncated");
    T v;
    std::memcpy(&v, b_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string str() {
    const uint64_t n = get<uint64_t>();
    if (pos_ + n > b_.size()) throw std::runtime_error("truncated");
    std::string s(reinterpret_cast<const char*>(b_.data() + pos_), n);
    pos_ += n;
    return s;
  }
  // Skips one metadata value of GGUF type `type`; returns it if it is an integer.
  uint64_t skip_value(uint32_t type) {
    static const int kSizes[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    if (type == 8) {
      str();
      return 0;
    }
    if (type == 9) {
      const uint32_t elem = get<uint32_t>();
      const uint64_t count = get<uint64_t>();
      for (uint64_t i = 0; i < count; ++i) skip_value(elem);
      return 0;
    }
    if (type > 12) throw std::runtime_error("bad metadata type");
    uint64_t v = 0;
    std::memcpy(&v, b_.data() + pos_, static_cast<size_t>(kSizes[type]));
    pos_ += static_cast<size_t>(kSizes[type]);
    return v;
  }
  size_t pos() const { return pos_; }

 private:
  const std::vector<uint8_t>& b_;
  size_t pos_ = 0;
};

MiniGguf read_gguf(const std::string& path) {
  MiniGguf g;
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  g.bytes.resize(static_cast<size_t>(in.tellg()));
  in.seekg(0);
  in.read(reinterpret_cast<char*>(g.bytes.data()), static_cast<std::streamsize>(g.bytes.size()));
  Cursor c(g.bytes);
  if (c.get<uint32_t>() != 0x46554747u) throw std::runtime_error(path + ": not GGUF");
  c.get<uint32_t>();  // version
  const uint64_t n_tensors = c.get<uint64_t>();
  const uint64_t n_kv = c.get<uint64_t>();
  uint64_t alignment = 32;
  for (uint64_t i = 0; i < n_kv; ++i) {
    const std::string key = c.str();
    const uint64_t v = c.skip_value(c.get<uint32_t>());
    if (key == "general.alignment") alignment = v;
  }
  for (uint64_t i = 0; i < n_tensors; ++i) {
    const std::string name = c.str();
    Tensor t;
    const uint32_t n_dims = c.get<uint32_t>();
    for (uint32_t d = 0; d < n_dims; ++d) t.ne.push_back(c.get<uint64_t>());
    t.type = c.get<uint32_t>();
    t.offset = c.get<uint64_t>();
    g.tensors[name] = t;
  }
  g.data_start = (c.pos() + alignment - 1) / alignment * alignment;
  return g;
}

std::string model_path(const char* file) { return std::string(TPINFER_SHARED_DIR) + "/models/bible/" + file; }

TEST(QuantGguf, Q8_0QuantizerReproducesGgufFileBytes) {
  const std::string bf16_path = model_path("bible-bf16.gguf"), q8_path = model_path("bible-q8_0.gguf");
  if (!std::ifstream(bf16_path) || !std::ifstream(q8_path)) GTEST_SKIP() << "bible model files not found";
  const MiniGguf bf16 = read_gguf(bf16_path), q8 = read_gguf(q8_path);
  int checked = 0;
  for (const auto& [name, tq] : q8.tensors) {
    if (tq.type != static_cast<uint32_t>(DType::Q8_0)) continue;
    const auto it = bf16.tensors.find(name);
    ASSERT_NE(it, bf16.tensors.end()) << name;
    const Tensor& tb = it->second;
    ASSERT_EQ(tb.type, static_cast<uint32_t>(DType::BF16)) << name;
    ASSERT_EQ(tb.ne, tq.ne) << name;
    const int64_t cols = static_cast<int64_t>(tq.ne[0]);
    const uint64_t rows = tq.ne.size() > 1 ? tq.ne[1] : 1;
    const uint64_t q_row = row_bytes(DType::Q8_0, static_cast<uint64_t>(cols));
    ASSERT_LE(q8.data_start + tq.offset + rows * q_row, q8.bytes.size()) << name;
    ASSERT_LE(bf16.data_start + tb.offset + rows * static_cast<uint64_t>(cols) * 2, bf16.bytes.size()) << name;
    std::vector<float> row(static_cast<size_t>(cols));
    std::vector<uint8_t> mine(q_row);
    for (uint64_t r = 0; r < rows; ++r) {
      dequantize_row_ref(DType::BF16, bf16.data(tb) + r * static_cast<uint64_t>(cols) * 2, row.data(), cols);
      const uint8_t* theirs = q8.data(tq) + r * q_row;
      quantize_row_ref(DType::Q8_0, row.data(), mine.data(), cols);
      ASSERT_EQ(0, std::memcmp(mine.data(), theirs, q_row)) << name << " row " << r << " (reference)";
      for (Isa isa : supported_isas()) {
        quantize_row(isa, DType::Q8_0, row.data(), mine.data(), cols);
        ASSERT_EQ(0, std::memcmp(mine.data(), theirs, q_row)) << name << " row " << r << " " << isa_name(isa);
      }
    }
    ++checked;
  }
  EXPECT_GE(checked, 8 * 7 + 2) << "expected every 2-D weight of the 8-layer model";
}

// The Q8_0 and BF16 versions of one projection give nearly the same matmul:
// Q8_0 weights differ from BF16 by at most half a step (1/254 of a block's max).
TEST(QuantGguf, Q8_0AndBf16WeightsAgreeInMatmul) {
  const std::string bf16_path = model_path("bible-bf16.gguf"), q8_path = model_path("bible-q8_0.gguf");
  if (!std::ifstream(bf16_path) || !std::ifstream(q8_path)) GTEST_SKIP() << "bible model files not found";
  const MiniGguf bf16 = read_gguf(bf16_path), q8 = read_gguf(q8_path);
  const std::string name = "blk.3.ffn_down.weight";
  ASSERT_TRUE(q8.tensors.count(name) && bf16.tensors.count(name));
  const Tensor& tq = q8.tensors.at(name);
  const Tensor& tb = bf16.tensors.at(name);
  const int64_t cols = static_cast<int64_t>(tq.ne[0]), rows = static_cast<int64_t>(tq.ne[1]);
  const WeightView wq = {DType::Q8_0, rows, cols, q8.data(tq), row_bytes(DType::Q8_0, static_cast<uint64_t>(cols))};
  const WeightView wb = {DType::BF16, rows, cols, bf16.data(tb), static_cast<uint64_t>(cols) * 2};
  std::mt19937 rng(41);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(cols * 2));
  for (float& v : x) v = normal(rng);
  std::vector<float> yq(static_cast<size_t>(rows * 2)), yb(yq.size());
  ThreadPool pool(2);
  MatmulScratch scratch;
  matmul(wq, x.data(), 2, yq.data(), pool, scratch);
  matmul(wb, x.data(), 2, yb.data(), pool, scratch);
  double err = 0.0, norm = 0.0;
  for (size_t i = 0; i < yq.size(); ++i) {
    err += (yq[i] - yb[i]) * static_cast<double>(yq[i] - yb[i]);
    norm += yb[i] * static_cast<double>(yb[i]);
  }
  EXPECT_LT(std::sqrt(err / norm), 0.01);  // weights and activations both at 8 bits
  EXPECT_GT(norm, 0.0);
}

}  // namespace
}  // namespace tpinfer::cpu
