#include "model/llama.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/error.h"
#include "formats/tensor_table.h"

namespace tpinfer {
namespace {

void rms_norm(const float* x, const float* w, int64_t n, float eps, float* out) {
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
  const float scale = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(n) + eps));
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * scale * w[i];
}

// Rotates one head in place. Interleaved pairs (2i, 2i+1); NeoX pairs (i, i + d/2).
void rope(float* v, int head_dim, int pos, const float* inv_freq, RopeStyle style) {
  const int half = head_dim / 2;
  for (int i = 0; i < half; ++i) {
    const float angle = static_cast<float>(pos) * inv_freq[i];
    const float c = std::cos(angle), s = std::sin(angle);
    const int a = style == RopeStyle::Interleaved ? 2 * i : i;
    const int b = style == RopeStyle::Interleaved ? 2 * i + 1 : i + half;
    const float x0 = v[a], x1 = v[b];
    v[a] = x0 * c - x1 * s;
    v[b] = x0 * s + x1 * c;
  }
}

}  // namespace

LlamaModel::LlamaModel(const ModelSource& src, const ShardPlan& plan, int rank)
    : LlamaModel(src, plan, rank, LayerRange{0, src.config().n_layers}) {}

LlamaModel::LlamaModel(const ModelSource& src, const ShardPlan& plan, int rank, LayerRange layers)
    : cfg_(src.config()), range_(layers) {
  using enum TensorId;
  if (range_.begin < 0 || range_.end > cfg_.n_layers || range_.size() < 1) {
    throw ConfigError(cat("layers [", range_.begin, ", ", range_.end, ") are not a stage of a model of ", cfg_.n_layers,
                          " layers"));
  }
  const RankShard& shard = plan.rank(rank);
  n_q_ = static_cast<int>(shard.q_heads.size());
  q_begin_ = shard.q_heads.begin;
  kv_heads_ = shard.kv_heads;
  heads_per_kv_ = plan.heads_per_kv();
  ffn_local_ = shard.ffn.size();
  // Local query heads [head_begin[j], head_begin[j + 1]) use local KV head j.
  const int n_kv = static_cast<int>(kv_heads_.size());
  head_begin_.assign(static_cast<size_t>(n_kv) + 1, n_q_);
  for (int h = n_q_ - 1; h >= 0; --h) {
    head_begin_[static_cast<size_t>((q_begin_ + h) / heads_per_kv_ - kv_heads_.begin)] = h;
  }
  for (int j = n_kv - 1; j >= 0; --j) {
    head_begin_[static_cast<size_t>(j)] =
        std::min(head_begin_[static_cast<size_t>(j)], head_begin_[static_cast<size_t>(j) + 1]);
  }

  if (first_stage()) embed_ = VocabParallelEmbedding(src, plan, rank, tensor_name(TokenEmbd));
  for (int l = range_.begin; l < range_.end; ++l) {
    Layer L;
    L.attn_norm = load_vector_f32(src.get(tensor_name(AttnNorm, l)));
    L.ffn_norm = load_vector_f32(src.get(tensor_name(FfnNorm, l)));
    if (cfg_.qk_norm) {
      L.q_norm = load_vector_f32(src.get(tensor_name(AttnQNorm, l)));
      L.k_norm = load_vector_f32(src.get(tensor_name(AttnKNorm, l)));
    }
    std::vector<std::string> biases;
    if (cfg_.qkv_bias) biases = {tensor_name(AttnQBias, l), tensor_name(AttnKBias, l), tensor_name(AttnVBias, l)};
    L.qkv = ColumnParallelLinear(src, plan, rank, {tensor_name(AttnQ, l), tensor_name(AttnK, l), tensor_name(AttnV, l)},
                                 biases);
    L.o = RowParallelLinear(src, plan, rank, tensor_name(AttnOutput, l));
    if (cfg_.is_moe()) {
      L.moe = ParallelMoE(src, plan, rank, l);
    } else {
      L.gate_up = ColumnParallelLinear(src, plan, rank, {tensor_name(FfnGate, l), tensor_name(FfnUp, l)});
      L.down = RowParallelLinear(src, plan, rank, tensor_name(FfnDown, l));
    }
    layers_.push_back(std::move(L));
  }
  if (last_stage()) {
    output_norm_ = load_vector_f32(src.get(tensor_name(OutputNorm)));
    lm_head_ = ParallelLMHead(src, plan, rank, cfg_.tied_embeddings ? tensor_name(TokenEmbd) : tensor_name(Output));
  }

  const int half = cfg_.head_dim / 2;
  for (int i = 0; i < half; ++i) {
    double f = 1.0 / std::pow(static_cast<double>(cfg_.rope_theta), 2.0 * i / cfg_.head_dim);
    if (!cfg_.rope_freq_factors.empty()) f /= cfg_.rope_freq_factors.at(static_cast<size_t>(i));
    inv_freq_.push_back(static_cast<float>(f));
  }
}

