#include "formats/gguf_writer.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <set>
#include <utility>

#include "core/error.h"

namespace tpinfer {
namespace {

template <typename T>
void put(std::vector<uint8_t>& out, T v) {
  uint8_t b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));  // little-endian host, as GGUF
  out.insert(out.end(), b, b + sizeof(T));
}

void put_string(std::vector<uint8_t>& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  out.insert(out.end(), s.begin(), s.end());
}

// The integer held by `v` (either signedness), checked to fit in [lo, hi].
template <typename T>
T int_value(const GgufValue& v, const std::string& key) {
  bool ok = false;
  T out{};
  if (const auto* u = std::get_if<uint64_t>(&v.value)) {
    ok = *u <= static_cast<uint64_t>(std::numeric_limits<T>::max());
    out = static_cast<T>(*u);
  } else if (const auto* i = std::get_if<int64_t>(&v.value)) {
    if constexpr (std::numeric_limits<T>::is_signed) {
      ok = *i >= std::numeric_limits<T>::min() && *i <= std::numeric_limits<T>::max();
    } else {
      ok = *i >= 0 && static_cast<uint64_t>(*i) <= static_cast<uint64_t>(std::numeric_limits<T>::max());
    }
    out = static_cast<T>(*i);
  } else {
    throw Error(cat("GGUF key '", key, "': type ", gguf_type_name(v.type), " needs an integer value"));
  }
  if (!ok) throw Error(cat("GGUF key '", key, "': value out of range for ", gguf_type_name(v.type)));
  return out;
}

void put_value(std::vector<uint8_t>& out, const GgufValue& v, const std::string& key, int depth) {
  switch (v.type) {
    case GgufType::U8:
      put(out, int_value<uint8_t>(v, key));
      return;
    case GgufType::I8:
      put(out, int_value<int8_t>(v, key));
      return;
    case GgufType::U16:
      put(out, int_value<uint16_t>(v, key));
      return;
    case GgufType::I16:
      put(out, int_value<int16_t>(v, key));
      return;
    case GgufType::U32:
      put(out, int_value<uint32_t>(v, key));
      return;
    case GgufType::I32:
      put(out, int_value<int32_t>(v, key));
      return;
    case GgufType::U64:
      put(out, int_value<uint64_t>(v, key));
      return;
    case GgufType::I64:
      put(out, int_value<int64_t>(v, key));
      return;
    case GgufType::F32:
    case GgufType::F64: {
      const std::optional<double> d = v.as_float();
      if (!d || std::holds_alternative<bool>(v.value)) {
        throw Error(cat("GGUF key '", key, "': type ", gguf_type_name(v.type), " needs a number"));
      }
      if (v.type == GgufType::F32) {
        put(out, static_cast<float>(*d));
      } else {
        put(out, *d);
      }
      return;
    }
    case GgufType::BOOL: {
      const auto* b = std::get_if<bool>(&v.value);
      if (b == nullptr) throw Error(cat("GGUF key '", key, "': type bool needs a bool value"));
      put<uint8_t>(out, *b ? 1 : 0);
      return;
    }
    case GgufType::STRING: {
      const std::string* s = v.as_string();
      if (s == nullptr) throw Error(cat("GGUF key '", key, "': type string needs a string value"));
      put_string(out, *s);
      return;
    }
    case GgufType::ARRAY: {
      const GgufArray* a = v.as_array();
      if (a == nullptr) throw Error(cat("GGUF key '", key, "': type array needs an array value"));
      if (a->elem == GgufType::ARRAY && depth + 1 >= kGgufMaxArrayDepth) {
        throw Error(cat("GGUF key '", key, "': arrays nested deeper than ", kGgufMaxArrayDepth));
      }
      put<uint32_t>(out, static_cast<uint32_t>(a->elem));
      put<uint64_t>(out, a->items.size());
      for (const GgufValue& item : a->items) {
        if (item.type != a->elem) {
          throw Error(
              cat("GGUF key '", key, "': array of ", gguf_type_name(a->elem), " holds a ", gguf_type_name(item.type)));
        }
        put_value(out, item, key, depth + 1);
      }
      return;
    }
  }
  throw Error(cat("GGUF key '", key, "': unknown value type ", static_cast<uint32_t>(v.type)));
}

GgufValue make_array(GgufType elem, std::vector<GgufValue> items) {
  GgufValue v;
  v.type = GgufType::ARRAY;
  v.value = GgufArray{elem, std::move(items)};
  return v;
}

}  // namespace

void GgufWriter::set(std::string key, GgufValue value) {
  for (auto& [k, v] : metadata_) {
    if (k == key) {
      v = std::move(value);
      return;
    }
  }
  metadata_.emplace_back(std::move(key), std::move(value));
}

void GgufWriter::set_u32(std::string key, uint32_t v) { set(std::move(key), {GgufType::U32, uint64_t{v}}); }
void GgufWriter::set_u64(std::string key, uint64_t v) { set(std::move(key), {GgufType::U64, v}); }
void GgufWriter::set_i32(std::string key, int32_t v) { set(std::move(key), {GgufType::I32, int64_t{v}}); }
void GgufWriter::set_f32(std::string key, float v) { set(std::move(key), {GgufType::F32, double{v}}); }
void GgufWriter::set_bool(std::string key, bool v) { set(std::move(key), {GgufType::BOOL, v}); }
void GgufWriter::set_string(std::string key, std::string v) { set(std::move(key), {GgufType::STRING, std::move(v)}); }

