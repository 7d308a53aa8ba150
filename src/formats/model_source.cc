// ModelSource: opens a GGUF file or a Hugging Face folder, exposes its tensors
// under canonical names (GGUF's stacked experts as one view per expert) and
// checks its tensors against the config and the family's tensor table
// (formats/tensor_table.h). The config readers
// are gguf_config.cc and hf_config.cc, the name mapping tensor_names.cc.
#include "formats/model_source.h"

#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>

#include "core/error.h"
#include "formats/model_source_internal.h"
#include "formats/tensor_table.h"

namespace tpinfer {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

}  // namespace

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += cat(i ? ", " : "", s[i]);
  return out + "]";
}

std::unique_ptr<ModelSource> ModelSource::open(const std::string& path) {
  auto s = std::unique_ptr<ModelSource>(new ModelSource());
  s->path_ = path;
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (ec || !fs::exists(st)) throw ConfigError(cat(path, ": no such model file or folder"));
  if (fs::is_directory(st)) {
    s->open_hf(path);
  } else {
    const fs::path p(path);
    if (p.extension() == ".safetensors" || p.extension() == ".json") {
      throw ConfigError(
          cat(path, ": expected a GGUF file or a Hugging Face folder; for a safetensors model pass its folder (",
              p.parent_path().string(), ")"));
    }
    s->open_gguf(path);
  }
  s->index_tensors();
  s->validate_shapes();
  return s;
}

void ModelSource::open_gguf(const std::string& path) {
  gguf_ = GgufFile::open(path);
  config_ = gguf_config(*gguf_);
  // Stacked experts (blk.N.ffn_{gate,up,down}_exps.weight, [experts, rows,
  // cols]) become one view per expert: expert e's matrix is a contiguous run of
  // whole rows, so nothing is copied.
  for (const TensorInfo& t : gguf_->tensors()) {
    int layer = -1;
    std::string_view base;
    if (!parse_stacked_name(t.name, &layer, &base)) {
      tensors_.push_back(t);
      continue;
    }
    if (!config_.is_moe()) {
      throw FormatError(cat(t.file, ": tensor '", t.name, "' holds experts, but the metadata has no ",
                            config_.arch_name, ".expert_count"));
    }
    if (t.shape.size() != 3 || t.shape[0] != config_.n_experts || t.shape[1] <= 0 || t.shape[2] <= 0) {
      throw FormatError(cat(t.file, ": tensor '", t.name, "': expected shape [", config_.n_experts,
                            " experts, rows, cols], found ", shape_str(t.shape)));
    }
    const uint64_t each = t.nbytes / static_cast<uint64_t>(config_.n_experts);
    for (int e = 0; e < config_.n_experts; ++e) {
      TensorInfo v = t;
      v.name = expert_tensor_name(layer, base, e);
      v.shape = {t.shape[1], t.shape[2]};
      v.nbytes = each;
      v.data = t.data + static_cast<uint64_t>(e) * each;
      v.offset = t.offset + static_cast<uint64_t>(e) * each;
      tensors_.push_back(std::move(v));
    }
  }
  normalize_shared_gate(tensors_);
}