uint64_t LlamaModel::weight_bytes() const {
  uint64_t b = embed_.weight_bytes() + lm_head_.weight_bytes() + output_norm_.size() * sizeof(float);
  // The same rows as the embedding, when one stage holds both.
  if (cfg_.tied_embeddings && first_stage() && last_stage()) b -= lm_head_.weight_bytes();
  for (const Layer& L : layers_) {
    b += (L.attn_norm.size() + L.ffn_norm.size() + L.q_norm.size() + L.k_norm.size()) * sizeof(float);
    b += L.qkv.weight_bytes() + L.o.weight_bytes() + L.gate_up.weight_bytes() + L.down.weight_bytes() +
         L.moe.weight_bytes();
  }
  return b;
}

std::vector<std::vector<uint64_t>> LlamaModel::expert_load() const {
  std::vector<std::vector<uint64_t>> out;
  if (!cfg_.is_moe()) return out;
  for (const Layer& L : layers_) out.push_back(L.moe.load());
  return out;
}

void LlamaModel::reset_expert_load() {
  for (Layer& L : layers_) L.moe.reset_load();
}

float* LlamaModel::stage_input(int64_t n_tokens) {
  x_.resize(static_cast<size_t>(n_tokens * cfg_.hidden));
  return x_.data();
}

