// `tpinfer synth`: random-weight models of any real shape, written as GGUF (any
// tensor type, quantized ones included) or as a Hugging Face folder with
// safetensors (f32, f16, bf16), with a byte-level BPE tokenizer of the requested
// vocabulary size. Deterministic per seed. The same seed gives the same weights
// in both formats (GGUF llama Q/K rows permuted to interleaved RoPE order as
// llama.cpp's converter does), so the two must produce the same logits.
#pragma once

#include <cstdint>
#include <string>

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
};

// Writes the model to `out`: a .gguf file, or else a Hugging Face folder.
// Throws ConfigError for impossible shapes or a dtype the format cannot hold.
void write_synth_model(const SynthSpec& spec, const std::string& out);

// Tensor type synth uses for a matrix whose rows have `cols` values: `wanted`
// when its block divides cols, else the closest fallback that does (q8_0, f16).
DType synth_tensor_type(DType wanted, int64_t cols);

}  // namespace tpinfer
