#include "server/kv_budget.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <string>

#include "core/error.h"

namespace tpinfer::server {

uint64_t parse_byte_size(std::string_view text) {
  const std::string original(text);
  auto bad = [&]() -> ConfigError {
    return ConfigError(cat("'", original,
                           "' is not a memory size; write a number with an optional unit, e.g. 512MiB, 2GiB, 1.5G"));
  };
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
  const std::string number(text.substr(0, i));
  if (number.empty() || std::count(number.begin(), number.end(), '.') > 1 || number == ".") throw bad();
  double value = 0;
  try {
    value = std::stod(number);
  } catch (const std::exception&) {
    throw bad();
  }
  std::string unit(text.substr(i));
  while (!unit.empty() && unit.front() == ' ') unit.erase(unit.begin());
  std::string lower;
  for (char c : unit) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  double scale = 0;
  if (lower.empty() || lower == "b") scale = 1;
  else if (lower == "k" || lower == "kib") scale = 1024.0;
  else if (lower == "m" || lower == "mib") scale = 1024.0 * 1024;
  else if (lower == "g" || lower == "gib") scale = 1024.0 * 1024 * 1024;
  else if (lower == "t" || lower == "tib") scale = 1024.0 * 1024 * 1024 * 1024;
  else if (lower == "kb") scale = 1e3;
  else if (lower == "mb") scale = 1e6;
  else if (lower == "gb") scale = 1e9;
  else if (lower == "tb") scale = 1e12;
  else throw bad();
  const double bytes = std::floor(value * scale);
  if (!(bytes >= 1) || bytes >= 1.8e19) throw bad();
  return static_cast<uint64_t>(bytes);
}

uint64_t kv_bytes_per_token(const ModelConfig& config, const ShardPlan& plan, DType kv_type, int stage_layers) {
  int64_t max_heads = 0;
  for (int r = 0; r < plan.tp(); ++r) max_heads = std::max(max_heads, plan.rank(r).kv_heads.size());
  // Whole rows, as the cache stores them (a q8_0 row carries its block scales).
  const uint64_t row = row_bytes(kv_type, static_cast<uint64_t>(max_heads) * static_cast<uint64_t>(config.head_dim));
  const int layers = stage_layers > 0 ? stage_layers : config.n_layers;
  return static_cast<uint64_t>(layers) * 2 * row;
}

int64_t kv_tokens_for_budget(uint64_t bytes, const ModelConfig& config, const ShardPlan& plan, DType kv_type,
                             int block_size, int stage_layers) {
  const uint64_t per_token = kv_bytes_per_token(config, plan, kv_type, stage_layers);
  if (per_token == 0) throw ConfigError("the model has no KV cache to size");
  const uint64_t tokens = bytes / per_token;
  const uint64_t blocks = tokens / static_cast<uint64_t>(block_size);
  if (blocks == 0) {
    throw ConfigError(cat("--kv-cache-memory of ", bytes, " bytes holds less than one block of ", block_size,
                          " tokens (", per_token, " bytes per token per rank); give at least ",
                          per_token * static_cast<uint64_t>(block_size), " bytes"));
  }
  // The block allocator counts blocks in an int.
  const uint64_t capped = std::min<uint64_t>(blocks, 1u << 30);
  return static_cast<int64_t>(capped * static_cast<uint64_t>(block_size));
}

}  // namespace tpinfer::server
