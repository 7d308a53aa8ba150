#include "formats/gguf.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <type_traits>
#include <variant>

#include "formats/format_test_util.h"
#include "formats/gguf_writer.h"

namespace tpinfer {
namespace {

using testing::expect_error;
using testing::TempDir;

// Structural equality of two metadata values, exact on-disk type included.
bool same_value(const GgufValue& a, const GgufValue& b) {
  if (a.type != b.type || a.value.index() != b.value.index()) return false;
  if (const GgufArray* x = a.as_array()) {
    const GgufArray* y = b.as_array();
    if (x->elem != y->elem || x->items.size() != y->items.size()) return false;
    for (size_t i = 0; i < x->items.size(); ++i) {
      if (!same_value(x->items[i], y->items[i])) return false;
    }
    return true;
  }
  return std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, GgufArray>) {
          return false;  // handled above
        } else {
          return x == std::get<T>(b.value);
        }
      },
      a.value);
}

GgufValue arr(GgufType elem, std::vector<GgufValue> items) {
  return {GgufType::ARRAY, GgufArray{elem, std::move(items)}};
}

// One random value of every scalar type, and arrays of each, nested arrays too.
std::vector<std::pair<std::string, GgufValue>> random_metadata(std::mt19937& rng) {
  std::uniform_int_distribution<int64_t> any;
  auto u = [&](int bits) { return static_cast<uint64_t>(any(rng)) >> (64 - bits); };
  auto i = [&](int bits) { return static_cast<int64_t>(u(bits)) - (bits == 64 ? 0 : int64_t{1} << (bits - 1)); };
  std::uniform_real_distribution<float> real(-1e6f, 1e6f);
  auto scalar = [&](GgufType t) -> GgufValue {
    switch (t) {
      case GgufType::U8:
        return {t, u(8)};
      case GgufType::I8:
        return {t, i(8)};
      case GgufType::U16:
        return {t, u(16)};
      case GgufType::I16:
        return {t, i(16)};
      case GgufType::U32:
        return {t, u(32)};
      case GgufType::I32:
        return {t, i(32)};
      case GgufType::U64:
        return {t, u(64)};
      case GgufType::I64:
        return {t, static_cast<int64_t>(u(64))};
      case GgufType::F32:
        return {t, double{real(rng)}};
      case GgufType::F64:
        return {t, static_cast<double>(real(rng)) * 1e-3 + 1e-9};
      case GgufType::BOOL:
        return {t, (rng() & 1) == 1};
      case GgufType::STRING: {
        std::string s(rng() % 40, ' ');
        for (char& c : s) c = static_cast<char>(rng());  // any bytes, NULs included
        return {t, s};
      }
      case GgufType::ARRAY:
        break;
    }
    return {};
  };
  const GgufType scalars[] = {GgufType::U8,     GgufType::I8,  GgufType::U16, GgufType::I16,
                              GgufType::U32,    GgufType::I32, GgufType::F32, GgufType::BOOL,
                              GgufType::STRING, GgufType::U64, GgufType::I64, GgufType::F64};
  std::vector<std::pair<std::string, GgufValue>> md;
  for (GgufType t : scalars) {
    md.emplace_back(std::string("scalar.") + std::string(gguf_type_name(t)), scalar(t));
    std::vector<GgufValue> items;
    const size_t n = 1 + rng() % 20;
    for (size_t k = 0; k < n; ++k) items.push_back(scalar(t));
    md.emplace_back(std::string("array.") + std::string(gguf_type_name(t)), arr(t, items));
    md.emplace_back(std::string("empty.") + std::string(gguf_type_name(t)), arr(t, {}));
  }
  // Arrays of arrays: a ragged 2-D i32 table and a 3-deep string nest.
  std::vector<GgufValue> rows;
  for (int r = 0; r < 4; ++r) {
    std::vector<GgufValue> row;
    for (int c = 0; c <= r; ++c) row.push_back(scalar(GgufType::I32));
    rows.push_back(arr(GgufType::I32, row));
  }
  md.emplace_back("nested.i32", arr(GgufType::ARRAY, rows));
  GgufValue deep = arr(GgufType::STRING, {scalar(GgufType::STRING), scalar(GgufType::STRING)});
  for (int d = 0; d < 6; ++d) deep = arr(GgufType::ARRAY, {deep, deep});
  md.emplace_back("nested.deep", deep);
  md.emplace_back("nested.empty", arr(GgufType::ARRAY, {}));
  md.emplace_back("", scalar(GgufType::U8));  // an empty key is legal
  std::shuffle(md.begin(), md.end(), rng);    // insertion order must survive
  return md;
}

