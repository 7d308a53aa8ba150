// `tpinfer synth`: random-weight models of any real shape, written as GGUF (any
// tensor type, quantized ones included) or as a Hugging Face folder with
// safetensors (f32, f16, bf16), with a byte-level BPE tokenizer of the requested
// vocabulary size. Deterministic per seed. The same seed gives the same weights
// in both formats (GGUF llama Q/K rows permuted to interleaved RoPE order as
// llama.cpp's converter does), so the two must produce the same logits.
//
// Mixture-of-experts architectures (mixtral, qwen2moe, qwen3moe) get a router
// and `experts` SwiGLU experts of `ffn` features per layer (GGUF: stacked
// ffn_*_exps tensors as llama.cpp writes them, the router kept in F32 when the
// rest is quantized, as llama-quantize leaves it; safetensors: one tensor per
// expert, under transformers' names), and qwen2moe a gated shared expert.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/dtype.h"
#include "formats/model_config.h"

namespace tpinfer {

struct SynthSpec {
  Arch arch = Arch::Llama;
  int layers = 2;
  int hidden = 256;
  int heads = 8;
  int kv_heads = 8;
  int head_dim = 0;  // 0: hidden / heads
  int ffn = 688;
  int vocab = 1000;
  int context = 2048;
  float rope_theta = 10000.0f;
  bool rope_llama3 = false;  // Llama 3.1 rope scaling (factor 8, 1/4, original 8192)
  bool qkv_bias = false;     // forced on for qwen2
  bool tied_embeddings = false;
  DType dtype = DType::F32;
  uint64_t seed = 7;
  // Mixture of experts (arch mixtral, qwen2moe, qwen3moe); ffn is each expert's size.
  int experts = 0;
  int experts_used = 0;
  int shared_expert_ffn = 0;    // qwen2moe's shared expert (0: ffn)
  bool norm_topk_prob = false;  // qwen2moe, qwen3moe (mixtral always renormalizes)
};

// Named shapes: "tiny-mixtral" (8 experts, 2 per token), "tiny-qwen2-moe" (4
// experts, 1 per token, a gated shared expert), "tiny-qwen3-moe" (8 experts,
// 2 per token, renormalized). nullopt for another name.
std::optional<SynthSpec> synth_preset(std::string_view name);
std::vector<std::string> synth_preset_names();

// Writes the model to `out`: a .gguf file, or else a Hugging Face folder.
// Throws ConfigError for impossible shapes or a dtype the format cannot hold.
void write_synth_model(const SynthSpec& spec, const std::string& out);

// Tensor type synth uses for a matrix whose rows have `cols` values: `wanted`
// when its block divides cols, else the closest fallback that does (q8_0, f16).
DType synth_tensor_type(DType wanted, int64_t cols);

}  // namespace tpinfer
