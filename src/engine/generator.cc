#include "engine/generator.h"

#include <chrono>
#include <cmath>

#include "core/error.h"
#include "engine/speculative.h"

namespace tpinfer {
namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Runs `tokens` at positions [start, start + n) of one sequence in chunks;
// want_logits selects positions (relative to start) whose logits are returned
// through on_logits(position, row): whole rows with top 0, else the ranks'
// summaries with `top` candidates, penalised by penalties(position) when
// that is given.
void run_chunks(Engine& engine, std::vector<int32_t>& table, const std::vector<int32_t>& tokens, int64_t start,
                int chunk, const std::function<bool(int64_t)>& want,
                const std::function<void(int64_t, const LogitRow&)>& on_logits, int top = 0,
                const std::function<PenaltyInputs(int64_t)>& penalties = {}) {
  Batch b;
  for (int64_t at = 0; at < static_cast<int64_t>(tokens.size()); at += chunk) {
    const int64_t end = std::min<int64_t>(static_cast<int64_t>(tokens.size()), at + chunk);
    if (!engine.blocks().reserve(table, start + end)) {
      throw Error(cat("KV cache full: ", start + end, " tokens need ", engine.blocks().blocks_for(start + end),
                      " blocks, ", engine.blocks().n_blocks(), " exist"));
    }
    b.clear();
    b.sequences.push_back({table});
    b.logit_top = top;
    for (int64_t i = at; i < end; ++i) {
      b.tokens.push_back(tokens[static_cast<size_t>(i)]);
      b.positions.push_back(static_cast<int32_t>(start + i));
      b.seq.push_back(0);
      b.want_logits.push_back(want(i) ? 1 : 0);
      if (want(i) && top > 0 && penalties) b.penalties.push_back(penalties(i));
    }
    const std::vector<float>& logits = engine.step(b);
    int64_t row = 0;
    for (int64_t i = at; i < end; ++i) {
      if (b.want_logits[static_cast<size_t>(i - at)]) on_logits(i, engine.logit_row(logits, b.logit_top, row++));
    }
  }
}

// A copy of a row that outlives the step's output.
struct RowCopy {
  std::vector<float> data;
  LogitRow row;
  void take(const LogitRow& r) {
    if (r.is_full()) {
      data.assign(r.full.begin(), r.full.end());
      row = r;
      row.full = data;
    } else {
      data.assign(r.summaries, r.summaries + r.ranks * summary_floats(r.top));
      row = r;
      row.summaries = data.data();
    }
  }
};

}  // namespace

