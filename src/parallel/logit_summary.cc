#include "parallel/logit_summary.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

namespace tpinfer {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// By logit, then the lower id: the sampler's candidate order.
bool before(const std::pair<float, int32_t>& a, const std::pair<float, int32_t>& b) {
  return a.first > b.first || (a.first == b.first && a.second < b.second);
}

float id_bits(int32_t id) {
  float f;
  std::memcpy(&f, &id, sizeof(f));
  return f;
}

int32_t bits_id(float f) {
  int32_t id;
  std::memcpy(&id, &f, sizeof(id));
  return id;
}

}  // namespace

void apply_penalties(std::span<float> logits, int64_t first_id, const PenaltyInputs& p) {
  const int64_t end = first_id + static_cast<int64_t>(logits.size());
  const bool repeat = p.repeat_penalty != 1.0f;
  const bool additive = p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f;
  for (const PenaltyToken& t : p.tokens) {
    if (t.id < first_id || t.id >= end) continue;
    float& l = logits[static_cast<size_t>(t.id - first_id)];
    if (repeat && t.in_window) l = l > 0 ? l / p.repeat_penalty : l * p.repeat_penalty;
    if (additive) l -= p.presence_penalty + p.frequency_penalty * static_cast<float>(t.count);
  }
}

void summarize_shard(const float* logits, int64_t rows, int64_t cols, int64_t stride, int64_t first_id, int top,
                     bool lse, std::span<const PenaltyInputs> penalties, float* out, std::vector<float>& scratch) {
  std::vector<std::pair<float, int32_t>> cand;
  const size_t k = std::min<size_t>(static_cast<size_t>(top), static_cast<size_t>(cols));
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = logits + r * stride;
    if (!penalties.empty() && !penalties[static_cast<size_t>(r)].empty()) {
      scratch.assign(row, row + cols);
      apply_penalties(scratch, first_id, penalties[static_cast<size_t>(r)]);
      row = scratch.data();
    }
    float* o = out + r * summary_floats(top);
    float mx = kNegInf;
    for (int64_t i = 0; i < cols; ++i) mx = std::max(mx, row[i]);
    double sum = lse ? 0 : std::numeric_limits<double>::quiet_NaN();
    if (lse && cols > 0) {
      for (int64_t i = 0; i < cols; ++i) sum += std::exp(static_cast<double>(row[i] - mx));
    }
    o[0] = mx;
    o[1] = static_cast<float>(sum);
    // The best k in one pass: a heap whose front is the worst kept.
    cand.clear();
    for (int64_t i = 0; i < cols && k > 0; ++i) {
      const std::pair<float, int32_t> c{row[i], static_cast<int32_t>(first_id + i)};
      if (cand.size() < k) {
        cand.push_back(c);
        std::push_heap(cand.begin(), cand.end(), before);
      } else if (before(c, cand.front())) {
        std::pop_heap(cand.begin(), cand.end(), before);
        cand.back() = c;
        std::push_heap(cand.begin(), cand.end(), before);
      }
    }
    std::sort_heap(cand.begin(), cand.end(), before);
    for (int i = 0; i < top; ++i) {
      const bool have = static_cast<size_t>(i) < k;
      o[2 + 2 * i] = id_bits(have ? cand[static_cast<size_t>(i)].second : -1);
      o[3 + 2 * i] = have ? cand[static_cast<size_t>(i)].first : kNegInf;
    }
  }
}

void merge_candidates(const LogitRow& row, size_t k, std::vector<std::pair<float, int32_t>>& out) {
  out.clear();
  const int64_t w = summary_floats(row.top);
  for (int r = 0; r < row.ranks; ++r) {
    const float* s = row.summaries + r * w;
    for (int i = 0; i < row.top; ++i) {
      const int32_t id = bits_id(s[2 + 2 * i]);
      if (id < 0) break;  // a shard with fewer ids than `top`
      out.push_back({s[3 + 2 * i], id});
    }
  }
  const size_t n = std::min(k, out.size());
  std::partial_sort(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(n), out.end(), before);
  out.resize(n);
}

float summary_log_sum_exp(const LogitRow& row) {
  const int64_t w = summary_floats(row.top);
  float mx = kNegInf;
  for (int r = 0; r < row.ranks; ++r) mx = std::max(mx, row.summaries[r * w]);
  double sum = 0;
  for (int r = 0; r < row.ranks; ++r) {
    const float* s = row.summaries + r * w;
    if (s[0] != kNegInf) sum += static_cast<double>(s[1]) * std::exp(static_cast<double>(s[0] - mx));
  }
  return mx + static_cast<float>(std::log(sum));
}

}  // namespace tpinfer
