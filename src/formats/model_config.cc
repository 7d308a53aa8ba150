#include "formats/model_config.h"

#include <cmath>
#include <numbers>

namespace tpinfer {

const char* arch_name(Arch a) {
  switch (a) {
    case Arch::Llama: return "llama";
    case Arch::Mistral: return "mistral";
    case Arch::Qwen2: return "qwen2";
    case Arch::Qwen3: return "qwen3";
    case Arch::Mixtral: return "mixtral";
    case Arch::Qwen2Moe: return "qwen2moe";
    case Arch::Qwen3Moe: return "qwen3moe";
  }
  return "unknown";
}

const char* gguf_arch_name(Arch a) { return a == Arch::Mixtral ? "llama" : arch_name(a); }

std::vector<float> llama3_rope_factors(int head_dim, float theta, float factor, float low_freq_factor,
                                       float high_freq_factor, int original_max_position) {
  const double low_freq_wavelen = original_max_position / low_freq_factor;
  const double high_freq_wavelen = original_max_position / high_freq_factor;
  std::vector<float> factors(static_cast<size_t>(head_dim / 2));
  for (int i = 0; i < head_dim / 2; ++i) {
    const double freq = 1.0 / std::pow(static_cast<double>(theta), 2.0 * i / head_dim);
    const double wavelen = 2.0 * std::numbers::pi / freq;
    double divisor;
    if (wavelen < high_freq_wavelen) {
      divisor = 1.0;
    } else if (wavelen > low_freq_wavelen) {
      divisor = factor;
    } else {
      const double smooth =
          (original_max_position / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
      // new_freq = (1 - smooth) * freq / factor + smooth * freq
      divisor = 1.0 / ((1.0 - smooth) / factor + smooth);
    }
    factors[static_cast<size_t>(i)] = static_cast<float>(divisor);
  }
  return factors;
}

}  // namespace tpinfer