void ModelSource::open_hf(const std::string& dir) {
  hf_dir_ = dir;
  config_ = hf_config(dir);
  const fs::path root(dir);
  const std::string index_path = (root / "model.safetensors.index.json").string();
  const std::string single_path = (root / "model.safetensors").string();
  // HF name -> (shard, its TensorInfo).
  std::vector<std::pair<std::string, const TensorInfo*>> found;
  if (fs::exists(index_path)) {
    const Json index = read_json(index_path);
    if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object()) {
      throw FormatError(cat(index_path, ": expected an object with a \"weight_map\" object, found none"));
    }
    std::map<std::string, SafetensorsFile*> opened;
    for (const auto& [name, file] : index["weight_map"].items()) {
      if (!file.is_string())
        throw FormatError(cat(index_path, ": weight_map[\"", name, "\"]: expected a file name, found ", file.dump()));
      const std::string shard = file.get<std::string>();
      // A shard must be a plain file name inside the folder.
      if (shard.empty() || shard.find('/') != std::string::npos || shard.find('\\') != std::string::npos ||
          shard == "." || shard == "..") {
        throw FormatError(
            cat(index_path, ": weight_map[\"", name, "\"]: expected a file name in the folder, found \"", shard, "\""));
      }
      auto it = opened.find(shard);
      if (it == opened.end()) {
        const std::string shard_path = (root / shard).string();
        if (!fs::is_regular_file(shard_path)) {
          throw FormatError(cat(index_path, ": weight_map names shard '", shard, "' (for tensor '", name,
                                "'), which is missing: ", shard_path));
        }
        shards_.push_back(SafetensorsFile::open(shard_path));
        it = opened.emplace(shard, shards_.back().get()).first;
      }
      const TensorInfo* t = it->second->tensor(name);
      if (t == nullptr) {
        throw FormatError(cat(index_path, ": weight_map puts tensor '", name, "' in ", it->second->path(),
                              ", which does not hold it"));
      }
      found.emplace_back(name, t);
    }
  } else if (fs::exists(single_path)) {
    shards_.push_back(SafetensorsFile::open(single_path));
    for (const TensorInfo& t : shards_.back()->tensors()) found.emplace_back(t.name, &t);
  } else {
    throw FormatError(cat(dir, ": expected model.safetensors or model.safetensors.index.json, found neither"));
  }
  for (const auto& [hf_name, t] : found) {
    long layer = -1, expert = -1;
    const std::optional<std::string> canonical = canonical_name(hf_name, &layer, &expert);
    if (!canonical) continue;
    if (*canonical == "output.weight" && config_.tied_embeddings) continue;
    if (layer >= config_.n_layers) {
      throw FormatError(cat(t->file, ": tensor '", hf_name, "' belongs to layer ", layer, ", but config.json has ",
                            config_.n_layers, " layers"));
    }
    if (expert >= config_.n_experts) {
      throw FormatError(cat(t->file, ": tensor '", hf_name, "' belongs to expert ", expert, ", but config.json has ",
                            config_.n_experts, " experts"));
    }
    TensorInfo c = *t;
    c.name = *canonical;
    tensors_.push_back(std::move(c));
  }
  normalize_shared_gate(tensors_);
}

void ModelSource::index_tensors() {
  index_.clear();
  for (size_t i = 0; i < tensors_.size(); ++i) {
    if (!index_.emplace(tensors_[i].name, i).second) {
      throw FormatError(cat(tensors_[i].file, ": tensor '", tensors_[i].name, "' appears twice"));
    }
  }
}

const TensorInfo* ModelSource::find(std::string_view canonical_name) const {
  const auto it = index_.find(canonical_name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

const TensorInfo& ModelSource::get(std::string_view canonical_name) const {
  const TensorInfo* t = find(canonical_name);
  if (t == nullptr) throw FormatError(cat(path_, ": missing tensor '", canonical_name, "'"));
  return *t;
}

void ModelSource::validate_shapes() const {
  const ModelConfig& c = config_;
  for (const ModelTensor& m : model_tensors(c)) {
    const std::string name = m.name();
    const std::vector<int64_t> shape = tensor_shape(*m.decl, c);
    const TensorInfo* t = find(name);
    if (t == nullptr) {
      if (!m.decl->presence.required) continue;
      throw FormatError(cat(path_, ": missing tensor '", name, "' (expected shape ", shape_str(shape), ")"));
    }
    if (t->shape != shape) {
      throw FormatError(
          cat(t->file, ": tensor '", name, "': expected shape ", shape_str(shape), ", found ", shape_str(t->shape)));
    }
  }
  for (const TensorInfo& t : tensors_) {
    std::string why;
    if (find_model_tensor(c, t.name, &why) == nullptr) {
      throw FormatError(cat(t.file, ": unexpected tensor '", t.name, "': ", why));
    }
    const DTypeInfo& info = dtype_info(t.type);
    if (info.quantized && t.cols() % info.block_size != 0) {
      throw FormatError(cat(t.file, ": tensor '", t.name, "': expected a row length that is a multiple of ",
                            info.block_size, " (the ", info.name, " block size), found ", t.cols()));
    }
  }
}

}  // namespace tpinfer
