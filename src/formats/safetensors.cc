#include "formats/safetensors.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

#include "core/error.h"

namespace tpinfer {
namespace {

using Json = nlohmann::ordered_json;

// Thrown from inside the JSON parser callback; turned into a FormatError.
struct HeaderProblem {
  std::string expected;
  std::string found;
};

std::optional<DType> st_dtype(std::string_view name) {
  if (name == "F32") return DType::F32;
  if (name == "F16") return DType::F16;
  if (name == "BF16") return DType::BF16;
  return std::nullopt;
}

const char* st_name(DType t) {
  switch (t) {
    case DType::F32:
      return "F32";
    case DType::F16:
      return "F16";
    case DType::BF16:
      return "BF16";
    default:
      return nullptr;
  }
}

// A JSON value as a non-negative integer, if it is one.
std::optional<uint64_t> as_u64(const Json& j) {
  if (j.is_number_unsigned()) return j.get<uint64_t>();
  if (j.is_number_integer() && j.get<int64_t>() >= 0) return static_cast<uint64_t>(j.get<int64_t>());
  return std::nullopt;
}

[[noreturn]] void fail(const std::string& path, uint64_t at, std::string_view expected, std::string_view found) {
  throw FormatError(cat(path, ": offset ", at, ": expected ", expected, ", ", found));
}

std::string brief(const Json& j) {
  std::string s = j.dump();
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

}  // namespace

std::unique_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  auto f = std::unique_ptr<SafetensorsFile>(new SafetensorsFile());
  f->file_ = std::make_unique<MappedFile>(path);
  const uint64_t size = f->file_->size();
  if (size < 8) fail(path, 0, "an 8-byte header length", cat("found a file of only ", size, " bytes"));
  uint64_t n;
  std::memcpy(&n, f->file_->data(), 8);
  if (n > size - 8) {
    fail(path, 0, cat("a header length of at most ", size - 8, " bytes (the file size less 8)"), cat("found ", n));
  }
  if (n > kSafetensorsMaxHeader) {
    fail(path, 0, cat("a header length of at most ", kSafetensorsMaxHeader, " bytes"), cat("found ", n));
  }
  const char* begin = reinterpret_cast<const char*>(f->file_->data() + 8);
  const uint64_t data_start = 8 + n;
  const uint64_t data_size = size - data_start;

  // Parse, rejecting duplicate tensor names and absurd nesting as we go: JSON
  // itself lets a later duplicate silently replace an earlier one.
  std::set<std::string, std::less<>> top_keys;
  const Json::parser_callback_t check = [&](int depth, Json::parse_event_t event, Json& parsed) {
    if (depth > kSafetensorsMaxJsonDepth) {
      throw HeaderProblem{cat("JSON nested at most ", kSafetensorsMaxJsonDepth, " deep"), "found deeper nesting"};
    }
    if (event == Json::parse_event_t::key && depth == 1) {
      std::string key = parsed.get<std::string>();
      if (!top_keys.insert(key).second) throw HeaderProblem{"unique tensor names", cat("found '", key, "' twice")};
    }
    return true;
  };
  Json header;
  try {
    header = Json::parse(begin, begin + n, check);
  } catch (const Json::parse_error& e) {
    // e.byte counts from 1; past the end it is one beyond the last byte.
    const uint64_t at = 8 + std::min<uint64_t>(e.byte > 0 ? e.byte - 1 : 0, n);
    fail(path, at, "a JSON header", cat("header is not valid JSON: ", e.what()));
  } catch (const Json::out_of_range& e) {  // a number too large for a double (1e400)
    fail(path, 8, "a JSON header", cat("header is not valid JSON: ", e.what()));
  } catch (const HeaderProblem& p) {
    fail(path, 8, p.expected, p.found);
  }
  if (!header.is_object()) fail(path, 8, "a JSON object as header", cat("found a JSON ", header.type_name()));