void LlamaModel::forward(RankContext& ctx, const Batch& batch, KVCache& cache, float* logits) {
  const int64_t n = batch.size();
  const int64_t hidden = cfg_.hidden;
  if (!first_stage() && x_.size() != static_cast<size_t>(n * hidden)) {
    throw Error(cat("stage input holds ", x_.size(), " values for a batch of ", n, " tokens x ", hidden));
  }
  x_.resize(static_cast<size_t>(n * hidden));
  h_.resize(x_.size());
  tmp_.resize(x_.size());

  if (first_stage()) embed_.forward(ctx, batch.tokens.data(), n, x_.data());
  // Attention work units, the same for every layer of this batch: a tile of up
  // to kTileTokens consecutive tokens of one sequence (positions
  // non-decreasing) x one local KV head, whose query heads attend together so
  // each key and value is converted once per unit.
  constexpr int64_t kTileTokens = 8;
  tiles_.clear();
  for (int64_t t = 0; t < n;) {
    int64_t e = t + 1;
    while (e < n && e - t < kTileTokens && batch.seq[static_cast<size_t>(e)] == batch.seq[static_cast<size_t>(t)] &&
           batch.positions[static_cast<size_t>(e)] >= batch.positions[static_cast<size_t>(e - 1)]) {
      ++e;
    }
    tiles_.push_back({t, e});
    t = e;
  }
  // l indexes this stage's layers (and its KV cache): global layer range_.begin + l.
  for (int l = 0; l < range_.size(); ++l) {
    Layer& L = layers_[static_cast<size_t>(l)];
    for (int64_t t = 0; t < n; ++t) {
      rms_norm(&x_[static_cast<size_t>(t * hidden)], L.attn_norm.data(), hidden, cfg_.rms_eps,
               &h_[static_cast<size_t>(t * hidden)]);
    }
    qkv_.resize(static_cast<size_t>(n * L.qkv.out_features()));
    L.qkv.forward(ctx, h_.data(), n, qkv_.data());
    attention(ctx, batch, l, cache);
    L.o.forward(ctx, attn_.data(), n, tmp_.data());
    for (size_t i = 0; i < x_.size(); ++i) x_[i] += tmp_[i];

    for (int64_t t = 0; t < n; ++t) {
      rms_norm(&x_[static_cast<size_t>(t * hidden)], L.ffn_norm.data(), hidden, cfg_.rms_eps,
               &h_[static_cast<size_t>(t * hidden)]);
    }
    if (cfg_.is_moe()) {
      L.moe.forward(ctx, h_.data(), n, tmp_.data());
    } else {
      gu_.resize(static_cast<size_t>(n * 2 * ffn_local_));
      act_.resize(static_cast<size_t>(n * ffn_local_));
      L.gate_up.forward(ctx, h_.data(), n, gu_.data());
      for (int64_t t = 0; t < n; ++t) {
        const float* g = &gu_[static_cast<size_t>(t * 2 * ffn_local_)];
        const float* u = g + ffn_local_;
        float* a = &act_[static_cast<size_t>(t * ffn_local_)];
        for (int64_t i = 0; i < ffn_local_; ++i) a[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
      }
      L.down.forward(ctx, act_.data(), n, tmp_.data());
    }
    for (size_t i = 0; i < x_.size(); ++i) x_[i] += tmp_[i];
  }

  if (!last_stage()) return;  // stage_output() holds the residual stream
  const int64_t n_out = batch.n_logits();
  if (n_out == 0) return;
  out_rows_.resize(static_cast<size_t>(n_out * hidden));
  int64_t o = 0;
  for (int64_t t = 0; t < n; ++t) {
    if (!batch.want_logits[static_cast<size_t>(t)]) continue;
    rms_norm(&x_[static_cast<size_t>(t * hidden)], output_norm_.data(), hidden, cfg_.rms_eps,
             &out_rows_[static_cast<size_t>(o * hidden)]);
    ++o;
  }
  lm_head_.forward(ctx, out_rows_.data(), n_out, logits);
}

// Q/K norm and RoPE on the new tokens, their K/V into the cache, then each of the
// rank's query heads attends over its sequence up to the token's position.
void LlamaModel::attention(RankContext& ctx, const Batch& batch, int l, KVCache& cache) {
  Layer& L = layers_[static_cast<size_t>(l)];
  const int64_t n = batch.size();
  const int hd = cfg_.head_dim;
  const int n_kv = static_cast<int>(kv_heads_.size());
  const int64_t row = L.qkv.out_features();  // (n_q + 2 n_kv) * hd
  for (int64_t t = 0; t < n; ++t) {
    float* q = &qkv_[static_cast<size_t>(t * row)];
    float* k = q + static_cast<int64_t>(n_q_) * hd;
    float* v = k + static_cast<int64_t>(n_kv) * hd;
    const int pos = batch.positions[static_cast<size_t>(t)];
    for (int h = 0; h < n_q_; ++h) {
      if (cfg_.qk_norm) rms_norm(q + h * hd, L.q_norm.data(), hd, cfg_.rms_eps, q + h * hd);
      rope(q + h * hd, hd, pos, inv_freq_.data(), cfg_.rope_style);
    }
    for (int h = 0; h < n_kv; ++h) {
      if (cfg_.qk_norm) rms_norm(k + h * hd, L.k_norm.data(), hd, cfg_.rms_eps, k + h * hd);
      rope(k + h * hd, hd, pos, inv_freq_.data(), cfg_.rope_style);
    }
    const auto& table = batch.sequences[static_cast<size_t>(batch.seq[static_cast<size_t>(t)])].block_table;
    const int bs = cache.block_size();
    if (pos / bs >= static_cast<int>(table.size())) {
      throw Error(cat("position ", pos, " has no KV block (", table.size(), " blocks of ", bs, ")"));
    }
    cache.store(l, static_cast<int64_t>(table[static_cast<size_t>(pos / bs)]) * bs + pos % bs, k, v);
  }

  attn_.resize(static_cast<size_t>(n * n_q_ * hd));
  const cpu::KVLayerView kv = cache.layer(l);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));

  attn_work_.resize(static_cast<size_t>(ctx.pool.size()));
  const int64_t units = static_cast<int64_t>(tiles_.size()) * n_kv;
  ctx.pool.run([&](int i, int nt) {
    AttnWork& w = attn_work_[static_cast<size_t>(i)];
    for (int64_t u = units * i / nt; u < units * (i + 1) / nt; ++u) {
      const Tile tile = tiles_[static_cast<size_t>(u / n_kv)];
      const int j = static_cast<int>(u % n_kv);
      w.q.clear();
      w.out.clear();
      w.n_ctx.clear();
      for (int64_t t = tile.begin; t < tile.end; ++t) {
        for (int h = head_begin_[static_cast<size_t>(j)]; h < head_begin_[static_cast<size_t>(j) + 1]; ++h) {
          w.q.push_back(&qkv_[static_cast<size_t>(t * row + h * hd)]);
          w.out.push_back(&attn_[static_cast<size_t>((t * n_q_ + h) * hd)]);
          w.n_ctx.push_back(batch.positions[static_cast<size_t>(t)] + 1);
        }
      }
      const auto& table = batch.sequences[static_cast<size_t>(batch.seq[static_cast<size_t>(tile.begin)])].block_table;
      const cpu::AttnGroup g{w.q.data(), w.n_ctx.data(), w.out.data(), static_cast<int>(w.q.size())};
      cpu::attend_group(g, j, table, kv, scale, w.scratch);
    }
  });
}

}  // namespace tpinfer