void GgufWriter::set_strings(std::string key, std::vector<std::string> v) {
  std::vector<GgufValue> items;
  items.reserve(v.size());
  for (std::string& s : v) items.push_back({GgufType::STRING, std::move(s)});
  set(std::move(key), make_array(GgufType::STRING, std::move(items)));
}

void GgufWriter::set_f32s(std::string key, const std::vector<float>& v) {
  std::vector<GgufValue> items;
  items.reserve(v.size());
  for (float f : v) items.push_back({GgufType::F32, double{f}});
  set(std::move(key), make_array(GgufType::F32, std::move(items)));
}

void GgufWriter::set_i32s(std::string key, const std::vector<int32_t>& v) {
  std::vector<GgufValue> items;
  items.reserve(v.size());
  for (int32_t i : v) items.push_back({GgufType::I32, int64_t{i}});
  set(std::move(key), make_array(GgufType::I32, std::move(items)));
}

void GgufWriter::add_tensor(std::string name, DType type, std::vector<int64_t> shape, std::vector<uint8_t> bytes) {
  tensors_.push_back({std::move(name), type, std::move(shape), std::move(bytes)});
}

uint64_t GgufWriter::alignment() const {
  for (const auto& [k, v] : metadata_) {
    if (k != "general.alignment") continue;
    const std::optional<int64_t> a = v.as_int();
    if (v.type != GgufType::U32 || !a || *a <= 0 || (*a & (*a - 1)) != 0) {
      throw Error("GGUF writer: general.alignment must be a u32 power of two");
    }
    return static_cast<uint64_t>(*a);
  }
  return 32;
}

std::vector<uint8_t> GgufWriter::header_bytes() const {
  const uint64_t align = alignment();
  std::vector<uint8_t> out;
  put<uint32_t>(out, 0x46554747u);  // "GGUF" little-endian
  put<uint32_t>(out, 3);
  put<uint64_t>(out, tensors_.size());
  put<uint64_t>(out, metadata_.size());
  for (const auto& [key, value] : metadata_) {
    put_string(out, key);
    put<uint32_t>(out, static_cast<uint32_t>(value.type));
    put_value(out, value, key, 0);
  }
  std::set<std::string, std::less<>> names;
  uint64_t offset = 0;
  for (const Tensor& t : tensors_) {
    if (!names.insert(t.name).second) throw Error(cat("GGUF writer: tensor '", t.name, "' added twice"));
    if (t.shape.empty() || t.shape.size() > 4) {
      throw Error(cat("GGUF writer: tensor '", t.name, "' has ", t.shape.size(), " dimensions (1..4 allowed)"));
    }
    const DTypeInfo& info = dtype_info(t.type);
    uint64_t rows = 1;
    for (size_t d = 0; d + 1 < t.shape.size(); ++d) {
      if (t.shape[d] < 0) throw Error(cat("GGUF writer: tensor '", t.name, "' has a negative dimension"));
      rows *= static_cast<uint64_t>(t.shape[d]);
    }
    const int64_t cols = t.shape.back();
    if (cols < 0 || cols % info.block_size != 0) {
      throw Error(cat("GGUF writer: tensor '", t.name, "': row length ", cols, " is not a multiple of the ", info.name,
                      " block size ", info.block_size));
    }
    const uint64_t nbytes = row_bytes(t.type, static_cast<uint64_t>(cols)) * rows;
    if (nbytes != t.bytes.size()) {
      throw Error(
          cat("GGUF writer: tensor '", t.name, "' holds ", t.bytes.size(), " bytes, its shape and type need ", nbytes));
    }
    put_string(out, t.name);
    put<uint32_t>(out, static_cast<uint32_t>(t.shape.size()));
    for (size_t d = t.shape.size(); d-- > 0;) put<uint64_t>(out, static_cast<uint64_t>(t.shape[d]));
    put<uint32_t>(out, static_cast<uint32_t>(t.type));
    put<uint64_t>(out, offset);
    offset += (nbytes + align - 1) / align * align;
  }
  out.resize((out.size() + align - 1) / align * align, 0);
  return out;
}

void GgufWriter::write(const std::string& path) const {
  const uint64_t align = alignment();
  const std::vector<uint8_t> header = header_bytes();
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) throw Error(cat(path, ": cannot create: ", std::strerror(errno)));
  f.write(reinterpret_cast<const char*>(header.data()), static_cast<std::streamsize>(header.size()));
  static constexpr char kZeros[256] = {};
  for (const Tensor& t : tensors_) {
    f.write(reinterpret_cast<const char*>(t.bytes.data()), static_cast<std::streamsize>(t.bytes.size()));
    uint64_t pad = (align - t.bytes.size() % align) % align;
    while (pad > 0) {
      const uint64_t n = pad < sizeof(kZeros) ? pad : sizeof(kZeros);
      f.write(kZeros, static_cast<std::streamsize>(n));
      pad -= n;
    }
  }
  f.close();
  if (!f) throw Error(cat(path, ": write failed: ", std::strerror(errno)));
}

}  // namespace tpinfer
