#include "formats/gguf.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <utility>

#include "core/enum_names.h"
#include "core/error.h"

namespace tpinfer {
namespace {

// Reads little-endian values from the mapped file, checking every read against
// the end of the file. Errors name the file, the offset and what was expected.
class Reader {
 public:
  Reader(const std::string& path, const uint8_t* data, uint64_t size) : path_(path), data_(data), size_(size) {}

  uint64_t pos() const { return pos_; }
  uint64_t size() const { return size_; }
  uint64_t remaining() const { return size_ - pos_; }

  [[noreturn]] void fail(uint64_t at, std::string_view expected, std::string_view found) const {
    throw FormatError(cat(path_, ": offset ", at, ": expected ", expected, ", ", found));
  }

  std::string truncated() const {
    return cat("found only ", remaining(), " bytes before the end of the file (", size_, " bytes)");
  }

  void need(uint64_t n, std::string_view what) const {
    if (n > remaining()) fail(pos_, what, truncated());
  }

  template <typename T>
  T read(std::string_view what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));  // x86-64 and aarch64 are little-endian, as GGUF is
    pos_ += sizeof(T);
    return v;
  }

  std::string read_string(std::string_view what) {
    const uint64_t at = pos_;
    const uint64_t len = read<uint64_t>(cat(what, " (string length)"));
    if (len > remaining()) {
      fail(at, cat(what, ": a string of ", len, " bytes"),
           cat("found only ", remaining(), " bytes after its length field (file size ", size_, ")"));
    }
    std::string s(reinterpret_cast<const char*>(data_ + pos_), static_cast<size_t>(len));
    pos_ += len;
    return s;
  }

 private:
  const std::string& path_;
  const uint8_t* data_;
  uint64_t size_;
  uint64_t pos_ = 0;
};

// The fewest bytes one array element of this type occupies in the file: a bound
// that lets an element count be rejected before anything is allocated for it.
uint64_t min_encoded_size(GgufType t) {
  switch (t) {
    case GgufType::U8:
    case GgufType::I8:
    case GgufType::BOOL:
      return 1;
    case GgufType::U16:
    case GgufType::I16:
      return 2;
    case GgufType::U32:
    case GgufType::I32:
    case GgufType::F32:
      return 4;
    case GgufType::U64:
    case GgufType::I64:
    case GgufType::F64:
      return 8;
    case GgufType::STRING:
      return 8;  // length field
    case GgufType::ARRAY:
      return 12;  // element type + count
  }
  return 1;
}

bool known_type(uint32_t t) { return t <= static_cast<uint32_t>(GgufType::F64); }

struct ParseState {
  uint64_t items = 0;  // array elements so far, against kGgufMaxMetadataItems
};

GgufValue read_value(Reader& r, GgufType type, int depth, ParseState& state, std::string_view key) {
  GgufValue v;
  v.type = type;
  const auto what = [&](std::string_view kind) { return cat(kind, " value of '", key, "'"); };
  switch (type) {
    case GgufType::U8:
      v.value = uint64_t{r.read<uint8_t>(what("u8"))};
      break;
    case GgufType::I8:
      v.value = int64_t{r.read<int8_t>(what("i8"))};
      break;
    case GgufType::U16:
      v.value = uint64_t{r.read<uint16_t>(what("u16"))};
      break;
    case GgufType::I16:
      v.value = int64_t{r.read<int16_t>(what("i16"))};
      break;
    case GgufType::U32:
      v.value = uint64_t{r.read<uint32_t>(what("u32"))};
      break;
    case GgufType::I32:
      v.value = int64_t{r.read<int32_t>(what("i32"))};
      break;
    case GgufType::U64:
      v.value = uint64_t{r.read<uint64_t>(what("u64"))};
      break;
    case GgufType::I64:
      v.value = int64_t{r.read<int64_t>(what("i64"))};
      break;
    case GgufType::F32:
      v.value = double{r.read<float>(what("f32"))};
      break;
    case GgufType::F64:
      v.value = r.read<double>(what("f64"));
      break;
    case GgufType::BOOL: {
      const uint64_t at = r.pos();
      const uint8_t b = r.read<uint8_t>(what("bool"));
      if (b > 1) r.fail(at, what("bool (0 or 1)"), cat("found ", unsigned{b}));
      v.value = b == 1;
      break;
    }
    case GgufType::STRING:
      v.value = r.read_string(what("string"));
      break;
    case GgufType::ARRAY: {
      const uint64_t type_at = r.pos();
      const uint32_t elem = r.read<uint32_t>(cat("array element type of '", key, "'"));
      if (!known_type(elem)) r.fail(type_at, cat("an array element type (0..12) for '", key, "'"), cat("found ", elem));
      GgufArray arr;
      arr.elem = static_cast<GgufType>(elem);
      if (arr.elem == GgufType::ARRAY && depth + 1 >= kGgufMaxArrayDepth) {
        r.fail(type_at, cat("arrays nested at most ", kGgufMaxArrayDepth, " deep in '", key, "'"),
               cat("found deeper nesting"));
      }
      const uint64_t count_at = r.pos();
      const uint64_t count = r.read<uint64_t>(cat("array count of '", key, "'"));
      const uint64_t min_size = min_encoded_size(arr.elem);
      if (count > r.remaining() / min_size) {
        r.fail(count_at,
               cat("an array count for '", key, "' that fits in the file (each ", gguf_type_name(arr.elem),
                   " takes at least ", min_size, " bytes)"),
               cat("found ", count, " with ", r.remaining(), " bytes left"));
      }
      if (count > kGgufMaxMetadataItems - state.items) {
        r.fail(count_at, cat("at most ", kGgufMaxMetadataItems, " metadata array elements in all"),
               cat("found ", count, " more in '", key, "' after ", state.items));
      }
      state.items += count;
      arr.items.reserve(static_cast<size_t>(count));
      for (uint64_t i = 0; i < count; ++i) arr.items.push_back(read_value(r, arr.elem, depth + 1, state, key));
      v.value = std::move(arr);
      break;
    }
  }
  return v;
}

