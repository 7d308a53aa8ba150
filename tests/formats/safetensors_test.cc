#include "formats/safetensors.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "formats/format_test_util.h"

namespace tpinfer {
namespace {

using testing::expect_error;
using testing::TempDir;

TEST(SafetensorsRoundTrip, TensorsAndMetadata) {
  std::mt19937 rng(7);
  TempDir dir;
  const std::string path = dir.file("m.safetensors");
  SafetensorsWriter w;
  struct Expected {
    std::string name;
    DType type;
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;
  };
  std::vector<Expected> expected;
  const DType types[] = {DType::F32, DType::F16, DType::BF16};
  for (int i = 0; i < 24; ++i) {
    const DType type = types[i % 3];
    std::vector<int64_t> shape;
    const int dims = i % 5;  // 0-d (a scalar) up to 4-d
    uint64_t numel = 1;
    for (int d = 0; d < dims; ++d) {
      shape.push_back(static_cast<int64_t>(rng() % 5) + (i == 23 ? 0 : 1));  // the last one may be empty
      numel *= static_cast<uint64_t>(shape.back());
    }
    Expected e{cat("model.t", i, ".weight"), type, shape,
               testing::random_bytes(numel * dtype_info(type).type_size, rng)};
    w.add_tensor(e.name, e.type, e.shape, e.bytes);
    expected.push_back(std::move(e));
  }
  w.set_metadata("format", "pt");
  w.set_metadata("note", "a \"quoted\" value\n");
  w.write(path);

  const auto raw = testing::read_bytes(path);
  uint64_t n;
  std::memcpy(&n, raw.data(), 8);
  EXPECT_EQ(n % 8, 0u);
  EXPECT_EQ(raw[8], '{');
  EXPECT_EQ(n, w.header_json().size());

  const auto f = SafetensorsFile::open(path);
  EXPECT_EQ(f->path(), path);
  EXPECT_EQ(f->metadata().at("format"), "pt");
  EXPECT_EQ(f->metadata().at("note"), "a \"quoted\" value\n");
  ASSERT_EQ(f->tensors().size(), expected.size());
  for (size_t k = 0; k < expected.size(); ++k) {
    const TensorInfo& t = f->tensors()[k];
    EXPECT_EQ(t.name, expected[k].name);
    EXPECT_EQ(f->tensor(t.name), &t);
    EXPECT_EQ(t.type, expected[k].type);
    EXPECT_EQ(t.shape, expected[k].shape);
    EXPECT_EQ(t.file, path);
    ASSERT_EQ(t.nbytes, expected[k].bytes.size());
    EXPECT_TRUE(std::equal(t.data, t.data + t.nbytes, expected[k].bytes.begin())) << t.name;
    EXPECT_GE(t.offset, 8 + n);
    ASSERT_LE(t.offset + t.nbytes, raw.size());
    EXPECT_TRUE(std::equal(t.data, t.data + t.nbytes, raw.begin() + static_cast<std::ptrdiff_t>(t.offset)));
  }
  EXPECT_EQ(f->tensor("absent"), nullptr);
}

TEST(SafetensorsWriter, RejectsBadInput) {
  TempDir dir;
  {
    SafetensorsWriter w;
    w.add_tensor("q", DType::Q8_0, {32}, std::vector<uint8_t>(34));
    EXPECT_THROW(w.write(dir.file("x")), Error);
  }
  {
    SafetensorsWriter w;
    w.add_tensor("a", DType::F16, {3}, std::vector<uint8_t>(4));
    EXPECT_THROW(w.write(dir.file("x")), Error);
  }
  {
    SafetensorsWriter w;
    w.add_tensor("a", DType::F16, {1}, std::vector<uint8_t>(2));
    w.add_tensor("a", DType::F16, {1}, std::vector<uint8_t>(2));
    EXPECT_THROW(w.write(dir.file("x")), Error);
  }
}

TEST(SafetensorsBible, Shards) {
  const std::string dir = testing::bible_dir() + "/bible-bf16/";
  const auto a = SafetensorsFile::open(dir + "model-00001-of-00002.safetensors");
  const auto b = SafetensorsFile::open(dir + "model-00002-of-00002.safetensors");
  EXPECT_EQ(a->tensors().size() + b->tensors().size(), 1u + 8u * 9u + 2u);
  EXPECT_EQ(a->metadata().at("format"), "pt");
  const TensorInfo* embd = a->tensor("model.embed_tokens.weight");
  ASSERT_NE(embd, nullptr);
  EXPECT_EQ(embd->type, DType::BF16);
  EXPECT_EQ(embd->shape, (std::vector<int64_t>{4096, 256}));
  const TensorInfo* k = a->tensor("model.layers.0.self_attn.k_proj.weight");
  ASSERT_NE(k, nullptr);
  EXPECT_EQ(k->shape, (std::vector<int64_t>{128, 256}));
  const TensorInfo* head = b->tensor("lm_head.weight");
  ASSERT_NE(head, nullptr);
  EXPECT_EQ(head->shape, (std::vector<int64_t>{4096, 256}));
  EXPECT_EQ(b->tensor("model.norm.weight")->shape, (std::vector<int64_t>{256}));
}

// --- hostile files -----------------------------------------------------------

// A file from a header text and `data` bytes of data (value i*3+1 each).
std::vector<uint8_t> st_file(const std::string& header, size_t data, uint64_t claimed_len = ~uint64_t{0}) {
  std::vector<uint8_t> b;
  b.reserve(8 + header.size() + data);
  const uint64_t n = claimed_len == ~uint64_t{0} ? header.size() : claimed_len;
  for (int i = 0; i < 8; ++i) b.push_back(static_cast<uint8_t>(n >> (8 * i)));
  for (char c : header) b.push_back(static_cast<uint8_t>(c));
  for (size_t i = 0; i < data; ++i) b.push_back(static_cast<uint8_t>(i * 3 + 1));
  return b;
}

std::string expect_bad(const TempDir& dir, const std::vector<uint8_t>& bytes, std::vector<std::string> parts) {
  const std::string path = dir.file("bad.safetensors");
  testing::write_bytes(path, bytes);
  parts.push_back(": offset ");
  parts.push_back("expected");
  return expect_error<FormatError>([&] { SafetensorsFile::open(path); }, path, parts);
}

const char* kGood =
    R"({"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b":{"dtype":"BF16","shape":[4],"data_offsets":[16,24]}})";

TEST(SafetensorsHostile, HeaderLength) {
  TempDir dir;
  ASSERT_NO_THROW({
    testing::write_bytes(dir.file("good.safetensors"), st_file(kGood, 24));
    SafetensorsFile::open(dir.file("good.safetensors"));
  });
  expect_bad(dir, {1, 2, 3}, {"offset 0:", "8-byte header length"});
  expect_bad(dir, st_file(kGood, 24, 100000), {"offset 0:", "at most", "found 100000"});
  expect_bad(dir, st_file(kGood, 24, ~uint64_t{0} - 1), {"offset 0:", "file size less 8"});
  // Larger than the cap, yet inside the (sparse) file.
  const std::string big = dir.file("big.safetensors");
  testing::write_bytes(big, st_file(kGood, 0, kSafetensorsMaxHeader + 1));
  std::filesystem::resize_file(big, kSafetensorsMaxHeader + 64);
  expect_error<FormatError>([&] { SafetensorsFile::open(big); }, big, {"offset 0:", "at most 104857600 bytes"});
}

TEST(SafetensorsHostile, HeaderContent) {
  TempDir dir;
  expect_bad(dir, st_file("{\"a\": {\"dtype\": ", 0), {"header is not valid JSON"});
  expect_bad(dir, st_file("not json at all!", 0), {"offset 9:", "header is not valid JSON"});
  expect_bad(dir, st_file("", 0), {"header is not valid JSON"});
  expect_bad(dir, st_file("[1,2,3]  ", 0), {"JSON object", "found a JSON array"});
  expect_bad(dir, st_file(std::string(100, '[') + std::string(100, ']'), 0), {"nested at most"});
  expect_bad(
      dir,
      st_file(
          R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
          8),
      {"offset 8:", "'a' twice"});
  expect_bad(dir, st_file(R"({"__metadata__":{"format":3}})", 0), {"__metadata__ value of 'format'"});
  expect_bad(dir, st_file(R"({"__metadata__":[1]})", 0), {"__metadata__ to be an object"});
  expect_bad(dir, st_file(R"({"a":5})", 0), {"tensor 'a' to be an object"});
  expect_bad(dir, st_file(R"({"a":{"shape":[1],"data_offsets":[0,4]}})", 4), {"tensor 'a'", "dtype", "found none"});
  expect_bad(dir, st_file(R"({"a":{"dtype":"F32","data_offsets":[0,4]}})", 4), {"tensor 'a'", "shape"});
  expect_bad(dir, st_file(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4),
             {"tensor 'a'", "non-negative"});
  expect_bad(dir, st_file(R"({"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", 4), {"non-negative"});
  expect_bad(dir,
             st_file(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,4]}})", 4),
             {"fewer than 2^63"});
  expect_bad(dir, st_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", 4), {"data_offsets", "found [0]"});
  expect_bad(dir, st_file(R"({"a":{"dtype":"F32","shape":[1]}})", 4), {"data_offsets", "found none"});
}

TEST(SafetensorsHostile, Dtypes) {
  TempDir dir;
  for (const char* dt : {"I64", "F64", "F8_E4M3", "BOOL", "f32", ""}) {
    expect_bad(dir, st_file(cat(R"({"w":{"dtype":")", dt, R"(","shape":[1],"data_offsets":[0,8]}})"), 8),
               {"tensor 'w'", "F32, F16 or BF16", cat("'", dt, "'")});
  }
}

TEST(SafetensorsHostile, DataOffsets) {
  TempDir dir;
  // Past the end of the data section, reversed, huge.
  expect_bad(dir, st_file(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})", 16),
             {"offset 8:", "tensor 'a'", "within the data section", "found [8, 24]"});
  expect_bad(dir, st_file(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}})", 16), {"found [8, 4]"});
  expect_bad(
      dir,
      st_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[18446744073709551615,18446744073709551615]}})", 16),
      {"within the data section"});
  // Size that does not match the shape.
  const std::string h = R"({"a":{"dtype":"F16","shape":[3],"data_offsets":[0,8]}})";
  expect_bad(dir, st_file(h, 8),
             {cat("offset ", 8 + h.size(), ":"), "tensor 'a'", "found data_offsets [0, 8] (8 bytes)"});
  // Overlap.
  const std::string o =
      R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})";
  expect_bad(dir, st_file(o, 16), {cat("offset ", 8 + o.size() + 8, ":"), "tensor 'b'", "tensor 'a' ends", "overlap"});
  const std::string same =
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"BF16","shape":[4],"data_offsets":[0,8]}})";
  expect_bad(dir, st_file(same, 8), {"overlap"});
}

TEST(SafetensorsHostile, RandomCorruption) {
  TempDir dir;
  const auto base = st_file(cat(kGood, "    "), 24);
  std::mt19937 rng(5);
  const std::string path = dir.file("fuzz.safetensors");
  int rejected = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    auto b = base;
    const int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits && !b.empty(); ++e) {
      const size_t at = rng() % b.size();
      switch (rng() % 4) {
        case 0:
          b[at] = static_cast<uint8_t>(rng());
          break;
        case 1:
          b[at] = static_cast<uint8_t>("0123456789[]{}\",:"[rng() % 17]);
          break;
        case 2:
          b[at] ^= static_cast<uint8_t>(1u << (rng() % 8));
          break;
        default:
          b.resize(at);
          break;
      }
    }
    testing::write_bytes(path, b);
    try {
      SafetensorsFile::open(path);
    } catch (const FormatError& e) {
      ++rejected;
      ASSERT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
  }
  EXPECT_GT(rejected, 1000);
}

}  // namespace
}  // namespace tpinfer
