// The hyper-parameters of a decoder-only transformer, whatever file it came from.
// Readers (GGUF metadata, Hugging Face config.json) fill it; model/ builds from it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tpinfer {

// Mixtral is GGUF architecture "llama" with experts; the MoE architectures
// share the Llama-family attention of their dense siblings.
enum class Arch { Llama, Mistral, Qwen2, Qwen3, Mixtral, Qwen2Moe, Qwen3Moe };

// Names accepted in GGUF general.architecture / HF architectures, for errors.
inline constexpr const char* kSupportedArchitectures =
    "llama (LlamaForCausalLM; with experts: MixtralForCausalLM), mistral (MistralForCausalLM), qwen2 "
    "(Qwen2ForCausalLM), qwen3 (Qwen3ForCausalLM), qwen2moe (Qwen2MoeForCausalLM), qwen3moe "
    "(Qwen3MoeForCausalLM)";

// The most routed experts per layer a model may have (published ones have at
// most a few hundred).
inline constexpr int kMaxExperts = 4096;

// Pairs rotated by RoPE: Interleaved rotates (2i, 2i+1) (GGUF llama, after the
// converter's Q/K row permutation); NeoX rotates (i, i + head_dim/2) (Hugging Face
// checkpoints, GGUF qwen2/qwen3).
enum class RopeStyle { Interleaved, NeoX };

struct ModelConfig {
  Arch arch = Arch::Llama;
  std::string arch_name;  // as written in the file ("llama", "qwen2", ...)
  std::string name;       // general.name or the directory name
  int n_layers = 0;
  int hidden = 0;
  int n_heads = 0;
  int n_kv_heads = 0;
  int head_dim = 0;  // usually hidden / n_heads; Qwen3 and others may differ
  int ffn = 0;       // intermediate size (of each routed expert in a MoE model)
  int vocab = 0;
  int max_context = 0;
  float rms_eps = 1e-5f;
  float rope_theta = 10000.0f;
  RopeStyle rope_style = RopeStyle::Interleaved;
  // Llama 3.1-style rope scaling: per-frequency divisors, head_dim/2 of them;
  // empty when the model has no scaling.
  std::vector<float> rope_freq_factors;
  bool qkv_bias = false;         // Qwen2: biases on Q, K, V
  bool qk_norm = false;          // Qwen3: RMSNorm of each head of Q and K before RoPE
  bool tied_embeddings = false;  // lm_head shares token_embd.weight
  int bos_token = -1;            // -1: none
  int eos_token = -1;            // the model's main end-of-sequence token (-1: none)
  // Every token that ends generation, eos_token first: a Hugging Face
  // eos_token_id list (config.json, then generation_config.json), or GGUF's
  // eos, eot and eom ids.
  std::vector<int> eos_tokens;

  // Mixture of experts: every layer's MLP is n_experts SwiGLU experts of `ffn`
  // features; a router (softmax over all experts) picks the n_experts_used
  // most probable per token and sums their outputs weighted by those
  // probabilities, renormalized to sum to 1 when norm_topk_prob. A shared
  // expert (Qwen2-MoE) sees every token, scaled by sigmoid(h . w) when
  // shared_expert_gate. n_experts == 0: a dense SwiGLU MLP.
  int n_experts = 0;
  int n_experts_used = 0;
  int shared_expert_ffn = 0;  // 0: no shared expert
  bool shared_expert_gate = false;
  bool norm_topk_prob = false;

  bool is_moe() const { return n_experts > 0; }
};

const char* arch_name(Arch a);
// The GGUF general.architecture of `a` ("llama" for Mixtral, as llama.cpp writes it).
const char* gguf_arch_name(Arch a);

// llama3 rope_scaling: factor, low/high frequency factors, original context.
// Returns the head_dim/2 divisors of the base frequencies (as llama.cpp's
// rope_freqs tensor and transformers' _compute_llama3_parameters do).
std::vector<float> llama3_rope_factors(int head_dim, float theta, float factor, float low_freq_factor,
                                       float high_freq_factor, int original_max_position);

}  // namespace tpinfer
