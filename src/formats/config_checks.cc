// What both config readers (gguf_config.cc, hf_config.cc) share: the checks
// every ModelConfig must pass whatever its format, the error for an unsupported
// architecture, and the end-of-sequence token list.

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "formats/model_source_internal.h"

namespace tpinfer {

[[noreturn]] void unsupported_arch(const std::string& path, std::string_view name) {
  throw ConfigError(cat(path, ": unsupported architecture '", name, "'; supported: ", kSupportedArchitectures));
}

// Checks that hold whatever the file format; `path` names the file for errors.
void check_config(const ModelConfig& c, const std::string& path) {
  auto positive = [&](int v, std::string_view what) {
    if (v <= 0) throw FormatError(cat(path, ": expected a positive ", what, ", found ", v));
  };
  positive(c.n_layers, "layer count");
  positive(c.hidden, "hidden size");
  positive(c.n_heads, "attention head count");
  positive(c.n_kv_heads, "KV head count");
  positive(c.head_dim, "head dimension");
  positive(c.ffn, "feed-forward size");
  positive(c.vocab, "vocabulary size");
  positive(c.max_context, "context length");
  if (c.n_heads % c.n_kv_heads != 0) {
    throw FormatError(
        cat(path, ": expected the KV head count to divide the head count ", c.n_heads, ", found ", c.n_kv_heads));
  }
  if (c.head_dim % 2 != 0)
    throw FormatError(cat(path, ": expected an even head dimension (RoPE pairs), found ", c.head_dim));
  if (!(c.rms_eps > 0.0f) || !std::isfinite(c.rms_eps)) {
    throw FormatError(cat(path, ": expected a positive RMS norm epsilon, found ", c.rms_eps));
  }
  if (!(c.rope_theta > 0.0f) || !std::isfinite(c.rope_theta)) {
    throw FormatError(cat(path, ": expected a positive RoPE base frequency, found ", c.rope_theta));
  }
  for (float f : c.rope_freq_factors) {
    if (!(f > 0.0f) || !std::isfinite(f))
      throw FormatError(cat(path, ": expected positive RoPE frequency factors, found ", f));
  }
  if (c.bos_token >= c.vocab) {
    throw FormatError(
        cat(path, ": expected the BOS token id below the vocabulary size ", c.vocab, ", found ", c.bos_token));
  }
  for (int e : c.eos_tokens) {
    if (e >= c.vocab)
      throw FormatError(cat(path, ": expected EOS token ids below the vocabulary size ", c.vocab, ", found ", e));
  }
  const bool moe_arch = c.arch == Arch::Mixtral || c.arch == Arch::Qwen2Moe || c.arch == Arch::Qwen3Moe;
  if (moe_arch != c.is_moe()) {
    throw FormatError(cat(path, ": expected ", moe_arch ? "an expert count" : "no experts", " for architecture ",
                          arch_name(c.arch), ", found ", c.n_experts, " experts"));
  }
  if (c.is_moe()) {
    // Published models have at most a few hundred experts; the cap keeps a
    // hostile count from sizing loops and tables before the tensors are checked.
    if (c.n_experts > kMaxExperts) {
      throw FormatError(cat(path, ": expected at most ", kMaxExperts, " experts, found ", c.n_experts));
    }
    if (c.n_experts_used < 1 || c.n_experts_used > c.n_experts) {
      throw FormatError(
          cat(path, ": expected 1 to ", c.n_experts, " experts used per token, found ", c.n_experts_used));
    }
    if (c.shared_expert_ffn < 0) throw FormatError(cat(path, ": expected a positive shared-expert size"));
  }
}

void add_eos(ModelConfig& c, int64_t id) {
  if (id < 0 || id > std::numeric_limits<int>::max()) return;
  const int v = static_cast<int>(id);
  if (std::find(c.eos_tokens.begin(), c.eos_tokens.end(), v) == c.eos_tokens.end()) c.eos_tokens.push_back(v);
  if (c.eos_token < 0) c.eos_token = v;
}

}  // namespace tpinfer
