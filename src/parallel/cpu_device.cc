#include "parallel/cpu_device.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <new>

#include "backend/cpu/quant.h"
#include "core/error.h"

namespace tpinfer {
namespace {

constexpr std::align_val_t kAlign{64};

// A weight in both layouts it may be read in: `rows` plain (embed), `fast`
// in the layout cpu::matmul reads fastest. Either may be empty.
class CpuWeight final : public DeviceWeight {
 public:
  CpuWeight(ShardedTensor t, WeightUse use) : DeviceWeight(t.type(), t.rows(), t.cols()) {
    if (use != WeightUse::Matmul) rows_ = t;
    if (use != WeightUse::Rows) {
      fast_ = std::move(t);
      fast_.interleave_for_matmul();
    }
  }
  const ShardedTensor& rows() const { return rows_; }
  const ShardedTensor& fast() const { return fast_; }

 private:
  ShardedTensor rows_, fast_;
};

const CpuWeight& cpu_weight(const DeviceWeight& w) { return static_cast<const CpuWeight&>(w); }

}  // namespace

CpuDevice::CpuDevice(Communicator& comm, ThreadPool& pool) : comm_(comm), pool_(pool) {}

DeviceMemory CpuDevice::alloc(size_t bytes) {
  if (bytes == 0) return {};
  void* p = ::operator new(bytes, kAlign);
  return DeviceMemory(p, bytes, [](void* q) { ::operator delete(q, kAlign); });
}

std::unique_ptr<DeviceWeight> CpuDevice::upload_weight(ShardedTensor t, WeightUse use) {
  return std::make_unique<CpuWeight>(std::move(t), use);
}

void CpuDevice::upload(const void* host, size_t bytes, void* dst) {
  if (bytes > 0) std::memcpy(dst, host, bytes);
}

void CpuDevice::download(const float* src, int64_t rows, int64_t cols, float* host, int64_t host_stride) {
  for (int64_t r = 0; r < rows; ++r) {
    std::memcpy(host + r * host_stride, src + r * cols, static_cast<size_t>(cols) * sizeof(float));
  }
}

void CpuDevice::read_to_host(const float* src, size_t n, float* host) {
  if (n > 0 && src != host) std::memcpy(host, src, n * sizeof(float));
}

void CpuDevice::allocate_kv(const KvCacheShape& s) {
  cache_ = std::make_unique<KVCache>(s.n_layers, s.n_kv_heads, s.head_dim, s.block_size, s.n_blocks, s.type);
}

// Attention tiles, the same for every layer of the step: up to kTileTokens
// consecutive tokens of one sequence whose positions do not decrease.
StepShape CpuDevice::begin_step(const Batch& batch, bool /*graphable*/) {
  batch_ = &batch;
  const int64_t n = batch.size();
  if (cache_) {
    const int bs = cache_->block_size();
    for (int64_t t = 0; t < n; ++t) {
      const int pos = batch.positions[static_cast<size_t>(t)];
      const auto& table = batch.sequences.at(static_cast<size_t>(batch.seq[static_cast<size_t>(t)])).block_table;
      if (pos < 0 || pos / bs >= static_cast<int>(table.size())) {
        throw Error(cat("position ", pos, " has no KV block (", table.size(), " blocks of ", bs, ")"));
      }
    }
  }
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
  return StepShape{n, batch.n_logits()};
}

void CpuDevice::matmul(const DeviceWeight& w, const float* x, int64_t n, float* y) {
  if (w.cols() == 0) {
    zero(y, n * w.rows());
    return;
  }
  if (w.rows() == 0 || n == 0) return;
  cpu::matmul(cpu_weight(w).fast().view(), x, n, y, pool_, scratch_);
}

void CpuDevice::embed(const DeviceWeight& table, int64_t row_begin, float* out) {
  const ShardedTensor& t = cpu_weight(table).rows();
  const int64_t hidden = table.cols();
  for (int64_t i = 0; i < batch_->size(); ++i) {
    const int64_t id = batch_->tokens[static_cast<size_t>(i)] - row_begin;
    float* row = out + i * hidden;
    if (id >= 0 && id < table.rows()) {
      cpu::dequantize_row(t.type(), t.row(id), row, hidden);
    } else {
      std::fill(row, row + hidden, 0.0f);
    }
  }
}

void CpuDevice::rms_norm(const float* x, int64_t x_stride, const float* w, int64_t rows, int64_t dim, float eps,
                         float* y, int64_t y_stride) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * x_stride;
    float* yr = y + r * y_stride;
    double ss = 0;
    for (int64_t i = 0; i < dim; ++i) ss += static_cast<double>(xr[i]) * xr[i];
    const float scale = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(dim) + eps));
    for (int64_t i = 0; i < dim; ++i) yr[i] = xr[i] * scale * w[i];
  }
}

