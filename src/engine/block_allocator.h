// Hands out the KV-cache blocks of all ranks (they share one block layout) to
// sequences, on the driver. A sequence's block table grows as it does; its
// blocks return to the free list the moment it is released.
#pragma once

#include <cstdint>
#include <vector>

namespace tpinfer {

class BlockAllocator {
 public:
  BlockAllocator(int n_blocks, int block_size);

  int block_size() const { return block_size_; }
  int n_blocks() const { return n_blocks_; }
  int free_blocks() const { return static_cast<int>(free_.size()); }
  // Blocks needed to hold `tokens` positions.
  int blocks_for(int64_t tokens) const { return static_cast<int>((tokens + block_size_ - 1) / block_size_); }

  // Grows `table` to hold `tokens` positions. Returns false (and leaves the table
  // as it was) when there are not enough free blocks.
  bool reserve(std::vector<int32_t>& table, int64_t tokens);
  // Returns every block of `table` to the free list and clears it.
  void release(std::vector<int32_t>& table);

 private:
  int n_blocks_, block_size_;
  std::vector<int32_t> free_;
};

}  // namespace tpinfer
