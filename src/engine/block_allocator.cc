#include "engine/block_allocator.h"

#include <algorithm>

#include "core/error.h"

namespace tpinfer {

namespace {

// SplitMix64's finalizer: every input bit reaches every output bit.
uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

}  // namespace

BlockAllocator::BlockAllocator(int n_blocks, int block_size)
    : n_blocks_(n_blocks), block_size_(block_size), blocks_(static_cast<size_t>(std::max(n_blocks, 0))) {
  if (n_blocks < 1 || block_size < 1) throw ConfigError(cat("KV cache needs blocks: ", n_blocks, " x ", block_size));
  for (int b = n_blocks - 1; b >= 0; --b) free_.push_back(b);
}

uint64_t BlockAllocator::chain_hash(uint64_t parent, std::span<const int32_t> tokens) {
  uint64_t h = mix64(parent ^ 0x7470696E66657221ull);
  for (int32_t t : tokens) h = mix64(h ^ static_cast<uint32_t>(t));
  return mix64(h ^ tokens.size());
}

void BlockAllocator::hash_blocks(std::span<const int32_t> tokens, size_t n_full, std::vector<uint64_t>& hashes) const {
  const size_t bs = static_cast<size_t>(block_size_);
  while (hashes.size() < n_full && (hashes.size() + 1) * bs <= tokens.size()) {
    const uint64_t parent = hashes.empty() ? 0 : hashes.back();
    hashes.push_back(chain_hash(parent, tokens.subspan(hashes.size() * bs, bs)));
  }
}

int32_t BlockAllocator::take_block() {
  if (!free_.empty()) {
    const int32_t b = free_.back();
    free_.pop_back();
    return b;
  }
  // The least recently released cached block: its tokens go out of the cache.
  const int32_t b = lru_.front();
  lru_.pop_front();
  uncache(b);
  evictions_ += 1;
  return b;
}

void BlockAllocator::uncache(int32_t b) {
  Block& blk = blocks_[static_cast<size_t>(b)];
  if (!blk.cached) return;
  {
    std::lock_guard<std::mutex> lock(index_mutex_);
    auto it = index_.find(blk.hash);
    if (it != index_.end() && it->second == b) index_.erase(it);
  }
  blk.cached = false;
  blk.parent = -1;
  blk.tokens.clear();
}

void BlockAllocator::hold(int32_t b) {
  Block& blk = blocks_[static_cast<size_t>(b)];
  if (blk.refs == 0 && blk.cached) lru_.erase(blk.lru);
  blk.refs += 1;
}

bool BlockAllocator::reserve(std::vector<int32_t>& table, int64_t tokens) {
  const int need = blocks_for(tokens) - static_cast<int>(table.size());
  if (need <= 0) return true;
  if (need > free_blocks()) return false;
  for (int i = 0; i < need; ++i) {
    const int32_t b = take_block();
    blocks_[static_cast<size_t>(b)].refs = 1;
    table.push_back(b);
  }
  return true;
}

void BlockAllocator::release(std::vector<int32_t>& table) {
  for (auto it = table.rbegin(); it != table.rend(); ++it) {
    Block& blk = blocks_[static_cast<size_t>(*it)];
    if (--blk.refs > 0) continue;
    if (blk.cached) {
      blk.lru = lru_.insert(lru_.end(), *it);
    } else {
      free_.push_back(*it);
    }
  }
  table.clear();
}

int BlockAllocator::acquire_prefix(std::vector<int32_t>& table, std::span<const int32_t> tokens,
                                   std::span<const uint64_t> hashes, int max_blocks) {
  const size_t bs = static_cast<size_t>(block_size_);
  int32_t parent = -1;
  int found = 0;
  // The scheduler thread is the only writer of index_: its reads need no lock.
  for (; found < max_blocks && static_cast<size_t>(found) < hashes.size(); ++found) {
    auto it = index_.find(hashes[static_cast<size_t>(found)]);
    if (it == index_.end()) break;
    const Block& blk = blocks_[static_cast<size_t>(it->second)];
    const auto want = tokens.subspan(static_cast<size_t>(found) * bs, bs);
    if (blk.parent != parent || !std::equal(want.begin(), want.end(), blk.tokens.begin(), blk.tokens.end())) break;
    parent = it->second;
  }
  for (int i = 0; i < found; ++i) {
    const int32_t b = index_.at(hashes[static_cast<size_t>(i)]);
    hold(b);
    table.push_back(b);
  }
  return found;
}

void BlockAllocator::commit(std::vector<int32_t>& table, int i, std::span<const int32_t> tokens, uint64_t hash) {
  const size_t bs = static_cast<size_t>(block_size_);
  const int32_t mine = table[static_cast<size_t>(i)];
  Block& blk = blocks_[static_cast<size_t>(mine)];
  if (blk.cached) return;
  const int32_t parent = i == 0 ? -1 : table[static_cast<size_t>(i - 1)];
  if (parent >= 0 && !blocks_[static_cast<size_t>(parent)].cached) return;  // its parent could not be cached
  const auto block_tokens = tokens.subspan(static_cast<size_t>(i) * bs, bs);
  auto it = index_.find(hash);
  if (it != index_.end()) {
    const int32_t other = it->second;
    const Block& o = blocks_[static_cast<size_t>(other)];
    if (o.parent == parent && std::equal(block_tokens.begin(), block_tokens.end(), o.tokens.begin(), o.tokens.end())) {
      // The same K/V computed twice (two sequences prefilled it at once):
      // keep the cached copy, free this one.
      hold(other);
      table[static_cast<size_t>(i)] = other;
      std::vector<int32_t> own{mine};
      release(own);
    }
    return;
  }
  blk.cached = true;
  blk.hash = hash;
  blk.parent = parent;
  blk.tokens.assign(block_tokens.begin(), block_tokens.end());
  std::lock_guard<std::mutex> lock(index_mutex_);
  index_.emplace(hash, mine);
}

int BlockAllocator::cached_prefix(std::span<const uint64_t> hashes) const {
  std::lock_guard<std::mutex> lock(index_mutex_);
  int n = 0;
  while (static_cast<size_t>(n) < hashes.size() && index_.count(hashes[static_cast<size_t>(n)]) > 0) ++n;
  return n;
}

}  // namespace tpinfer