TEST(GgufRoundTrip, EveryMetadataTypeAndTensorType) {
  std::mt19937 rng(1234);
  for (const uint32_t alignment : {0u, 1u, 64u, 4096u}) {  // 0: writer's default (32)
    TempDir dir;
    const std::string path = dir.file("model.gguf");
    GgufWriter w;
    const auto md = random_metadata(rng);
    for (const auto& [k, v] : md) w.set(k, v);
    if (alignment != 0) w.set_u32("general.alignment", alignment);
    struct Expected {
      std::string name;
      DType type;
      std::vector<int64_t> shape;
      std::vector<uint8_t> bytes;
    };
    std::vector<Expected> expected;
    for (uint32_t id = 0; id < 64; ++id) {
      const std::optional<DTypeInfo> info = dtype_info(id);
      if (!info) continue;
      for (size_t n_dims = 1; n_dims <= 4; ++n_dims) {
        std::vector<int64_t> shape;
        for (size_t d = 0; d + 1 < n_dims; ++d) shape.push_back(1 + static_cast<int64_t>(rng() % 3));
        shape.push_back(static_cast<int64_t>(info->block_size) * (1 + static_cast<int64_t>(rng() % 3)));
        uint64_t rows = 1;
        for (size_t d = 0; d + 1 < n_dims; ++d) rows *= static_cast<uint64_t>(shape[d]);
        const uint64_t nbytes = row_bytes(info->type, static_cast<uint64_t>(shape.back())) * rows;
        Expected e{cat("t.", info->name, ".", n_dims), info->type, shape, testing::random_bytes(nbytes, rng)};
        w.add_tensor(e.name, e.type, e.shape, e.bytes);
        expected.push_back(std::move(e));
      }
    }
    w.write(path);

    const auto f = GgufFile::open(path);
    EXPECT_EQ(f->version(), 3u);
    EXPECT_EQ(f->alignment(), alignment == 0 ? 32u : alignment);
    ASSERT_EQ(f->metadata().size(), md.size() + (alignment != 0 ? 1 : 0));
    for (size_t k = 0; k < md.size(); ++k) {
      EXPECT_EQ(f->metadata()[k].first, md[k].first);
      EXPECT_TRUE(same_value(f->metadata()[k].second, md[k].second)) << md[k].first;
      ASSERT_NE(f->find(md[k].first), nullptr);
      EXPECT_TRUE(same_value(*f->find(md[k].first), md[k].second));
    }
    ASSERT_EQ(f->tensors().size(), expected.size());
    for (size_t k = 0; k < expected.size(); ++k) {
      const TensorInfo& t = f->tensors()[k];
      EXPECT_EQ(t.name, expected[k].name);
      EXPECT_EQ(f->tensor(t.name), &t);
      EXPECT_EQ(t.type, expected[k].type);
      EXPECT_EQ(t.shape, expected[k].shape);
      EXPECT_EQ(t.file, path);
      EXPECT_EQ(t.offset % f->alignment(), 0u) << t.name;
      ASSERT_EQ(t.nbytes, expected[k].bytes.size());
      EXPECT_TRUE(std::equal(t.data, t.data + t.nbytes, expected[k].bytes.begin())) << t.name;
    }
    EXPECT_EQ(f->tensor("absent"), nullptr);
  }
}

TEST(GgufRoundTrip, TypedGetters) {
  TempDir dir;
  GgufWriter w;
  w.set_u32("a.u32", 4000000000u);
  w.set_i32("a.i32", -7);
  w.set_u64("a.u64", ~uint64_t{0});
  w.set_f32("a.f32", 0.25f);
  w.set_bool("a.bool", true);
  w.set_string("a.str", "hello");
  w.set_strings("a.strs", {"x", "", "zz"});
  w.set_f32s("a.f32s", {1.5f, -2.0f});
  w.set_i32s("a.i32s", {3, -4, 5});
  w.set_i32("a.i32", -8);  // replaces in place
  w.write(dir.file("m.gguf"));
  const auto f = GgufFile::open(dir.file("m.gguf"));
  EXPECT_EQ(f->metadata()[1].first, "a.i32");
  EXPECT_EQ(f->get_int("a.u32"), 4000000000);
  EXPECT_EQ(f->get_int("a.i32"), -8);
  EXPECT_EQ(f->get_int("a.u64"), std::nullopt);  // does not fit int64
  EXPECT_EQ(f->get_float("a.f32"), 0.25);
  EXPECT_EQ(f->get_float("a.i32"), -8.0);
  EXPECT_EQ(f->get_bool("a.bool"), true);
  EXPECT_EQ(f->get_int("a.bool"), std::nullopt);
  EXPECT_EQ(f->get_string("a.str"), "hello");
  EXPECT_EQ(f->get_string("a.i32"), std::nullopt);
  EXPECT_EQ(f->get_int("missing"), std::nullopt);
  const GgufArray* strs = f->find("a.strs")->as_array();
  ASSERT_NE(strs, nullptr);
  ASSERT_EQ(strs->items.size(), 3u);
  EXPECT_EQ(*strs->items[2].as_string(), "zz");
  const GgufArray* i32s = f->find("a.i32s")->as_array();
  ASSERT_NE(i32s, nullptr);
  EXPECT_EQ(i32s->elem, GgufType::I32);
  EXPECT_EQ(i32s->items[1].as_int(), -4);
  EXPECT_EQ(f->find("a.f32s")->as_array()->items[0].as_float(), 1.5);
}