// Interleaved pairs (2i, 2i+1); NeoX pairs (i, i + d/2).
void CpuDevice::rope(float* x, int64_t row_stride, int n_heads, int head_dim, const float* inv_freq, RopeStyle style) {
  const int half = head_dim / 2;
  for (int64_t t = 0; t < batch_->size(); ++t) {
    const int pos = batch_->positions[static_cast<size_t>(t)];
    for (int h = 0; h < n_heads; ++h) {
      float* v = x + t * row_stride + static_cast<int64_t>(h) * head_dim;
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
  }
}

void CpuDevice::attention(int layer, const float* qkv, int64_t row, const AttnHeads& heads, float scale, float* out) {
  const Batch& batch = *batch_;
  const int64_t n = batch.size();
  const int hd = heads.head_dim;
  const int n_q = heads.n_q, n_kv = heads.n_kv;
  const int bs = cache_->block_size();
  for (int64_t t = 0; t < n; ++t) {
    const float* k = qkv + t * row + static_cast<int64_t>(n_q) * hd;
    const float* v = k + static_cast<int64_t>(n_kv) * hd;
    const int pos = batch.positions[static_cast<size_t>(t)];
    const auto& table = batch.sequences[static_cast<size_t>(batch.seq[static_cast<size_t>(t)])].block_table;
    cache_->store(layer, static_cast<int64_t>(table[static_cast<size_t>(pos / bs)]) * bs + pos % bs, k, v);
  }

  head_begin_.assign(static_cast<size_t>(n_kv) + 1, n_q);
  for (int h = n_q - 1; h >= 0; --h) {
    head_begin_[static_cast<size_t>((heads.q_begin + h) / heads.heads_per_kv - heads.kv_begin)] = h;
  }
  for (int j = n_kv - 1; j >= 0; --j) {
    head_begin_[static_cast<size_t>(j)] =
        std::min(head_begin_[static_cast<size_t>(j)], head_begin_[static_cast<size_t>(j) + 1]);
  }

  const cpu::KVLayerView kv = cache_->layer(layer);
  attn_work_.resize(static_cast<size_t>(pool_.size()));
  const int64_t units = static_cast<int64_t>(tiles_.size()) * n_kv;
  pool_.run([&](int i, int nt) {
    AttnWork& w = attn_work_[static_cast<size_t>(i)];
    for (int64_t u = units * i / nt; u < units * (i + 1) / nt; ++u) {
      const Tile tile = tiles_[static_cast<size_t>(u / n_kv)];
      const int j = static_cast<int>(u % n_kv);
      w.q.clear();
      w.out.clear();
      w.n_ctx.clear();
      for (int64_t t = tile.begin; t < tile.end; ++t) {
        for (int h = head_begin_[static_cast<size_t>(j)]; h < head_begin_[static_cast<size_t>(j) + 1]; ++h) {
          w.q.push_back(qkv + t * row + static_cast<int64_t>(h) * hd);
          w.out.push_back(out + (t * n_q + h) * hd);
          w.n_ctx.push_back(batch.positions[static_cast<size_t>(t)] + 1);
        }
      }
      if (w.q.empty()) continue;
      const auto& table = batch.sequences[static_cast<size_t>(batch.seq[static_cast<size_t>(tile.begin)])].block_table;
      const cpu::AttnGroup g{w.q.data(), w.n_ctx.data(), w.out.data(), static_cast<int>(w.q.size())};
      cpu::attend_group(g, j, table, kv, scale, w.scratch);
    }
  });
}

void CpuDevice::swiglu(const float* gu, int64_t n, int64_t ffn, float* out) {
  for (int64_t t = 0; t < n; ++t) {
    const float* g = gu + t * 2 * ffn;
    const float* u = g + ffn;
    float* a = out + t * ffn;
    for (int64_t i = 0; i < ffn; ++i) a[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
  }
}

void CpuDevice::add(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

void CpuDevice::add_bias(float* y, const float* bias, int64_t n, int64_t dim) {
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t i = 0; i < dim; ++i) y[t * dim + i] += bias[i];
  }
}

void CpuDevice::zero(float* y, int64_t n) { std::fill(y, y + n, 0.0f); }

void CpuDevice::gather_logit_rows(const float* src, int64_t dim, float* dst) {
  int64_t o = 0;
  for (int64_t t = 0; t < batch_->size(); ++t) {
    if (!batch_->want_logits[static_cast<size_t>(t)]) continue;
    std::memcpy(dst + o * dim, src + t * dim, static_cast<size_t>(dim) * sizeof(float));
    ++o;
  }
}

void CpuDevice::gather_rows(const float* src, std::span<const int64_t> rows, int64_t dim, float* dst) {
  for (size_t i = 0; i < rows.size(); ++i) {
    std::memcpy(dst + static_cast<int64_t>(i) * dim, src + rows[i] * dim, static_cast<size_t>(dim) * sizeof(float));
  }
}

void CpuDevice::add_rows_scaled(float* out, std::span<const int64_t> rows, std::span<const float> weights,
                                const float* ys, int64_t dim) {
  for (size_t i = 0; i < rows.size(); ++i) {
    const float w = weights[i];
    float* o = out + rows[i] * dim;
    const float* y = ys + static_cast<int64_t>(i) * dim;
    for (int64_t x = 0; x < dim; ++x) o[x] += w * y[x];
  }
}

void CpuDevice::add_sigmoid_gated(float* out, const float* h, const float* w, const float* ys, int64_t n, int64_t dim) {
  for (int64_t t = 0; t < n; ++t) {
    double d = 0;
    for (int64_t x = 0; x < dim; ++x) d += static_cast<double>(h[t * dim + x]) * w[x];
    const float g = static_cast<float>(1.0 / (1.0 + std::exp(-d)));
    float* o = out + t * dim;
    const float* y = ys + t * dim;
    for (int64_t x = 0; x < dim; ++x) o[x] += g * y[x];
  }
}

}  // namespace tpinfer
