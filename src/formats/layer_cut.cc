#include "formats/layer_cut.h"

#include <charconv>
#include <optional>
#include <string_view>
#include <variant>
#include <vector>

#include "core/error.h"
#include "formats/gguf.h"
#include "formats/gguf_writer.h"

namespace tpinfer {
namespace {

// The layer of "blk.N.<rest>", or nullopt for a global tensor.
std::optional<int> layer_of(std::string_view name) {
  if (!name.starts_with("blk.")) return std::nullopt;
  name.remove_prefix(4);
  int layer = -1;
  const auto [end, ec] = std::from_chars(name.data(), name.data() + name.size(), layer);
  if (ec != std::errc{} || end == name.data() || *end != '.') return std::nullopt;
  return layer;
}

}  // namespace

void cut_gguf_layers(const std::string& in, int layers, const std::string& out) {
  const std::unique_ptr<GgufFile> g = GgufFile::open(in);
  const std::optional<std::string> arch = g->get_string("general.architecture");
  if (!arch) throw FormatError(cat(in, ": expected metadata key 'general.architecture' (a string), found none"));
  const std::string count_key = *arch + ".block_count";
  const std::optional<int64_t> n_layers = g->get_int(count_key);
  if (!n_layers) throw FormatError(cat(in, ": expected metadata key '", count_key, "', found none"));
  if (layers < 1 || layers > *n_layers) {
    throw ConfigError(cat("--layers ", layers, ": the model has ", *n_layers, " layers; valid: 1 to ", *n_layers));
  }
  GgufWriter w;
  for (const auto& [key, value] : g->metadata()) {
    if (key == count_key) {  // the same GGUF type, the new count
      GgufValue v = value;
      if (std::holds_alternative<int64_t>(v.value)) {
        v.value = int64_t{layers};
      } else {
        v.value = static_cast<uint64_t>(layers);
      }
      w.set(key, v);
    } else {
      w.set(key, value);
    }
  }
  for (const TensorInfo& t : g->tensors()) {
    const std::optional<int> l = layer_of(t.name);
    if (l && *l >= layers) continue;
    w.add_tensor(t.name, t.type, t.shape, std::vector<uint8_t>(t.data, t.data + t.nbytes));
  }
  w.write(out);
}

}  // namespace tpinfer