TEST(GgufWriter, RejectsInconsistentInput) {
  TempDir dir;
  const std::string path = dir.file("bad.gguf");
  {
    GgufWriter w;
    w.set("k", GgufValue{GgufType::U8, uint64_t{300}});
    EXPECT_THROW(w.write(path), Error);
  }
  {
    GgufWriter w;
    w.set("k", GgufValue{GgufType::STRING, uint64_t{3}});
    EXPECT_THROW(w.write(path), Error);
  }
  {
    GgufWriter w;
    w.set("k", arr(GgufType::I32, {GgufValue{GgufType::U8, uint64_t{1}}}));
    EXPECT_THROW(w.write(path), Error);
  }
  {
    GgufWriter w;
    w.set_u32("general.alignment", 48);
    EXPECT_THROW(w.write(path), Error);
  }
  {
    GgufWriter w;
    w.add_tensor("t", DType::Q8_0, {2, 33}, std::vector<uint8_t>(68));
    EXPECT_THROW(w.write(path), Error);
  }
  {
    GgufWriter w;
    w.add_tensor("t", DType::F32, {2, 3}, std::vector<uint8_t>(20));
    EXPECT_THROW(w.write(path), Error);
  }
  {
    GgufWriter w;
    w.add_tensor("t", DType::F32, {1}, std::vector<uint8_t>(4));
    w.add_tensor("t", DType::F32, {1}, std::vector<uint8_t>(4));
    EXPECT_THROW(w.write(path), Error);
  }
}

// --- the real model files ----------------------------------------------------

TEST(GgufBible, Q8_0) {
  const std::string path = testing::bible_dir() + "/bible-q8_0.gguf";
  const auto f = GgufFile::open(path);
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->get_string("general.architecture"), "llama");
  EXPECT_EQ(f->get_int("llama.block_count"), 8);
  EXPECT_EQ(f->get_int("llama.embedding_length"), 256);
  EXPECT_EQ(f->get_int("llama.attention.head_count"), 8);
  EXPECT_EQ(f->get_int("llama.attention.head_count_kv"), 4);
  EXPECT_EQ(f->get_int("llama.feed_forward_length"), 1024);
  EXPECT_EQ(f->get_int("tokenizer.ggml.bos_token_id"), 4094);
  EXPECT_EQ(f->get_int("tokenizer.ggml.eos_token_id"), 4095);
  EXPECT_EQ(f->find("tokenizer.ggml.tokens")->as_array()->items.size(), 4096u);
  EXPECT_EQ(f->tensors().size(), 1u + 8u * 9u + 2u);
  const TensorInfo* embd = f->tensor("token_embd.weight");
  ASSERT_NE(embd, nullptr);
  EXPECT_EQ(embd->type, DType::Q8_0);
  EXPECT_EQ(embd->shape, (std::vector<int64_t>{4096, 256}));
  EXPECT_EQ(embd->nbytes, 4096u * 8u * 34u);
  const TensorInfo* norm = f->tensor("blk.3.attn_norm.weight");
  ASSERT_NE(norm, nullptr);
  EXPECT_EQ(norm->type, DType::F32);
  EXPECT_EQ(norm->shape, (std::vector<int64_t>{256}));
  const TensorInfo* down = f->tensor("blk.7.ffn_down.weight");
  ASSERT_NE(down, nullptr);
  EXPECT_EQ(down->shape, (std::vector<int64_t>{256, 1024}));
  for (const TensorInfo& t : f->tensors()) {
    EXPECT_EQ(t.offset % f->alignment(), 0u) << t.name;
    EXPECT_LE(t.offset + t.nbytes, f->file_size());
  }
}

TEST(GgufBible, Bf16) {
  const auto f = GgufFile::open(testing::bible_dir() + "/bible-bf16.gguf");
  const TensorInfo* q = f->tensor("blk.0.attn_q.weight");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->type, DType::BF16);
  EXPECT_EQ(q->shape, (std::vector<int64_t>{256, 256}));
  const TensorInfo* k = f->tensor("blk.0.attn_k.weight");
  ASSERT_NE(k, nullptr);
  EXPECT_EQ(k->shape, (std::vector<int64_t>{128, 256}));
  EXPECT_EQ(k->nbytes, 128u * 256u * 2u);
  EXPECT_EQ(f->get_float("llama.attention.layer_norm_rms_epsilon").value_or(0), 1e-5f);
}

}  // namespace
}  // namespace tpinfer
