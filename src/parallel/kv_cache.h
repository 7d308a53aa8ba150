// A rank's paged KV cache: n_blocks blocks of block_size token slots per layer,
// each slot holding the keys and values of the rank's own KV heads only. Which
// blocks a sequence uses is decided by the driver (engine/block_allocator.h) and
// arrives with each batch; every rank has the same block layout.
#pragma once

#include <cstdint>
#include <vector>

#include "backend/cpu/attention.h"
#include "core/dtype.h"

namespace tpinfer {

class KVCache {
 public:
  KVCache(int n_layers, int n_kv_heads, int head_dim, int block_size, int n_blocks, DType type);

  int block_size() const { return block_size_; }
  int n_blocks() const { return n_blocks_; }
  DType type() const { return type_; }
  uint64_t bytes() const { return static_cast<uint64_t>(k_.size() + v_.size()); }

  // Stores the rank's keys and values ([n_kv_heads, head_dim] each) of one
  // token at `slot` (block * block_size + offset) of `layer`.
  void store(int layer, int64_t slot, const float* k, const float* v);
  cpu::KVLayerView layer(int layer) const;

 private:
  int n_layers_, n_kv_heads_, head_dim_, block_size_, n_blocks_;
  DType type_;
  uint64_t slot_bytes_;
  uint64_t layer_bytes_;
  std::vector<uint8_t> k_, v_;
};

}  // namespace tpinfer
