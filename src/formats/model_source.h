// A model on disk, whatever its format: a GGUF file, or a Hugging Face folder
// (config.json + model.safetensors or sharded model-0000x-of-0000y.safetensors
// with model.safetensors.index.json, tokenizer.json, tokenizer_config.json,
// generation_config.json). It yields the ModelConfig and the tensors under
// canonical GGUF-style names, so nothing above formats/ knows which format it was:
//
//   token_embd.weight  output_norm.weight  output.weight (absent when tied)
//   blk.N.attn_norm.weight  blk.N.attn_q.weight  blk.N.attn_k.weight
//   blk.N.attn_v.weight  blk.N.attn_output.weight  blk.N.attn_q.bias (k, v)
//   blk.N.attn_q_norm.weight  blk.N.attn_k_norm.weight  blk.N.ffn_norm.weight
//   blk.N.ffn_gate.weight  blk.N.ffn_up.weight  blk.N.ffn_down.weight
//   rope_freqs.weight (optional)
//
// Unsupported architectures raise ConfigError listing kSupportedArchitectures.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "formats/gguf.h"
#include "formats/model_config.h"
#include "formats/safetensors.h"
#include "formats/tensor_info.h"

namespace tpinfer {

class ModelSource {
 public:
  // A path ending in .gguf (or a file with GGUF magic) opens as GGUF; a directory
  // opens as a Hugging Face folder. Throws FormatError / ConfigError.
  static std::unique_ptr<ModelSource> open(const std::string& path);

  const std::string& path() const { return path_; }
  std::string_view format() const { return gguf_ ? "gguf" : "safetensors"; }
  const ModelConfig& config() const { return config_; }

  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find(std::string_view canonical_name) const;
  // Like find, but throws FormatError naming the file and the missing tensor.
  const TensorInfo& get(std::string_view canonical_name) const;

  // The GGUF file (metadata, tokenizer) when the source is GGUF, else null.
  const GgufFile* gguf() const { return gguf_.get(); }
  // The Hugging Face folder when the source is one, else empty.
  const std::string& hf_dir() const { return hf_dir_; }
  // Raw text of the folder's chat template / tokenizer files, if any (HF only).

 private:
  std::string path_;
  ModelConfig config_;
  std::unique_ptr<GgufFile> gguf_;
  std::string hf_dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> shards_;
  std::vector<TensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> index_;

  void index_tensors();
  void validate_shapes() const;
};

}  // namespace tpinfer
