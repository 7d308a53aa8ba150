#include "engine/block_allocator.h"

#include "core/error.h"

namespace tpinfer {

BlockAllocator::BlockAllocator(int n_blocks, int block_size) : n_blocks_(n_blocks), block_size_(block_size) {
  if (n_blocks < 1 || block_size < 1) throw ConfigError(cat("KV cache needs blocks: ", n_blocks, " x ", block_size));
  for (int b = n_blocks - 1; b >= 0; --b) free_.push_back(b);
}

bool BlockAllocator::reserve(std::vector<int32_t>& table, int64_t tokens) {
  const int need = blocks_for(tokens) - static_cast<int>(table.size());
  if (need <= 0) return true;
  if (need > free_blocks()) return false;
  for (int i = 0; i < need; ++i) {
    table.push_back(free_.back());
    free_.pop_back();
  }
  return true;
}

void BlockAllocator::release(std::vector<int32_t>& table) {
  for (auto it = table.rbegin(); it != table.rend(); ++it) free_.push_back(*it);
  table.clear();
}

}  // namespace tpinfer
