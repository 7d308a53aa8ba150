#include "parallel/batch.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"

namespace tpinfer {
namespace {

int32_t float_word(float f) {
  int32_t w;
  std::memcpy(&w, &f, sizeof(w));
  return w;
}

float word_float(int32_t w) {
  float f;
  std::memcpy(&f, &w, sizeof(f));
  return f;
}

}  // namespace

int64_t Batch::n_logits() const {
  int64_t n = 0;
  for (uint8_t w : want_logits) n += w ? 1 : 0;
  return n;
}

void Batch::clear() {
  tokens.clear();
  positions.clear();
  seq.clear();
  want_logits.clear();
  sequences.clear();
  logit_top = 0;
  logit_lse = false;
  penalties.clear();
}

std::vector<Batch> Batch::split(int parts) const {
  const int64_t n = size();
  const int64_t m = std::max<int64_t>(1, std::min<int64_t>(parts, n));
  std::vector<Batch> out(static_cast<size_t>(m));
  size_t logit_row = 0;
  for (int64_t p = 0; p < m; ++p) {
    Batch& b = out[static_cast<size_t>(p)];
    b.logit_top = logit_top;
    b.logit_lse = logit_lse;
    std::vector<int32_t> index_of(sequences.size(), -1);
    for (int64_t t = n * p / m; t < n * (p + 1) / m; ++t) {
      const size_t i = static_cast<size_t>(t);
      const size_t s = static_cast<size_t>(seq[i]);
      if (index_of[s] < 0) {
        index_of[s] = static_cast<int32_t>(b.sequences.size());
        b.sequences.push_back(sequences[s]);
      }
      b.tokens.push_back(tokens[i]);
      b.positions.push_back(positions[i]);
      b.seq.push_back(index_of[s]);
      b.want_logits.push_back(want_logits[i]);
      if (want_logits[i] && !penalties.empty()) b.penalties.push_back(penalties[logit_row++]);
    }
  }
  return out;
}

std::vector<int32_t> Batch::encode() const {
  std::vector<int32_t> w;
  w.push_back(static_cast<int32_t>(tokens.size()));
  w.push_back(static_cast<int32_t>(sequences.size()));
  for (size_t i = 0; i < tokens.size(); ++i) {
    w.push_back(tokens[i]);
    w.push_back(positions[i]);
    w.push_back(seq[i]);
    w.push_back(want_logits[i]);
  }
  for (const BatchSequence& s : sequences) {
    w.push_back(static_cast<int32_t>(s.block_table.size()));
    w.insert(w.end(), s.block_table.begin(), s.block_table.end());
  }
  w.push_back(logit_top);
  w.push_back(logit_lse ? 1 : 0);
  w.push_back(static_cast<int32_t>(penalties.size()));
  for (const PenaltyInputs& p : penalties) {
    for (const float f : {p.repeat_penalty, p.presence_penalty, p.frequency_penalty}) w.push_back(float_word(f));
    w.push_back(static_cast<int32_t>(p.tokens.size()));
    for (const PenaltyToken& t : p.tokens) {
      w.push_back(t.id);
      w.push_back(t.count * 2 + (t.in_window ? 1 : 0));
    }
  }
  return w;
}

Batch Batch::decode(const std::vector<int32_t>& w) {
  size_t at = 0;
  auto next = [&]() {
    if (at >= w.size()) throw Error(cat("malformed batch: ", w.size(), " words, needed more"));
    return w[at++];
  };
  Batch b;
  const int32_t n = next(), n_seq = next();
  if (n < 0 || n_seq < 0 || static_cast<size_t>(n) * 4 > w.size()) throw Error("malformed batch header");
  for (int32_t i = 0; i < n; ++i) {
    b.tokens.push_back(next());
    b.positions.push_back(next());
    const int32_t s = next();
    if (s < 0 || s >= n_seq) throw Error(cat("malformed batch: token ", i, " in sequence ", s, " of ", n_seq));
    b.seq.push_back(s);
    b.want_logits.push_back(static_cast<uint8_t>(next() != 0));
  }
  for (int32_t i = 0; i < n_seq; ++i) {
    const int32_t len = next();
    if (len < 0 || static_cast<size_t>(len) > w.size() - at) throw Error("malformed batch block table");
    b.sequences.push_back(
        {std::vector<int32_t>(w.begin() + static_cast<std::ptrdiff_t>(at),
                              w.begin() + static_cast<std::ptrdiff_t>(at + static_cast<size_t>(len)))});
    at += static_cast<size_t>(len);
  }
  b.logit_top = next();
  b.logit_lse = next() != 0;
  const int32_t n_pen = next();
  if (b.logit_top < 0 || (n_pen != 0 && n_pen != b.n_logits())) {
    throw Error(cat("malformed batch: ", n_pen, " penalty rows for ", b.n_logits(), " logits rows, top ", b.logit_top));
  }
  for (int32_t r = 0; r < n_pen; ++r) {
    PenaltyInputs p;
    p.repeat_penalty = word_float(next());
    p.presence_penalty = word_float(next());
    p.frequency_penalty = word_float(next());
    const int32_t n_tok = next();
    if (n_tok < 0 || static_cast<size_t>(n_tok) * 2 > w.size() - at) throw Error("malformed batch penalties");
    p.tokens.resize(static_cast<size_t>(n_tok));
    for (PenaltyToken& t : p.tokens) {
      t.id = next();
      const int32_t c = next();
      t.count = c / 2;
      t.in_window = (c & 1) != 0;
    }
    b.penalties.push_back(std::move(p));
  }
  return b;
}

}  // namespace tpinfer