bool is_power_of_two(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

}  // namespace

constexpr EnumNames<GgufType, 13> kGgufTypes{
    {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"}};

std::string_view gguf_type_name(GgufType t) { return kGgufTypes[t]; }

// ---------------------------------------------------------------------------
// GgufValue

std::optional<int64_t> GgufValue::as_int() const {
  if (const auto* u = std::get_if<uint64_t>(&value)) {
    if (*u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
    return static_cast<int64_t>(*u);
  }
  if (const auto* i = std::get_if<int64_t>(&value)) return *i;
  if (const auto* b = std::get_if<bool>(&value)) return *b ? 1 : 0;
  return std::nullopt;
}

std::optional<double> GgufValue::as_float() const {
  if (const auto* d = std::get_if<double>(&value)) return *d;
  if (const auto* u = std::get_if<uint64_t>(&value)) return static_cast<double>(*u);
  if (const auto* i = std::get_if<int64_t>(&value)) return static_cast<double>(*i);
  return std::nullopt;
}

const std::string* GgufValue::as_string() const { return std::get_if<std::string>(&value); }
const GgufArray* GgufValue::as_array() const { return std::get_if<GgufArray>(&value); }

// ---------------------------------------------------------------------------
// GgufFile

std::unique_ptr<GgufFile> GgufFile::open(const std::string& path) {
  auto f = std::unique_ptr<GgufFile>(new GgufFile());
  f->file_ = std::make_unique<MappedFile>(path);
  const std::string& p = f->file_->path();
  Reader r(p, f->file_->data(), f->file_->size());

  // Header.
  r.need(4, "magic \"GGUF\"");
  char magic[4];
  std::memcpy(magic, f->file_->data(), 4);
  if (std::memcmp(magic, "GGUF", 4) != 0) {
    std::string found;
    for (char c : magic) {
      const auto u = static_cast<unsigned char>(c);
      found += (u >= 0x20 && u < 0x7f) ? std::string(1, c)
                                       : cat("\\x", "0123456789abcdef"[u >> 4], "0123456789abcdef"[u & 15]);
    }
    r.fail(0, "magic \"GGUF\"", cat("found \"", found, "\" (not a GGUF file)"));
  }
  r.read<uint32_t>("magic");
  const uint64_t version_at = r.pos();
  f->version_ = r.read<uint32_t>("version");
  if (f->version_ == 1) r.fail(version_at, "GGUF version 2 or 3", "found version 1 (too old; convert the file again)");
  if (f->version_ != 2 && f->version_ != 3) {
    const bool swapped = (f->version_ & 0xffffu) == 0 && __builtin_bswap32(f->version_) <= 3;
    r.fail(version_at, "GGUF version 2 or 3",
           swapped ? cat("found ", f->version_, " (a big-endian file; only little-endian is supported)")
                   : cat("found version ", f->version_));
  }
  const uint64_t tensor_count_at = r.pos();
  const uint64_t tensor_count = r.read<uint64_t>("tensor count");
  const uint64_t kv_count_at = r.pos();
  const uint64_t kv_count = r.read<uint64_t>("metadata count");
  // Each key-value pair takes at least 13 bytes (key length, type, one byte of
  // value); each tensor info at least 24 (name length, n_dims, type, offset).
  if (kv_count > r.remaining() / 13) {
    r.fail(kv_count_at, "a metadata count that fits in the file (at least 13 bytes each)",
           cat("found ", kv_count, " with ", r.remaining(), " bytes left"));
  }
  if (tensor_count > r.remaining() / 24) {
    r.fail(tensor_count_at, "a tensor count that fits in the file (at least 24 bytes each)",
           cat("found ", tensor_count, " with ", r.remaining(), " bytes left"));
  }

  // Metadata.
  ParseState state;
  f->metadata_.reserve(static_cast<size_t>(kv_count));
  for (uint64_t i = 0; i < kv_count; ++i) {
    const uint64_t key_at = r.pos();
    std::string key = r.read_string(cat("metadata key #", i));
    if (f->metadata_index_.count(key) != 0) r.fail(key_at, "unique metadata keys", cat("found '", key, "' twice"));
    const uint64_t type_at = r.pos();
    const uint32_t type = r.read<uint32_t>(cat("value type of '", key, "'"));
    if (!known_type(type)) r.fail(type_at, cat("a value type (0..12) for '", key, "'"), cat("found ", type));
    GgufValue value = read_value(r, static_cast<GgufType>(type), 0, state, key);
    if (key == "general.alignment") {
      if (value.type != GgufType::U32) {
        r.fail(type_at, "general.alignment of type u32", cat("found type ", gguf_type_name(value.type)));
      }
      const uint64_t a = std::get<uint64_t>(value.value);
      if (!is_power_of_two(a)) r.fail(type_at + 4, "general.alignment a power of two", cat("found ", a));
      f->alignment_ = a;
    }
    f->metadata_index_.emplace(key, f->metadata_.size());
    f->metadata_.emplace_back(std::move(key), std::move(value));
  }

  // Tensor infos.
  struct Pending {
    uint64_t info_at;    // where the tensor's info starts (for errors)
    uint64_t offset_at;  // where its offset field is
    uint64_t rel_offset;
  };
  std::vector<Pending> pending;
  pending.reserve(static_cast<size_t>(tensor_count));
  f->tensors_.reserve(static_cast<size_t>(tensor_count));
  for (uint64_t i = 0; i < tensor_count; ++i) {
    const uint64_t info_at = r.pos();
    TensorInfo t;
    t.name = r.read_string(cat("name of tensor #", i));
    if (f->tensor_index_.count(t.name) != 0) r.fail(info_at, "unique tensor names", cat("found '", t.name, "' twice"));
    const uint64_t dims_at = r.pos();
    const uint32_t n_dims = r.read<uint32_t>(cat("n_dims of tensor '", t.name, "'"));
    if (n_dims < 1 || n_dims > 4)
      r.fail(dims_at, cat("n_dims in 1..4 for tensor '", t.name, "'"), cat("found ", n_dims));
    uint64_t ne[4] = {1, 1, 1, 1};
    uint64_t numel = 1;
    bool overflow = false;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t ne_at = r.pos();
      ne[d] = r.read<uint64_t>(cat("ne[", d, "] of tensor '", t.name, "'"));
      if (ne[d] > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        r.fail(ne_at, cat("a dimension below 2^63 for tensor '", t.name, "'"), cat("found ", ne[d]));
      }
      if (ne[d] != 0 && numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / ne[d]) overflow = true;
      numel *= ne[d];
    }
    if (overflow) {
      r.fail(dims_at, cat("an element count below 2^63 for tensor '", t.name, "'"),
             "found dimensions whose product overflows");
    }
    const uint64_t type_at = r.pos();
    const uint32_t type = r.read<uint32_t>(cat("type of tensor '", t.name, "'"));
    const std::optional<DTypeInfo> info = dtype_info(type);
    if (!info) r.fail(type_at, cat("a known tensor type id for tensor '", t.name, "'"), cat("found ", type));
    t.type = info->type;
    if (ne[0] % info->block_size != 0) {
      r.fail(
          dims_at,
          cat("ne[0] of tensor '", t.name, "' a multiple of ", info->block_size, " (the ", info->name, " block size)"),
          cat("found ", ne[0]));
    }
    const uint64_t offset_at = r.pos();
    const uint64_t rel = r.read<uint64_t>(cat("data offset of tensor '", t.name, "'"));
    if (rel % f->alignment_ != 0) {
      r.fail(offset_at, cat("data offset of tensor '", t.name, "' a multiple of the alignment ", f->alignment_),
             cat("found ", rel));
    }
    // Bytes: blocks per row times rows; checked for overflow (numel fits in int64,
    // but a row's bytes times the rows may not fit).
    const uint64_t row = ne[0] / info->block_size * info->type_size;
    const uint64_t rows = ne[0] == 0 ? 0 : numel / ne[0];
    if (rows != 0 && row > std::numeric_limits<uint64_t>::max() / rows) {
      r.fail(dims_at, cat("a byte size below 2^64 for tensor '", t.name, "'"), "found dimensions whose size overflows");
    }
    t.nbytes = row * rows;
    for (uint32_t d = n_dims; d-- > 0;) t.shape.push_back(static_cast<int64_t>(ne[d]));
    t.file = p;
    f->tensor_index_.emplace(t.name, f->tensors_.size());
    f->tensors_.push_back(std::move(t));
    pending.push_back({info_at, offset_at, rel});
  }

  // Data section: starts at the next multiple of the alignment.
  const uint64_t data_start = (r.pos() + f->alignment_ - 1) / f->alignment_ * f->alignment_;
  if (tensor_count > 0 && data_start > r.size()) {
    r.fail(r.pos(), cat("tensor data from offset ", data_start), r.truncated());
  }
  const uint64_t data_size = tensor_count > 0 ? r.size() - data_start : 0;
  for (size_t i = 0; i < f->tensors_.size(); ++i) {
    TensorInfo& t = f->tensors_[i];
    const Pending& pend = pending[i];
    if (pend.rel_offset > data_size || t.nbytes > data_size - pend.rel_offset) {
      r.fail(pend.offset_at,
             cat("tensor '", t.name, "' (", t.nbytes, " bytes at data offset ", pend.rel_offset, ") inside the file"),
             cat("found it runs past the end of the file (the data section holds ", data_size,
                 " bytes from file offset ", data_start, ")"));
    }
    t.offset = data_start + pend.rel_offset;
    t.data = f->file_->data() + t.offset;
  }
  // No two tensors may share bytes.
  std::vector<size_t> order(f->tensors_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return f->tensors_[a].offset != f->tensors_[b].offset ? f->tensors_[a].offset < f->tensors_[b].offset
                                                          : f->tensors_[a].nbytes < f->tensors_[b].nbytes;
  });
  for (size_t k = 1; k < order.size(); ++k) {
    const TensorInfo& prev = f->tensors_[order[k - 1]];
    const TensorInfo& cur = f->tensors_[order[k]];
    if (cur.nbytes == 0 || prev.nbytes == 0) continue;
    if (cur.offset < prev.offset + prev.nbytes) {
      r.fail(pending[order[k]].offset_at,
             cat("tensor '", cur.name, "' to start at or after file offset ", prev.offset + prev.nbytes,
                 " where tensor '", prev.name, "' ends"),
             cat("found it starts at ", cur.offset, " (the tensors overlap)"));
    }
  }
  return f;
}

const GgufValue* GgufFile::find(std::string_view key) const {
  const auto it = metadata_index_.find(key);
  return it == metadata_index_.end() ? nullptr : &metadata_[it->second].second;
}

std::optional<int64_t> GgufFile::get_int(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr || v->type == GgufType::BOOL) return std::nullopt;
  return v->as_int();
}

std::optional<double> GgufFile::get_float(std::string_view key) const {
  const GgufValue* v = find(key);
  return v == nullptr ? std::nullopt : v->as_float();
}

std::optional<std::string> GgufFile::get_string(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr || v->as_string() == nullptr) return std::nullopt;
  return *v->as_string();
}

std::optional<bool> GgufFile::get_bool(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (const auto* b = std::get_if<bool>(&v->value)) return *b;
  return std::nullopt;
}

const TensorInfo* GgufFile::tensor(std::string_view name) const {
  const auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

}  // namespace tpinfer
