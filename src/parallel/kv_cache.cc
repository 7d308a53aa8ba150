#include "parallel/kv_cache.h"

#include "core/error.h"

namespace tpinfer {

KVCache::KVCache(int n_layers, int n_kv_heads, int head_dim, int block_size, int n_blocks, DType type)
    : n_layers_(n_layers),
      n_kv_heads_(n_kv_heads),
      head_dim_(head_dim),
      block_size_(block_size),
      n_blocks_(n_blocks),
      type_(type) {
  if (type != DType::F32 && type != DType::F16 && type != DType::BF16 && type != DType::Q8_0) {
    throw ConfigError(cat("KV cache type ", dtype_name(type), " is not supported; valid: f32, f16, bf16, q8_0"));
  }
  if (type == DType::Q8_0 && head_dim % 32 != 0) {
    throw ConfigError(cat("KV cache type q8_0 needs a head size that is a multiple of 32 (this model's: ", head_dim,
                          "); use f16 or bf16"));
  }
  slot_bytes_ = row_bytes(type, static_cast<uint64_t>(n_kv_heads) * static_cast<uint64_t>(head_dim));
  layer_bytes_ = slot_bytes_ * static_cast<uint64_t>(block_size) * static_cast<uint64_t>(n_blocks);
  k_.resize(static_cast<size_t>(layer_bytes_ * static_cast<uint64_t>(n_layers)));
  v_.resize(k_.size());
}

void KVCache::store(int layer, int64_t slot, const float* k, const float* v) {
  if (slot < 0 || slot >= static_cast<int64_t>(block_size_) * n_blocks_) {
    throw Error(cat("KV slot ", slot, " outside the cache of ", n_blocks_, " blocks of ", block_size_));
  }
  const uint64_t at = static_cast<uint64_t>(layer) * layer_bytes_ + static_cast<uint64_t>(slot) * slot_bytes_;
  const int64_t n = static_cast<int64_t>(n_kv_heads_) * head_dim_;
  cpu::store_kv(type_, k, k_.data() + at, n);
  cpu::store_kv(type_, v, v_.data() + at, n);
}

cpu::KVLayerView KVCache::layer(int layer) const {
  const uint64_t at = static_cast<uint64_t>(layer) * layer_bytes_;
  return {type_, k_.data() + at, v_.data() + at, slot_bytes_, head_dim_, block_size_};
}

}  // namespace tpinfer
