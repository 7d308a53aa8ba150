// Hands out the KV-cache blocks of all ranks (they share one block layout) to
// sequences, on the driver, and keeps the prefix cache.
//
// A block is free, held (a reference count of the sequences whose tables hold
// it) or cached and unheld. A full block whose K/V are computed can be
// committed to the prefix cache under its chain hash: the hash of its tokens
// and of every token before it (block i covers tokens [0, (i + 1) x
// block_size)). A later sequence whose prompt begins with the same tokens
// finds those blocks (acquire_prefix) and holds them too, so a shared block has
// several holders; nobody writes into it again, since only full blocks are
// committed and a sequence writes at its positions past them. A lookup is
// exact, not only by hash: a cached block keeps its tokens and its parent
// (the cached block before it), and both must match.
//
// When the last holder releases a cached block it stays findable, in LRU order;
// reserve() takes never-used or freed blocks first, then evicts the least
// recently released cached blocks. A held block is never evicted.
//
// Threads: everything on the driver's scheduler thread, except
// cached_prefix(), which any thread may call (a data-parallel dispatcher asks
// each replica how much of a prompt it holds).
#pragma once

#include <cstdint>
#include <list>
#include <mutex>
#include <span>
#include <unordered_map>
#include <vector>

namespace tpinfer {

class BlockAllocator {
 public:
  BlockAllocator(int n_blocks, int block_size);

  int block_size() const { return block_size_; }
  int n_blocks() const { return n_blocks_; }
  // Blocks reserve() can hand out: free ones and cached ones nobody holds.
  int free_blocks() const { return static_cast<int>(free_.size() + lru_.size()); }
  // Blocks held by at least one sequence.
  int used_blocks() const { return n_blocks_ - free_blocks(); }
  // Blocks in the prefix cache, held or not.
  int cached_blocks() const { return static_cast<int>(index_.size()); }
  // Cached blocks evicted to make room, since construction.
  uint64_t evictions() const { return evictions_; }
  // Blocks needed to hold `tokens` positions.
  int blocks_for(int64_t tokens) const { return static_cast<int>((tokens + block_size_ - 1) / block_size_); }

  // Grows `table` with fresh blocks (one holder each) to hold `tokens`
  // positions, evicting unheld cached blocks when no free one is left. Returns
  // false (and leaves the table as it was) when there are not enough.
  bool reserve(std::vector<int32_t>& table, int64_t tokens);
  // Drops the table's hold on each of its blocks and clears it. A block nobody
  // holds goes back to the free list, or, when cached, to the LRU end of the
  // unheld cached blocks (the table's last block is evicted first).
  void release(std::vector<int32_t>& table);

  // The chain hash of block `tokens` after the blocks whose hash is `parent`
  // (0 for the first block).
  static uint64_t chain_hash(uint64_t parent, std::span<const int32_t> tokens);
  // Extends `hashes` to the chain hashes of the first `n_full` full blocks of
  // `tokens` (n_full <= tokens.size() / block_size).
  void hash_blocks(std::span<const int32_t> tokens, size_t n_full, std::vector<uint64_t>& hashes) const;

  // Appends to the empty `table` the cached blocks holding the longest prefix
  // of `tokens`, at most `max_blocks` of them, holding each; `hashes` are the
  // chain hashes of `tokens`' full blocks (at least max_blocks of them).
  // Returns how many blocks it found.
  int acquire_prefix(std::vector<int32_t>& table, std::span<const int32_t> tokens, std::span<const uint64_t> hashes,
                     int max_blocks);
  // Commits block i of `table` (held by the caller; its K/V computed) to the
  // cache as the block of `tokens` [i x block_size, (i + 1) x block_size) with
  // chain hash `hash`. Blocks 0..i-1 must be committed already. When another
  // block holds the same tokens after the same parent, the table takes that one
  // instead and its own block is freed, so that a later block's parent is the
  // one a lookup finds. A different block under the same hash (a collision)
  // leaves the block uncached.
  void commit(std::vector<int32_t>& table, int i, std::span<const int32_t> tokens, uint64_t hash);
  // How many leading blocks of `hashes` are in the cache, by hash only (any
  // thread; a dispatcher's estimate, not a lookup for reuse).
  int cached_prefix(std::span<const uint64_t> hashes) const;

 private:
  struct Block {
    int refs = 0;
    bool cached = false;
    uint64_t hash = 0;
    int32_t parent = -1;  // the cached block before it; -1 for a sequence's first block
    std::vector<int32_t> tokens;
    std::list<int32_t>::iterator lru;  // valid while cached and unheld
  };
  int32_t take_block();
  void hold(int32_t b);
  void uncache(int32_t b);

  int n_blocks_, block_size_;
  std::vector<Block> blocks_;
  std::vector<int32_t> free_;                    // unheld, not cached
  std::list<int32_t> lru_;                       // unheld and cached, least recently released first
  std::unordered_map<uint64_t, int32_t> index_;  // chain hash -> cached block
  mutable std::mutex index_mutex_;               // index_ against cached_prefix() from other threads
  uint64_t evictions_ = 0;
};

}  // namespace tpinfer
