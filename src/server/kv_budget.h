// Sizing the paged KV cache from a memory budget (tpinfer serve
// --kv-cache-memory). The budget is per rank, as vLLM's is per GPU: every rank
// holds the same block layout, for its own KV heads only, so the rank with the
// most KV heads decides how many tokens fit:
//
//   bytes per token on rank r = layers x local KV heads(r) x head_dim x 2 (K, V)
//                               x bytes per element of the cache type
// where layers are the rank's pipeline stage's (the fullest stage decides).
//   tokens = floor(budget / max_r bytes per token(r))
#pragma once

#include <cstdint>
#include <string_view>

#include "core/dtype.h"
#include "formats/model_config.h"
#include "parallel/shard_plan.h"

namespace tpinfer::server {

// "512MiB", "2GiB", "1.5G", "300M", "4096" (bytes), "64KiB", "1TB". Binary
// suffixes (KiB, MiB, GiB, TiB, and K, M, G, T, which llama.cpp and vLLM read as
// binary too); KB, MB, GB, TB are decimal. Throws ConfigError on anything else,
// zero or overflow.
uint64_t parse_byte_size(std::string_view text);

// KV-cache bytes one token takes on the busiest rank of `plan`. `stage_layers`:
// the most layers a pipeline stage holds (PipelinePlan::max_stage_layers());
// 0 means the whole model (no pipeline).
uint64_t kv_bytes_per_token(const ModelConfig& config, const ShardPlan& plan, DType kv_type, int stage_layers = 0);

// Tokens a per-rank budget of `bytes` holds, rounded down to whole blocks of
// `block_size`. Throws ConfigError when not even one block fits.
int64_t kv_tokens_for_budget(uint64_t bytes, const ModelConfig& config, const ShardPlan& plan, DType kv_type,
                             int block_size, int stage_layers = 0);

}  // namespace tpinfer::server
