// A model on disk, whatever its format: a GGUF file, or a Hugging Face folder
// (config.json + model.safetensors or sharded model-0000x-of-0000y.safetensors
// with model.safetensors.index.json, tokenizer.json, tokenizer_config.json,
// generation_config.json). It yields the ModelConfig and the tensors under
// canonical GGUF-style names, so nothing above formats/ knows which format it was.
// The names, their shapes and when a model has each are formats/tensor_table.h's
// table (token_embd.weight, blk.N.attn_q.weight, ..., and for
// mixture-of-experts models the router blk.N.ffn_gate_inp.weight, routed
// expert E's blk.N.ffn_gate.E.weight (up, down), the shared expert and its gate).
//
// GGUF stores the routed experts stacked (blk.N.ffn_gate_exps.weight, [experts,
// rows, cols]); each expert is exposed as a view of its rows, without a copy.
// Hugging Face names: Mixtral block_sparse_moe.gate / .experts.E.w1 (gate), w3
// (up), w2 (down); Qwen-MoE mlp.gate, mlp.experts.E.{gate,up,down}_proj,
// mlp.shared_expert.{gate,up,down}_proj, mlp.shared_expert_gate ([1, hidden]).
//
// Tensor data is never converted: a GGUF llama/mistral file keeps the converter's
// Q/K row permutation (config().rope_style == Interleaved); Hugging Face folders
// and GGUF qwen2/qwen3 use the rotate-half order (NeoX). Tensors are checked
// against the config and the table on open (each required tensor present with
// exactly the shape the config implies; quantized rows whole blocks; no tensor
// the table does not declare for this config): a mismatch is FormatError
// "<file>: tensor '<name>': expected shape [..], found [..]", a missing tensor
// "<file>: missing tensor '<name>' ...", an undeclared one "<file>: unexpected
// tensor '<name>': <why>".
//
// GGUF config: <arch>.block_count, .embedding_length, .attention.head_count,
// .attention.head_count_kv (default head_count), .feed_forward_length,
// .context_length, .attention.layer_norm_rms_epsilon (required),
// .rope.freq_base (default 10000), .attention.key_length (head_dim; default
// hidden / heads), .rope.scaling.type none|linear (+ .rope.scaling.factor);
// vocab from <arch>.vocab_size, else tokenizer.ggml.tokens, else token_embd rows;
// special tokens from tokenizer.ggml.{bos,eos,eot,eom}_token_id; qkv_bias, qk_norm
// and tied_embeddings from the presence of blk.0.attn_q.bias,
// blk.0.attn_q_norm.weight and (absence of) output.weight; rope_freqs.weight (f32,
// head_dim/2) fills rope_freq_factors.
//
// GGUF experts: <arch>.expert_count, .expert_used_count,
// .expert_feed_forward_length, .expert_shared_feed_forward_length,
// .expert_weights_norm, .expert_gating_func (softmax only); a "llama" file
// with experts is Mixtral (model_config.h says how each renormalizes).
//
// Hugging Face config (config.json): architectures[0] (or model_type), the usual
// size keys, rms_norm_eps (default 1e-6), rope_theta (default 10000),
// rope_scaling {rope_type|type: default, llama3, linear} (others: ConfigError),
// tie_word_embeddings (lm_head.weight is then ignored), attention_bias (Qwen2
// always has Q/K/V biases; Qwen3 always has Q/K norms), bos/eos ids (eos may be a
// list) from config.json then generation_config.json. Sliding-window attention
// (Mistral sliding_window, Qwen use_sliding_window) is not implemented, so the
// context is capped to the window. Shards come from the index's weight_map (each
// listed file must exist in the folder and hold its tensor) or model.safetensors.
// Tensor names that tpinfer does not use (rotary inv_freq, ...) are ignored.
//
// MoE: MixtralForCausalLM (num_local_experts, num_experts_per_tok),
// Qwen2MoeForCausalLM / Qwen3MoeForCausalLM (num_experts, num_experts_per_tok,
// moe_intermediate_size, norm_topk_prob default false as in transformers,
// shared_expert_intermediate_size for Qwen2-MoE); every layer must be sparse.
//
// Unsupported architectures raise ConfigError listing kSupportedArchitectures;
// malformed or inconsistent files raise FormatError naming the file.
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
  // A directory opens as a Hugging Face folder; any other file as GGUF. Throws
  // FormatError / ConfigError (ConfigError too when `path` does not exist).
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

 private:
  ModelSource() = default;
  void open_gguf(const std::string& path);
  void open_hf(const std::string& dir);

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

// "blk.<layer>.<base>.<expert>.weight", the canonical name of a routed
// expert's matrix (base: an Expert-scope row of formats/tensor_table.h,
// ffn_gate, ffn_up or ffn_down), and back (false for any other name).
std::string expert_tensor_name(int layer, std::string_view base, int expert);
bool parse_expert_tensor_name(std::string_view name, int* layer, std::string_view* base, int* expert);

}  // namespace tpinfer
