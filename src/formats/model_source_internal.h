// What the pieces of ModelSource share inside formats/: the config reader of
// each format (gguf_config.cc, hf_config.cc), what both readers use
// (config_checks.cc), and the mapping of tensor names to the canonical ones
// (tensor_names.cc). Internal to formats/: callers use model_source.h.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "formats/gguf.h"
#include "formats/model_config.h"
#include "formats/tensor_info.h"

namespace tpinfer {

// ---- config readers
// The ModelConfig of a GGUF file's metadata (model_source.h lists the keys).
ModelConfig gguf_config(const GgufFile& g);
// The ModelConfig of a Hugging Face folder's config.json and generation_config.json.
ModelConfig hf_config(const std::string& dir);
// A JSON file, parsed; FormatError naming the file and offset when it is not JSON.
nlohmann::json read_json(const std::string& path);

// ---- shared by the readers (config_checks.cc)
// ConfigError: `name` is not a supported architecture.
[[noreturn]] void unsupported_arch(const std::string& path, std::string_view name);
// FormatError naming `path` unless `c` is a usable config, whatever the format.
void check_config(const ModelConfig& c, const std::string& path);
// Adds token `id` to the end-of-sequence tokens (once; the first is eos_token).
void add_eos(ModelConfig& c, int64_t id);

// "[a, b, c]", for errors (model_source.cc).
std::string shape_str(const std::vector<int64_t>& s);

// ---- tensor names (tensor_names.cc)
// The canonical name of a Hugging Face tensor, with its layer and expert (-1
// when none); nullopt for a tensor tpinfer does not use.
std::optional<std::string> canonical_name(std::string_view hf, long* layer, long* expert);
// Whether `name` is GGUF's stack of a layer's experts, and which layer and matrix.
bool parse_stacked_name(std::string_view name, int* layer, std::string_view* base);
// Reshapes the [1, hidden] shared-expert gates to the canonical [hidden].
void normalize_shared_gate(std::vector<TensorInfo>& tensors);

}  // namespace tpinfer
