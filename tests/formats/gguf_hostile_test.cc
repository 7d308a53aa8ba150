// Malformed GGUF files: each must give FormatError naming the file and the
// offset, never a crash, an out-of-bounds read or a huge allocation.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <limits>
#include <random>

#include "formats/format_test_util.h"
#include "formats/gguf_cuts.h"
#include "formats/gguf.h"
#include "formats/gguf_writer.h"

namespace tpinfer {
namespace {

using testing::expect_error;
using testing::patch;
using testing::TempDir;

constexpr size_t kHeader = 24;  // magic, version, tensor count, metadata count

std::vector<uint8_t> f32_bytes(size_t n) {
  std::vector<uint8_t> b(n * 4);
  for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<uint8_t>(i * 7 + 1);
  return b;
}

// A file with no metadata and two F32 tensors "a" [2, 16] and "b" [16]; the
// positions of their info fields follow from the layout of a tensor info.
struct TwoTensors {
  std::vector<uint8_t> bytes;
  // tensor info "a": name at 24, n_dims at 24+9, ne at +13, type, offset
  static constexpr size_t a_info = kHeader;
  static constexpr size_t a_ndims = a_info + 8 + 1;
  static constexpr size_t a_ne0 = a_ndims + 4;
  static constexpr size_t a_ne1 = a_ne0 + 8;
  static constexpr size_t a_type = a_ne1 + 8;
  static constexpr size_t a_offset = a_type + 4;
  static constexpr size_t b_info = a_offset + 8;
  static constexpr size_t b_name = b_info + 8;
  static constexpr size_t b_ndims = b_name + 1;
  static constexpr size_t b_ne0 = b_ndims + 4;
  static constexpr size_t b_type = b_ne0 + 8;
  static constexpr size_t b_offset = b_type + 4;