std::vector<int32_t> generate(Engine& engine, const std::vector<int32_t>& prompt, const SamplingParams& sampling,
                              const GenerateOptions& options, const std::function<bool(int32_t)>& on_token,
                              GenerationStats* stats) {
  if (prompt.empty()) throw Error("the prompt is empty");
  const int64_t vocab = engine.config().vocab;
  const int64_t max_ctx = static_cast<int64_t>(engine.blocks().n_blocks()) * engine.blocks().block_size();
  if (static_cast<int64_t>(prompt.size()) >= max_ctx) {
    throw Error(cat("the prompt has ", prompt.size(), " tokens; the KV cache holds ", max_ctx));
  }
  Sampler sampler(sampling);
  TokenConstraint* const constraint = options.constraint;
  // Shard-local sampling where exact: the ranks' summaries instead of whole
  // rows (a constraint masks whole rows).
  const int top = constraint ? 0 : engine.summary_top(sampler.summary_top());
  const bool penalize = top > 0 && sampler.penalizes();
  std::vector<int32_t> table;
  std::vector<int32_t> history = prompt;
  std::vector<int32_t> out;
  RowCopy first;
  GenerationStats local;
  GenerationStats& st = stats ? *stats : local;
  st.prompt_tokens = static_cast<int64_t>(prompt.size());

  engine.reset_comm_stats();
  auto t0 = Clock::now();
  const int64_t last = static_cast<int64_t>(prompt.size()) - 1;
  run_chunks(
      engine, table, prompt, 0, options.prefill_chunk, [&](int64_t i) { return i == last; },
      [&](int64_t, const LogitRow& row) { first.take(row); }, top, [&](int64_t) { return sampler.penalties(history); });
  st.prefill_seconds = since(t0);
  st.prefill_comm = engine.comm_stats();
  st.prefill_parallel = engine.parallel_stats();
  engine.tp_rank_collectives();  // every rank counts decode from here
  engine.reset_comm_stats();

  t0 = Clock::now();
  const SpeculativeOptions& spec = options.speculative;
  if (spec.method != Speculation::None) check(spec);
  if (spec.draft) check_draft_vocabulary(spec.draft->config().vocab, vocab);
  const std::unique_ptr<Proposer> proposer = constraint ? nullptr : make_proposer(spec);
  // Takes a generated token; false when generation ends with it.
  auto emit = [&](int32_t tok) {
    if (constraint) {
      const auto t = Clock::now();
      constraint->accept(tok);
      st.constraint_seconds += since(t);
    }
    out.push_back(tok);
    history.push_back(tok);
    st.generated_tokens += 1;
    const bool eog = options.stop_at_eog && engine.tokenizer().is_eog(tok);
    const bool complete = constraint && constraint->finished();
    return on_token(tok) && !eog && !complete && static_cast<int>(out.size()) < options.max_tokens;
  };
  // The constraint's mask on the (whole) row a token is drawn from.
  auto allowed = [&](const LogitRow& row) {
    if (!constraint) return;
    const auto t = Clock::now();
    const bool any = constraint->mask(row.full);
    st.constraint_seconds += since(t);
    if (!any) throw Error("no token can continue the structured output (grammar dead end)");
  };
  Batch b;
  std::vector<int32_t> guess;
  try {
    if (options.max_tokens > 0) allowed(first.row);
    bool going = options.max_tokens > 0 && emit(sampler.sample(first.row, history));
    while (going) {
      // The last token is not in the cache yet: it runs now, at `pos`, with
      // the guesses after it (each row's logits decide the next guess).
      const int64_t pos = static_cast<int64_t>(history.size()) - 1;
      if (pos >= max_ctx) break;  // context full
      guess.clear();
      if (proposer) {
        const int64_t room =
            std::min<int64_t>(options.max_tokens - static_cast<int64_t>(out.size()) - 1, max_ctx - pos - 1);
        if (room > 0) guess = proposer->propose(history, static_cast<int>(std::min<int64_t>(spec.k, room)));
      }
      if (!engine.blocks().reserve(table, pos + 1 + static_cast<int64_t>(guess.size()))) break;
      b.clear();
      b.sequences.push_back({table});
      b.logit_top = top;
      for (size_t j = 0; j <= guess.size(); ++j) {
        b.tokens.push_back(j == 0 ? history.back() : guess[j - 1]);
        b.positions.push_back(static_cast<int32_t>(pos + static_cast<int64_t>(j)));
        b.seq.push_back(0);
        b.want_logits.push_back(1);
        if (penalize) {
          // Row j follows the history and the first j guesses.
          if (j > 0) history.push_back(guess[j - 1]);
          b.penalties.push_back(sampler.penalties(history));
        }
      }
      if (penalize) history.resize(history.size() - guess.size());
      const std::vector<float>& rows = engine.step(b);
      st.decode_forwards += 1;
      st.proposed_tokens += static_cast<int64_t>(guess.size());
      // Guesses are taken while the sampler accepts them; the first it
      // rejects is replaced by its own choice, and if all pass, the last row
      // gives one more token. Positions past what is kept hold stale K/V that
      // the next step overwrites.
      size_t j = 0;
      int kept = 0;
      for (; going && j <= guess.size(); ++j) {
        const LogitRow row = engine.logit_row(rows, b.logit_top, static_cast<int64_t>(j));
        allowed(row);
        if (j == guess.size()) {
          going = emit(sampler.sample(row, history));
          break;
        }
        const Verdict v = sampler.verify(row, history, guess[j]);
        kept += v.accepted ? 1 : 0;
        going = emit(v.token);
        if (!v.accepted) break;
      }
      st.accepted_tokens += kept;
      if (proposer && !guess.empty()) proposer->accepted(kept);
    }
  } catch (...) {
    engine.blocks().release(table);
    throw;
  }
  st.decode_seconds = since(t0);
  st.decode_comm = engine.comm_stats();
  st.decode_parallel = engine.parallel_stats();
  st.decode_ranks = engine.tp_rank_collectives();
  engine.blocks().release(table);
  return out;
}

PerplexityResult perplexity(Engine& engine, const std::vector<int32_t>& tokens, int ctx,
                            const std::function<void(int, double)>& on_chunk) {
  if (ctx < 2) throw ConfigError(cat("--ctx must be at least 2, got ", ctx));
  const int64_t n_chunks = static_cast<int64_t>(tokens.size()) / ctx;
  if (n_chunks == 0) throw Error(cat("the text has ", tokens.size(), " tokens, fewer than one window of ", ctx));
  const int64_t vocab = engine.config().vocab;
  const int32_t bos = engine.tokenizer().bos();
  PerplexityResult res;
  const auto t0 = Clock::now();
  double nll = 0;
  std::vector<int32_t> table;
  const int first = ctx / 2;
  for (int64_t c = 0; c < n_chunks; ++c) {
    std::vector<int32_t> chunk(tokens.begin() + c * ctx, tokens.begin() + (c + 1) * ctx);
    if (bos >= 0) chunk[0] = bos;
    try {
      run_chunks(
          engine, table, chunk, 0, ctx, [&](int64_t i) { return i >= first && i < ctx - 1; },
          [&](int64_t i, const LogitRow& row) {
            // log softmax of the next token, in double
            const float* l = row.full.data();
            double mx = l[0];
            for (int64_t v = 1; v < vocab; ++v) mx = std::max(mx, static_cast<double>(l[v]));
            double sum = 0;
            for (int64_t v = 0; v < vocab; ++v) sum += std::exp(l[v] - mx);
            const int32_t next = tokens[static_cast<size_t>(c * ctx + i + 1)];
            nll += -(l[next] - mx - std::log(sum));
            res.scored_tokens += 1;
          });
    } catch (...) {
      engine.blocks().release(table);
      throw;
    }
    engine.blocks().release(table);
    res.chunks += 1;
    if (on_chunk) on_chunk(static_cast<int>(c), std::exp(nll / static_cast<double>(res.scored_tokens)));
  }
  res.nll_mean = nll / static_cast<double>(res.scored_tokens);
  res.perplexity = std::exp(res.nll_mean);
  res.seconds = since(t0);
  return res;
}

}  // namespace tpinfer