  struct Span {
    uint64_t begin, end;
    size_t tensor;
  };
  std::vector<Span> spans;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) fail(path, 8, "__metadata__ to be an object", cat("found ", brief(entry)));
      for (const auto& [k, v] : entry.items()) {
        if (!v.is_string())
          fail(path, 8, cat("__metadata__ value of '", k, "' to be a string"), cat("found ", brief(v)));
        f->metadata_.emplace(k, v.get<std::string>());
      }
      continue;
    }
    const std::string what = cat("tensor '", name, "'");
    if (!entry.is_object()) fail(path, 8, cat(what, " to be an object"), cat("found ", brief(entry)));
    const auto dtype_it = entry.find("dtype");
    const auto shape_it = entry.find("shape");
    const auto offsets_it = entry.find("data_offsets");
    if (dtype_it == entry.end() || !dtype_it->is_string()) {
      fail(path, 8, cat(what, " to have a string \"dtype\""),
           dtype_it == entry.end() ? "found none" : cat("found ", brief(*dtype_it)));
    }
    const std::string dtype_name = dtype_it->get<std::string>();
    const std::optional<DType> dtype = st_dtype(dtype_name);
    if (!dtype)
      fail(path, 8, cat(what, " to have dtype F32, F16 or BF16"), cat("found unsupported dtype '", dtype_name, "'"));
    if (shape_it == entry.end() || !shape_it->is_array()) {
      fail(path, 8, cat(what, " to have a \"shape\" array"),
           shape_it == entry.end() ? "found none" : cat("found ", brief(*shape_it)));
    }
    TensorInfo t;
    t.name = name;
    t.type = *dtype;
    uint64_t numel = 1;
    for (const Json& d : *shape_it) {
      const std::optional<uint64_t> v = as_u64(d);
      if (!v || *v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        fail(path, 8, cat(what, " to have non-negative integer dimensions below 2^63"),
             cat("found ", brief(*shape_it)));
      }
      if (*v != 0 && numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / *v) {
        fail(path, 8, cat(what, " to have fewer than 2^63 elements"), cat("found shape ", brief(*shape_it)));
      }
      numel *= *v;
      t.shape.push_back(static_cast<int64_t>(*v));
    }
    if (offsets_it == entry.end() || !offsets_it->is_array() || offsets_it->size() != 2 || !as_u64((*offsets_it)[0]) ||
        !as_u64((*offsets_it)[1])) {
      fail(path, 8, cat(what, " to have \"data_offsets\" [begin, end]"),
           offsets_it == entry.end() ? "found none" : cat("found ", brief(*offsets_it)));
    }
    const uint64_t b = *as_u64((*offsets_it)[0]);
    const uint64_t e = *as_u64((*offsets_it)[1]);
    if (b > e || e > data_size) {
      fail(path, 8, cat(what, " to have data_offsets within the data section (0..", data_size, " bytes)"),
           cat("found [", b, ", ", e, "]"));
    }
    const uint64_t elem = dtype_info(*dtype).type_size;
    if (numel > std::numeric_limits<uint64_t>::max() / elem || e - b != numel * elem) {
      fail(path, data_start + b,
           cat(what, " to hold ", brief(*shape_it), " x ", dtype_name, " = ", numel, " x ", elem, " bytes"),
           cat("found data_offsets [", b, ", ", e, "] (", e - b, " bytes)"));
    }
    t.nbytes = e - b;
    t.offset = data_start + b;
    t.data = f->file_->data() + t.offset;
    t.file = path;
    spans.push_back({b, e, f->tensors_.size()});
    f->index_.emplace(t.name, f->tensors_.size());
    f->tensors_.push_back(std::move(t));
  }
  std::sort(spans.begin(), spans.end(),
            [](const Span& a, const Span& b) { return a.begin != b.begin ? a.begin < b.begin : a.end < b.end; });
  for (size_t k = 1; k < spans.size(); ++k) {
    const Span& prev = spans[k - 1];
    const Span& cur = spans[k];
    if (cur.begin == cur.end || prev.begin == prev.end) continue;
    if (cur.begin < prev.end) {
      const std::string& a = f->tensors_[prev.tensor].name;
      const std::string& b = f->tensors_[cur.tensor].name;
      fail(path, data_start + cur.begin,
           cat("tensor '", b, "' to start at or after data offset ", prev.end, " where tensor '", a, "' ends"),
           cat("found data_offsets [", cur.begin, ", ", cur.end, "] (the tensors overlap)"));
    }
  }
  return f;
}

const TensorInfo* SafetensorsFile::tensor(std::string_view name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

void SafetensorsWriter::add_tensor(std::string name, DType type, std::vector<int64_t> shape,
                                   std::vector<uint8_t> bytes) {
  tensors_.push_back({std::move(name), type, std::move(shape), std::move(bytes)});
}

void SafetensorsWriter::set_metadata(std::string key, std::string value) {
  metadata_[std::move(key)] = std::move(value);
}

std::string SafetensorsWriter::header_json() const {
  Json header = Json::object();
  if (!metadata_.empty()) {
    Json md = Json::object();
    for (const auto& [k, v] : metadata_) md[k] = v;
    header["__metadata__"] = md;
  }
  uint64_t offset = 0;
  for (const Tensor& t : tensors_) {
    const char* dtype = st_name(t.type);
    if (dtype == nullptr) {
      throw Error(
          cat("safetensors writer: tensor '", t.name, "' has type ", dtype_name(t.type), " (F32, F16 or BF16 only)"));
    }
    if (t.name == "__metadata__" || header.contains(t.name)) {
      throw Error(cat("safetensors writer: tensor name '", t.name, "' is reserved or used twice"));
    }
    uint64_t numel = 1;
    for (int64_t d : t.shape) {
      if (d < 0) throw Error(cat("safetensors writer: tensor '", t.name, "' has a negative dimension"));
      numel *= static_cast<uint64_t>(d);
    }
    const uint64_t nbytes = numel * dtype_info(t.type).type_size;
    if (nbytes != t.bytes.size()) {
      throw Error(cat("safetensors writer: tensor '", t.name, "' holds ", t.bytes.size(),
                      " bytes, its shape and type need ", nbytes));
    }
    header[t.name] = {{"dtype", dtype}, {"shape", t.shape}, {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
  }
  std::string text = header.dump();
  text.resize((text.size() + 7) / 8 * 8, ' ');  // as the reference writer: data starts 8-byte aligned
  return text;
}

void SafetensorsWriter::write(const std::string& path) const {
  const std::string header = header_json();
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) throw Error(cat(path, ": cannot create: ", std::strerror(errno)));
  const uint64_t n = header.size();
  char len[8];
  std::memcpy(len, &n, 8);
  f.write(len, 8);
  f.write(header.data(), static_cast<std::streamsize>(header.size()));
  for (const Tensor& t : tensors_) {
    f.write(reinterpret_cast<const char*>(t.bytes.data()), static_cast<std::streamsize>(t.bytes.size()));
  }
  f.close();
  if (!f) throw Error(cat(path, ": write failed: ", std::strerror(errno)));
}

}  // namespace tpinfer