  explicit TwoTensors(const TempDir& dir) {
    GgufWriter w;
    w.add_tensor("a", DType::F32, {2, 16}, f32_bytes(32));
    w.add_tensor("b", DType::F32, {16}, f32_bytes(16));
    w.write(dir.file("base.gguf"));
    bytes = testing::read_bytes(dir.file("base.gguf"));
    EXPECT_NO_THROW(GgufFile::open(dir.file("base.gguf")));
  }
};

// Writes `bytes` to a file in `dir` and expects GgufFile::open to throw
// FormatError naming the file, "offset" and each of `parts`.
std::string expect_bad(const TempDir& dir, const std::vector<uint8_t>& bytes, const std::vector<std::string>& parts,
                       const std::string& name = "bad.gguf") {
  const std::string path = dir.file(name);
  testing::write_bytes(path, bytes);
  std::vector<std::string> all = parts;
  all.push_back(": offset ");
  all.push_back("expected");
  return expect_error<FormatError>([&] { GgufFile::open(path); }, path, all);
}

TEST(GgufHostile, WrongMagicVersionAndEmpty) {
  TempDir dir;
  TwoTensors base(dir);
  auto b = base.bytes;
  b[3] = 'X';
  expect_bad(dir, b, {"offset 0:", "GGUF", "GGUX"});
  b = base.bytes;
  patch<uint32_t>(b, 4, 2);  // version 2 has the same layout as 3
  testing::write_bytes(dir.file("v2.gguf"), b);
  EXPECT_EQ(GgufFile::open(dir.file("v2.gguf"))->version(), 2u);
  patch<uint32_t>(b, 4, 1);
  expect_bad(dir, b, {"offset 4:", "version 1"});
  patch<uint32_t>(b, 4, 4);
  expect_bad(dir, b, {"offset 4:", "version 4"});
  patch<uint32_t>(b, 4, 0x03000000);  // a big-endian v3 file
  expect_bad(dir, b, {"big-endian"});
  expect_bad(dir, {}, {"offset 0:", "GGUF"});
  expect_bad(dir, {'G', 'G'}, {"offset 0:"});
}

TEST(GgufHostile, TruncatedBibleAtFiftyOffsets) {
  const std::string src = testing::bible_dir() + "/bible-q8_0.gguf";
  const auto whole = testing::read_bytes(src);
  const testing::GgufCuts c = testing::gguf_truncation_offsets(src);
  ASSERT_GT(c.first_data, 1000u);
  ASSERT_EQ(c.cuts.size(), 50u);
  TempDir dir;
  for (const uint64_t cut : c.cuts) {
    ASSERT_LT(cut, c.data_end);
    const std::string path = dir.file("cut.gguf");
    testing::write_bytes(path, whole.data(), cut);
    const std::string msg = expect_error<FormatError>([&] { GgufFile::open(path); }, path, {": offset ", "expected"});
    EXPECT_FALSE(msg.empty()) << "cut at " << cut;
  }
}

TEST(GgufHostile, CountsLargerThanTheFile) {
  TempDir dir;
  TwoTensors base(dir);
  auto b = base.bytes;
  patch<uint64_t>(b, 8, uint64_t{1} << 60);
  expect_bad(dir, b, {"offset 8:", "tensor count", "1152921504606846976"});
  b = base.bytes;
  patch<uint64_t>(b, 16, uint64_t{1} << 60);
  expect_bad(dir, b, {"offset 16:", "metadata count"});

  // A metadata array claiming 10^9 elements.
  GgufWriter w;
  w.set_i32s("a", {1, 2, 3});
  w.write(dir.file("arr.gguf"));
  auto arr = testing::read_bytes(dir.file("arr.gguf"));
  const size_t count_at = kHeader + 8 + 1 + 4 + 4;  // key, value type, element type
  ASSERT_EQ(arr[count_at], 3);
  patch<uint64_t>(arr, count_at, 1000000000);
  expect_bad(dir, arr, {cat("offset ", count_at, ":"), "array count", "1000000000"});
  // An array of strings: each needs at least 8 bytes.
  GgufWriter ws;
  ws.set_strings("s", {"x", "y"});
  ws.write(dir.file("strs.gguf"));
  auto strs = testing::read_bytes(dir.file("strs.gguf"));
  patch<uint64_t>(strs, count_at, strs.size() / 8);
  expect_bad(dir, strs, {"array count"});
}

TEST(GgufHostile, StringLengths) {
  TempDir dir;
  GgufWriter w;
  w.set_string("key", "value");
  w.write(dir.file("s.gguf"));
  const auto base = testing::read_bytes(dir.file("s.gguf"));
  const size_t key_len_at = kHeader;
  const size_t value_len_at = kHeader + 8 + 3 + 4;
  for (const uint64_t len : {uint64_t{base.size()}, uint64_t{1} << 63, ~uint64_t{0}}) {
    auto b = base;
    patch<uint64_t>(b, value_len_at, len);
    expect_bad(dir, b, {cat("offset ", value_len_at, ":"), cat(len, " bytes")});
    b = base;
    patch<uint64_t>(b, key_len_at, len);
    expect_bad(dir, b, {cat("offset ", key_len_at, ":"), "metadata key"});
  }
  // A tensor name running past the end.
  TwoTensors two(dir);
  auto b = two.bytes;
  patch<uint64_t>(b, TwoTensors::b_info, uint64_t{1} << 63);
  expect_bad(dir, b, {cat("offset ", TwoTensors::b_info, ":"), "name of tensor #1"});
}

TEST(GgufHostile, TensorInfos) {
  TempDir dir;
  TwoTensors base(dir);
  using T = TwoTensors;
  auto b = base.bytes;
  patch<uint32_t>(b, T::b_ndims, 7);
  expect_bad(dir, b, {cat("offset ", T::b_ndims, ":"), "n_dims in 1..4", "found 7"});
  patch<uint32_t>(b, T::b_ndims, 0);
  expect_bad(dir, b, {"found 0"});
  for (const uint32_t id : {4u, 31u, 99u, 0xffffffffu}) {
    b = base.bytes;
    patch<uint32_t>(b, T::b_type, id);
    expect_bad(dir, b, {cat("offset ", T::b_type, ":"), "known tensor type id", cat("found ", id)});
  }
  // Q8_0 rows must hold whole 32-value blocks.
  b = base.bytes;
  patch<uint32_t>(b, T::a_type, static_cast<uint32_t>(DType::Q8_0));
  expect_bad(dir, b, {"multiple of 32", "found 16"});
  // Dimensions of 2^63 and products that overflow.
  b = base.bytes;
  patch<uint64_t>(b, T::a_ne1, uint64_t{1} << 63);
  expect_bad(dir, b, {cat("offset ", T::a_ne1, ":"), "below 2^63"});
  patch<uint64_t>(b, T::a_ne0, uint64_t{1} << 40);
  patch<uint64_t>(b, T::a_ne1, uint64_t{1} << 40);
  expect_bad(dir, b, {"overflows"});
  // Duplicate names.
  b = base.bytes;
  b[T::b_name] = 'a';
  expect_bad(dir, b, {cat("offset ", T::b_info, ":"), "unique tensor names", "'a' twice"});
}

TEST(GgufHostile, TensorDataRanges) {
  TempDir dir;
  TwoTensors base(dir);
  using T = TwoTensors;
  for (const uint64_t off : {uint64_t{1} << 40, ~uint64_t{31}, uint64_t{160}}) {
    auto b = base.bytes;
    patch<uint64_t>(b, T::b_offset, off);
    expect_bad(dir, b, {cat("offset ", T::b_offset, ":"), "tensor 'b'", "past the end of the file"});
  }
  auto b = base.bytes;
  patch<uint64_t>(b, T::b_offset, 4);
  expect_bad(dir, b, {cat("offset ", T::b_offset, ":"), "multiple of the alignment 32", "found 4"});
  // Overlaps: "b" moved into "a" (128 bytes at 0), or both at the same place.
  for (const uint64_t off : {uint64_t{0}, uint64_t{32}, uint64_t{96}}) {
    b = base.bytes;
    patch<uint64_t>(b, T::b_offset, off);
    expect_bad(dir, b, {"overlap"});
  }
  b = base.bytes;
  patch<uint64_t>(b, T::a_offset, 128);  // "a" after "b": "a" runs past the end
  patch<uint64_t>(b, T::b_offset, 0);
  expect_bad(dir, b, {"tensor 'a'"});
}

TEST(GgufHostile, MetadataValues) {
  TempDir dir;
  // general.alignment: not a power of two, zero, or of the wrong type.
  GgufWriter w;
  w.set_u32("general.alignment", 32);
  w.add_tensor("t", DType::F32, {8}, f32_bytes(8));
  w.write(dir.file("a.gguf"));
  const auto base = testing::read_bytes(dir.file("a.gguf"));
  const size_t value_at = kHeader + 8 + 17 + 4;
  for (const uint32_t a : {48u, 0u, 3u}) {
    auto b = base;
    patch<uint32_t>(b, value_at, a);
    expect_bad(dir, b, {cat("offset ", value_at, ":"), "power of two", cat("found ", a)});
  }
  GgufWriter w64;
  w64.set_u64("general.alignmenX", 32);
  w64.write(dir.file("a64.gguf"));
  auto b = testing::read_bytes(dir.file("a64.gguf"));
  b[kHeader + 8 + 16] = 't';
  expect_bad(dir, b, {"general.alignment of type u32", "found type u64"});

  // Unknown value type, unknown array element type, bool that is not 0/1.
  GgufWriter wt;
  wt.set_bool("k", true);
  wt.write(dir.file("t.gguf"));
  const auto tb = testing::read_bytes(dir.file("t.gguf"));
  const size_t type_at = kHeader + 8 + 1;
  b = tb;
  patch<uint32_t>(b, type_at, 13);
  expect_bad(dir, b, {cat("offset ", type_at, ":"), "value type", "found 13"});
  b = tb;
  b[type_at + 4] = 2;
  expect_bad(dir, b, {"bool", "found 2"});
  GgufWriter wa;
  wa.set_i32s("k", {1});
  wa.write(dir.file("ta.gguf"));
  b = testing::read_bytes(dir.file("ta.gguf"));
  patch<uint32_t>(b, type_at + 4, 77);
  expect_bad(dir, b, {"array element type", "found 77"});

  // Duplicate keys.
  GgufWriter wd;
  wd.set_i32("a", 1);
  wd.set_i32("b", 2);
  wd.write(dir.file("d.gguf"));
  b = testing::read_bytes(dir.file("d.gguf"));
  const size_t second_key = kHeader + 8 + 1 + 4 + 4;
  ASSERT_EQ(b[second_key + 8], 'b');
  b[second_key + 8] = 'a';
  expect_bad(dir, b, {cat("offset ", second_key, ":"), "unique metadata keys", "'a' twice"});
}

TEST(GgufHostile, NestingDepth) {
  TempDir dir;
  // Hand-made: one key whose value is `levels` nested arrays of one element,
  // the innermost an empty u8 array.
  auto file = [](int levels) {
    std::vector<uint8_t> b;
    auto put32 = [&](uint32_t v) {
      for (int i = 0; i < 4; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
    };
    auto put64 = [&](uint64_t v) {
      for (int i = 0; i < 8; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
    };
    b.insert(b.end(), {'G', 'G', 'U', 'F'});
    put32(3);
    put64(0);
    put64(1);
    put64(1);
    b.push_back('k');
    put32(static_cast<uint32_t>(GgufType::ARRAY));
    for (int l = 0; l < levels - 1; ++l) {
      put32(static_cast<uint32_t>(GgufType::ARRAY));
      put64(1);
    }
    put32(static_cast<uint32_t>(GgufType::U8));
    put64(0);
    return b;
  };
  TempDir d;
  testing::write_bytes(d.file("ok.gguf"), file(kGgufMaxArrayDepth));
  const auto ok = GgufFile::open(d.file("ok.gguf"));
  const GgufValue* v = ok->find("k");
  for (int l = 0; l < kGgufMaxArrayDepth - 1; ++l) v = &v->as_array()->items.at(0);
  EXPECT_EQ(v->as_array()->elem, GgufType::U8);
  expect_bad(dir, file(kGgufMaxArrayDepth + 1), {"nested at most 8 deep"});
  expect_bad(dir, file(100000), {"nested at most 8 deep"});
}

// More array elements than kGgufMaxMetadataItems, in a (sparse) file large
// enough to hold them: rejected before anything is allocated for them.
TEST(GgufHostile, MetadataElementBudget) {
  TempDir dir;
  GgufWriter w;
  w.set_i32s("a", {1});
  w.write(dir.file("b.gguf"));
  auto b = testing::read_bytes(dir.file("b.gguf"));
  const size_t type_at = kHeader + 8 + 1 + 4, count_at = type_at + 4;
  patch<uint32_t>(b, type_at, static_cast<uint32_t>(GgufType::U8));
  patch<uint64_t>(b, count_at, kGgufMaxMetadataItems + 1);
  const std::string path = dir.file("big.gguf");
  testing::write_bytes(path, b);
  std::filesystem::resize_file(path, kGgufMaxMetadataItems + 4096);
  expect_error<FormatError>(
      [&] { GgufFile::open(path); }, path,
      {cat("offset ", count_at, ":"), cat("at most ", kGgufMaxMetadataItems, " metadata array elements")});
}

// Random corruption of a small valid file: every outcome is a successful open
// or a FormatError; never a crash or another exception (ASan/UBSan watch this).
TEST(GgufHostile, RandomCorruption) {
  TempDir dir;
  GgufWriter w;
  w.set_string("general.architecture", "llama");
  w.set_strings("tokenizer.ggml.tokens", {"a", "bb", "ccc"});
  w.set_f32s("f", {1.0f, 2.0f});
  w.set("nested", GgufValue{GgufType::ARRAY,
                            GgufArray{GgufType::ARRAY,
                                      {GgufValue{GgufType::ARRAY,
                                                 GgufArray{GgufType::U16, {GgufValue{GgufType::U16, uint64_t{7}}}}}}}});
  w.add_tensor("a", DType::Q8_0, {2, 32}, f32_bytes(17));
  w.add_tensor("b", DType::F16, {3, 4}, f32_bytes(6));
  w.write(dir.file("base.gguf"));
  const auto base = testing::read_bytes(dir.file("base.gguf"));
  std::mt19937 rng(99);
  const std::string path = dir.file("fuzz.gguf");
  int opened = 0, rejected = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    auto b = base;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      const size_t at = rng() % b.size();
      switch (rng() % 3) {
        case 0:
          b[at] = static_cast<uint8_t>(rng());
          break;
        case 1:
          b[at] ^= static_cast<uint8_t>(1u << (rng() % 8));
          break;
        default:
          b.resize(at);
          break;
      }
      if (b.empty()) break;
    }
    testing::write_bytes(path, b);
    try {
      GgufFile::open(path);
      ++opened;
    } catch (const FormatError& e) {
      ++rejected;
      ASSERT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
  }
  EXPECT_GT(rejected, 1000);
  EXPECT_GT(opened, 10);  // bytes inside tensor data or string contents change nothing structural
}

}  // namespace
}  // namespace tpinfer
