#include "engine/scheduler.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace tpinfer {

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::Stop:
      return "stop";
    case FinishReason::Length:
      return "length";
    case FinishReason::Cancelled:
      return "cancelled";
    case FinishReason::Error:
      return "error";
  }
  return "unknown";
}

struct Scheduler::Sequence {
  uint64_t id = 0;
  SequenceSpec req;
  std::vector<int32_t> tokens;  // prompt, then generated tokens
  int64_t n_prompt = 0;
  int64_t n_computed = 0;  // tokens whose K/V are in the cache
  int generated = 0;
  std::vector<int32_t> table;
  Sampler sampler;
  bool done = false;
  int lane = 0;
  bool in_flight = false;  // in a batch submitted and not yet collected
  // Prefix caching: chain hashes of the full blocks of `tokens` (the prompt's
  // from submit on, later ones as they are computed); the first
  // n_prompt_hashes are counted in unfinished_hashes_.
  std::vector<uint64_t> hashes;
  size_t n_prompt_hashes = 0;
  int n_committed = 0;     // leading blocks of `table` committed to the prefix cache
  int cached_prompt = -1;  // prompt tokens found in the cache when first prefilled; -1: not yet
  // Speculative decoding: where guesses come from (null: none), how many per
  // step, and the guesses in the batch in flight (after the last token).
  std::unique_ptr<Proposer> proposer;
  int k = 0;
  std::vector<int32_t> guess;

  Sequence(uint64_t id_, SequenceSpec r) : id(id_), req(std::move(r)), sampler(req.sampling) {
    tokens = req.prompt;
    n_prompt = static_cast<int64_t>(tokens.size());
  }
  int64_t pending() const { return static_cast<int64_t>(tokens.size()) - n_computed; }
};

Scheduler::Scheduler(Engine& engine, const SchedulerOptions& options) : engine_(engine), options_(options) {
  if (options_.max_model_len <= 0) options_.max_model_len = engine.config().max_context;
  const int64_t cache_tokens = static_cast<int64_t>(engine.blocks().n_blocks()) * engine.blocks().block_size();
  options_.max_model_len = static_cast<int>(std::min<int64_t>(options_.max_model_len, cache_tokens));
  if (options_.max_num_seqs < 1) throw ConfigError("--max-num-seqs must be at least 1");
  if (options_.max_batch_tokens < options_.max_num_seqs) options_.max_batch_tokens = options_.max_num_seqs;
  metrics_.kv_blocks_total = engine.blocks().n_blocks();
  lanes_.resize(static_cast<size_t>(std::max(1, engine.pp())));
  if (options_.speculative.method != Speculation::None) {
    check(options_.speculative);
    if (options_.speculative.draft) {
      check_draft_vocabulary(options_.speculative.draft->config().vocab, engine.config().vocab);
    }
  }
}

Scheduler::~Scheduler() = default;

uint64_t Scheduler::submit(SequenceSpec spec) {
  if (spec.prompt.empty()) throw Error("the prompt is empty");
  if (spec.max_tokens < 1) throw Error(cat("max_tokens must be at least 1, got ", spec.max_tokens));
  const int64_t need = static_cast<int64_t>(spec.prompt.size()) + spec.max_tokens;
  if (need > options_.max_model_len) {
    throw Error(cat("the prompt (", spec.prompt.size(), " tokens) plus max_tokens (", spec.max_tokens,
                    ") exceeds the maximum model length of ", options_.max_model_len, " tokens"));
  }
  for (int32_t t : spec.prompt) {
    if (t < 0 || t >= engine_.config().vocab) throw Error(cat("token id ", t, " outside the vocabulary"));
  }
  if (spec.speculative_tokens < -1 || spec.speculative_tokens > kMaxSpeculativeTokens) {
    throw Error(cat("speculative tokens must be 0 to ", kMaxSpeculativeTokens, ", got ", spec.speculative_tokens));
  }
  const BlockAllocator& blocks = engine_.blocks();
  auto seq = std::make_unique<Sequence>(0, std::move(spec));
  seq->k = seq->req.constraint                ? 0
           : seq->req.speculative_tokens >= 0 ? seq->req.speculative_tokens
                                              : options_.speculative.k;
  if (seq->k > 0) seq->proposer = make_proposer(options_.speculative);
  if (options_.prefix_caching) {
    blocks.hash_blocks(seq->tokens, seq->tokens.size() / static_cast<size_t>(blocks.block_size()), seq->hashes);
    seq->n_prompt_hashes = seq->hashes.size();
  }
  std::lock_guard<std::mutex> lock(mutex_);
  if (stopping_) throw Error("the server is shutting down");
  const uint64_t id = next_id_++;
  seq->id = id;
  for (size_t i = 0; i < seq->n_prompt_hashes; ++i) unfinished_hashes_[seq->hashes[i]] += 1;
  incoming_.push_back(std::move(seq));
  metrics_.waiting += 1;
  unfinished_.fetch_add(1, std::memory_order_relaxed);
  work_cv_.notify_one();
  return id;
}

void Scheduler::cancel(uint64_t id) {
  std::lock_guard<std::mutex> lock(mutex_);
  cancelled_.push_back(id);
  work_cv_.notify_one();
}

void Scheduler::stop(bool drain) {
  std::lock_guard<std::mutex> lock(mutex_);
  stopping_ = true;
  drain_ = drain;
  work_cv_.notify_all();
}

int Scheduler::prefix_match(const std::vector<int32_t>& prompt) const {
  if (!options_.prefix_caching) return 0;
  const BlockAllocator& blocks = engine_.blocks();
  std::vector<uint64_t> hashes;
  blocks.hash_blocks(prompt, prompt.size() / static_cast<size_t>(blocks.block_size()), hashes);
  int n = blocks.cached_prefix(hashes);
  std::lock_guard<std::mutex> lock(mutex_);
  int computing = 0;
  while (static_cast<size_t>(computing) < hashes.size() &&
         unfinished_hashes_.count(hashes[static_cast<size_t>(computing)]) > 0) {
    ++computing;
  }
  return std::max(n, computing);
}

SchedulerMetrics Scheduler::metrics() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return metrics_;
}

void Scheduler::run() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      work_cv_.wait(lock, [&] {
        return stopping_ || !incoming_.empty() || !cancelled_.empty() || !running_.empty() || !waiting_.empty();
      });
      if (stopping_ && (!drain_ || (incoming_.empty() && running_.empty() && waiting_.empty()))) break;
    }
    step();
  }
  // Batches still in flight come back first (their tokens are delivered);
  // whatever is left then is cancelled (a stop without drain).
  try {
    collect_all();
  } catch (const std::exception&) {
    // Their sequences finished with the error.
  }
  std::vector<std::unique_ptr<Sequence>> left;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& s : incoming_) left.push_back(std::move(s));
    incoming_.clear();
  }
  for (auto& s : waiting_) left.push_back(std::move(s));
  for (auto& s : running_) left.push_back(std::move(s));
  waiting_.clear();
  running_.clear();
  for (auto& s : left) finish(*s, FinishReason::Cancelled);
}

void Scheduler::finish(Sequence& s, FinishReason reason, const std::string& error) {
  if (s.done) return;
  s.done = true;
  unfinished_.fetch_sub(1, std::memory_order_relaxed);
  engine_.blocks().release(s.table);
  s.proposer.reset();  // a draft's KV blocks go back too
  if (s.n_prompt_hashes > 0) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (size_t i = 0; i < s.n_prompt_hashes; ++i) {
      auto it = unfinished_hashes_.find(s.hashes[i]);
      if (it != unfinished_hashes_.end() && --it->second == 0) unfinished_hashes_.erase(it);
    }
  }
  if (s.req.on_finish) s.req.on_finish(reason, error);
}

bool Scheduler::ensure_blocks(Sequence& s, int64_t tokens) {
  BlockAllocator& blocks = engine_.blocks();
  while (!blocks.reserve(s.table, tokens)) {
    // Preempt the newest running sequence other than s; if s is the newest, it waits.
    Sequence* victim = nullptr;
    for (auto it = running_.rbegin(); it != running_.rend(); ++it) {
      if (it->get() != &s && !(*it)->done && !(*it)->in_flight && !(*it)->table.empty()) {
        victim = it->get();
        break;
      }
    }
    if (victim == nullptr) return false;
    preempt(*victim);
  }
  return true;
}

// Takes the longest cached prefix of a sequence that holds no blocks (new, or
// preempted): whole blocks, and never its last token, which must be computed
// for the logits that sample its next one. It computes from there on, into
// blocks of its own, so it never writes into the shared ones.
void Scheduler::attach_prefix(Sequence& s) {
  if (!options_.prefix_caching || !s.table.empty() || s.n_computed != 0) return;
  BlockAllocator& blocks = engine_.blocks();
  const int64_t n = static_cast<int64_t>(s.tokens.size());
  const int max_blocks = static_cast<int>((n - 1) / blocks.block_size());
  blocks.hash_blocks(s.tokens, static_cast<size_t>(max_blocks), s.hashes);
  const int found = blocks.acquire_prefix(s.table, s.tokens, s.hashes, max_blocks);
  s.n_computed = static_cast<int64_t>(found) * blocks.block_size();
  s.n_committed = found;
  if (s.cached_prompt < 0) s.cached_prompt = static_cast<int>(std::min<int64_t>(s.n_computed, s.n_prompt));
  std::lock_guard<std::mutex> lock(mutex_);
  metrics_.prefix_cache_queries += static_cast<uint64_t>(n);
  metrics_.prefix_cache_hits += static_cast<uint64_t>(s.n_computed);
}

// Commits the sequence's full blocks whose K/V are now computed.
void Scheduler::commit_blocks(Sequence& s) {
  if (!options_.prefix_caching) return;
  BlockAllocator& blocks = engine_.blocks();
  const int full = static_cast<int>(s.n_computed / blocks.block_size());
  blocks.hash_blocks(s.tokens, static_cast<size_t>(full), s.hashes);
  for (; s.n_committed < full; ++s.n_committed) {
    blocks.commit(s.table, s.n_committed, s.tokens, s.hashes[static_cast<size_t>(s.n_committed)]);
  }
}

// A waiting sequence waits while a running one has yet to compute the block
// after the part of its prompt that is cached: taking it from the cache a few
// steps later beats computing it twice at once.
bool Scheduler::waits_for_prefix(const Sequence& s) const {
  if (!options_.prefix_caching || !s.table.empty()) return false;
  const BlockAllocator& blocks = engine_.blocks();
  const size_t usable =
      std::min(s.hashes.size(), static_cast<size_t>((static_cast<int64_t>(s.tokens.size()) - 1) / blocks.block_size()));
  const size_t next = static_cast<size_t>(blocks.cached_prefix(std::span(s.hashes).first(usable)));
  if (next >= usable) return false;
  for (const auto& r : running_) {
    if (!r->done && r->hashes.size() > next && r->hashes[next] == s.hashes[next] &&
        static_cast<size_t>(r->n_committed) <= next) {
      return true;
    }
  }
  return false;
}

void Scheduler::preempt(Sequence& victim) {
  engine_.blocks().release(victim.table);
  victim.n_computed = 0;  // recomputed from its prompt and the tokens it already has
  victim.n_committed = 0;
  std::lock_guard<std::mutex> lock(mutex_);
  metrics_.preemptions += 1;
}

namespace {

template <typename T>
void drop_done(std::vector<std::unique_ptr<T>>& v) {
  v.erase(std::remove_if(v.begin(), v.end(), [](const auto& s) { return s->done; }), v.end());
}

}  // namespace

bool Scheduler::any_in_flight() const {
  for (const Lane& l : lanes_) {
    if (l.in_flight) return true;
  }
  return false;
}

bool Scheduler::step() {
  // Take in new requests and cancellations.
  std::vector<uint64_t> cancelled;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    while (!incoming_.empty()) {
      waiting_.push_back(std::move(incoming_.front()));
      incoming_.pop_front();
    }
    cancelled.swap(cancelled_);
  }
  std::vector<uint64_t> deferred;  // in flight: cancelled once their batch is back
  for (uint64_t id : cancelled) {
    for (auto* list : {&waiting_, &running_}) {
      for (auto& s : *list) {
        if (s->id != id) continue;
        if (s->in_flight) {
          deferred.push_back(id);
        } else {
          finish(*s, FinishReason::Cancelled);
        }
      }
    }
  }
  if (!deferred.empty()) {
    std::lock_guard<std::mutex> lock(mutex_);
    cancelled_.insert(cancelled_.end(), deferred.begin(), deferred.end());
  }
  drop_done(waiting_);
  drop_done(running_);

  // Preempted sequences (no blocks, nothing computed) go back to the front of the queue.
  for (auto it = running_.begin(); it != running_.end();) {
    if ((*it)->n_computed == 0 && (*it)->table.empty() && (*it)->generated > 0 && !(*it)->in_flight) {
      waiting_.insert(waiting_.begin(), std::move(*it));
      it = running_.erase(it);
    } else {
      ++it;
    }
  }

  // Admit waiting sequences while there is room, in order, each into the lane
  // with the fewest; one waiting for a prefix another computes stays behind.
  std::vector<int> lane_load(lanes_.size(), 0);
  for (const auto& s : running_) lane_load[static_cast<size_t>(s->lane)] += 1;
  for (auto it = waiting_.begin(); it != waiting_.end() && static_cast<int>(running_.size()) < options_.max_num_seqs;) {
    Sequence& s = **it;
    if (waits_for_prefix(s)) {
      ++it;
      continue;
    }
    s.lane = static_cast<int>(std::min_element(lane_load.begin(), lane_load.end()) - lane_load.begin());
    lane_load[static_cast<size_t>(s.lane)] += 1;
    running_.push_back(std::move(*it));
    it = waiting_.erase(it);
  }

  // Serve the next lane: its batch in flight is the oldest, so it comes back
  // first; then the lane's next batch goes in.
  const int lane = next_lane_;
  next_lane_ = (next_lane_ + 1) % lanes();
  if (lanes_[static_cast<size_t>(lane)].in_flight) collect(lane);
  build_and_submit(lane);
  if (lanes() == 1 && lanes_[0].in_flight) collect(0);

  {
    std::lock_guard<std::mutex> lock(mutex_);
    metrics_.running = static_cast<int>(running_.size());
    metrics_.waiting = static_cast<int>(waiting_.size() + incoming_.size());
    metrics_.kv_blocks_used = engine_.blocks().used_blocks();
    metrics_.prefix_cache_blocks = engine_.blocks().cached_blocks();
    metrics_.prefix_cache_evictions = engine_.blocks().evictions();
    // A callback of this step may have submitted more.
    if (!incoming_.empty()) return true;
  }
  return !running_.empty() || !waiting_.empty() || any_in_flight();
}

// Asks the sequence's proposer for guesses to check in this step: at most its
// k, what max_tokens and the model length leave after the token this step
// gives anyway, and what the step's token budget has left; kept only if free
// KV blocks hold them (a guess never preempts another sequence).
void Scheduler::propose(Sequence& s, int64_t budget) {
  if (!s.proposer) return;
  const auto len = static_cast<int64_t>(s.tokens.size());
  const int64_t room = std::min({static_cast<int64_t>(s.k), static_cast<int64_t>(s.req.max_tokens - s.generated) - 1,
                                 static_cast<int64_t>(options_.max_model_len) - len - 1, budget - 1});
  if (room <= 0) return;
  s.guess = s.proposer->propose(s.tokens, static_cast<int>(room));
  if (static_cast<int64_t>(s.guess.size()) > room) s.guess.resize(static_cast<size_t>(room));
  if (!engine_.blocks().reserve(s.table, s.n_computed + 1 + static_cast<int64_t>(s.guess.size()))) s.guess.clear();
}

// `row` is the row the token was drawn from (whole or summarised), for its
// logprobs; `computed`: the token was a guess of this step, its K/V computed.
bool Scheduler::deliver(Sequence& s, TokenEvent& ev, const LogitRow& row, bool computed) {
  if (s.req.top_logprobs >= 0) ev.logprob = Sampler::logprobs(row, ev.token, s.req.top_logprobs, ev.top_logprobs);
  if (s.req.constraint) s.req.constraint->accept(ev.token);
  s.tokens.push_back(ev.token);
  if (computed) s.n_computed += 1;
  s.generated += 1;
  generated_ += 1;
  bool keep_going = true;
  if (s.req.on_token) keep_going = s.req.on_token(ev);
  FinishReason reason = FinishReason::Stop;
  if (!keep_going || (s.req.stop_at_eog && engine_.tokenizer().is_eog(ev.token)) ||
      (s.req.constraint && s.req.constraint->finished())) {
    reason = FinishReason::Stop;
  } else if (s.generated >= s.req.max_tokens || static_cast<int64_t>(s.tokens.size()) >= options_.max_model_len) {
    reason = FinishReason::Length;
  } else {
    return true;
  }
  commit_blocks(s);
  finish(s, reason);
  return false;
}

// Builds the lane's batch: every sequence of the lane with pending tokens,
// decode (1 token) first, prefill chunks after, within the token budget.
void Scheduler::build_and_submit(int lane) {
  batch_.clear();
  std::vector<Sequence*> in_batch;
  std::vector<int64_t> chunk_of;
  int64_t budget = options_.max_batch_tokens;
  std::vector<Sequence*> order;
  for (auto& s : running_) {
    if (s->lane == lane && !s->in_flight && s->pending() == 1) order.push_back(s.get());
  }
  for (auto& s : running_) {
    if (s->lane == lane && !s->in_flight && s->pending() > 1) order.push_back(s.get());
  }
  for (Sequence* s : order) {
    if (budget <= 0 || s->done) continue;
    attach_prefix(*s);
    int64_t chunk = std::min<int64_t>(s->pending(), budget);
    if (!ensure_blocks(*s, s->n_computed + chunk)) continue;
    s->guess.clear();
    if (s->pending() == 1) {
      propose(*s, budget);
      chunk += static_cast<int64_t>(s->guess.size());
    }
    budget -= chunk;
    in_batch.push_back(s);
    chunk_of.push_back(chunk);
  }
  // A sequence preempted while building this batch leaves it.
  Lane& L = lanes_[static_cast<size_t>(lane)];
  L.seqs.clear();
  L.chunks.clear();
  for (size_t i = 0; i < in_batch.size(); ++i) {
    if (!in_batch[i]->table.empty()) {
      L.seqs.push_back(in_batch[i]);
      L.chunks.push_back(chunk_of[i]);
    }
  }
  if (L.seqs.empty()) return;

  SummaryRequest summaries;  // shard-local sampling where exact
  for (size_t i = 0; i < L.seqs.size(); ++i) {
    Sequence& s = *L.seqs[i];
    const int32_t seq_index = static_cast<int32_t>(batch_.sequences.size());
    batch_.sequences.push_back({s.table});
    // The sequence's own tokens, then its guesses (every row of a guessing
    // sequence wants logits: row j decides guess j + 1).
    const int64_t own = L.chunks[i] - static_cast<int64_t>(s.guess.size());
    for (int64_t k = 0; k < L.chunks[i]; ++k) {
      const int64_t pos = s.n_computed + k;
      batch_.tokens.push_back(k < own ? s.tokens[static_cast<size_t>(pos)] : s.guess[static_cast<size_t>(k - own)]);
      batch_.positions.push_back(static_cast<int32_t>(pos));
      batch_.seq.push_back(seq_index);
      const bool want = k >= own - 1 && s.n_computed + own == static_cast<int64_t>(s.tokens.size());
      batch_.want_logits.push_back(want ? 1 : 0);
      if (!want) continue;
      if (s.req.constraint) {
        summaries.add_whole();  // the constraint masks the whole row
      } else if (k >= own && s.sampler.penalizes()) {
        // A guess's row follows the text and the guesses before it.
        std::vector<int32_t> h = s.tokens;
        h.insert(h.end(), s.guess.begin(), s.guess.begin() + (k - own + 1));
        summaries.add(s.sampler, h, s.req.top_logprobs);
      } else {
        summaries.add(s.sampler, s.tokens, s.req.top_logprobs);
      }
    }
  }
  summaries.fill(batch_, engine_.summary_top(summaries.wanted()));
  L.logit_top = batch_.logit_top;
  try {
    engine_.submit(batch_);
  } catch (const std::exception& e) {
    for (Sequence* s : L.seqs) finish(*s, FinishReason::Error, e.what());
    L.seqs.clear();
    L.chunks.clear();
    drop_done(running_);
    throw;
  }
  L.in_flight = true;
  for (Sequence* s : L.seqs) s->in_flight = true;
}

void Scheduler::collect_all() {
  for (int k = 0; k < lanes(); ++k) {
    const int lane = (next_lane_ + k) % lanes();
    if (lanes_[static_cast<size_t>(lane)].in_flight) collect(lane);
  }
}

// Takes the lane's logits back and samples every sequence that has them.
void Scheduler::collect(int lane) {
  Lane& L = lanes_[static_cast<size_t>(lane)];
  L.in_flight = false;
  for (Sequence* s : L.seqs) s->in_flight = false;
  const std::vector<float>* logits = nullptr;
  try {
    logits = &engine_.collect();
  } catch (const std::exception& e) {
    // The engine lost every batch in flight, not only this lane's.
    for (Lane& other : lanes_) {
      for (Sequence* s : other.seqs) {
        s->in_flight = false;
        if (other.in_flight || &other == &L) finish(*s, FinishReason::Error, e.what());
      }
      other.in_flight = false;
      other.seqs.clear();
      other.chunks.clear();
    }
    drop_done(running_);
    throw;
  }

  int64_t row = 0;
  uint64_t new_prompt_tokens = 0, steps = 0, drafts = 0, draft_tokens = 0, accepted = 0;
  const uint64_t generated_before = generated_;
  for (size_t i = 0; i < L.seqs.size(); ++i) {
    Sequence& s = *L.seqs[i];
    const size_t g = s.guess.size();
    const int64_t own = L.chunks[i] - static_cast<int64_t>(g);
    const bool has_logits = s.n_computed + own == static_cast<int64_t>(s.tokens.size());
    if (s.generated == 0) new_prompt_tokens += static_cast<uint64_t>(own);
    s.n_computed += own;
    commit_blocks(s);
    if (!has_logits) continue;
    const int64_t first = row;
    const auto rows = [&](size_t j) {
      return engine_.logit_row(*logits, L.logit_top, first + static_cast<int64_t>(j));
    };
    row += 1 + static_cast<int64_t>(g);
    // Guesses are kept while the sampler accepts them (their K/V, computed in
    // this batch, become the sequence's); the first it rejects is replaced by
    // its own choice, and if all pass the last row gives one more token.
    int kept = 0;
    for (size_t j = 0; j <= g; ++j) {
      TokenEvent ev;
      if (s.generated == 0) ev.cached_prompt_tokens = std::max(s.cached_prompt, 0);
      bool accepted_guess = false;
      const LogitRow r = rows(j);
      if (s.req.constraint && !s.req.constraint->mask(r.full)) {
        commit_blocks(s);
        finish(s, FinishReason::Error, "no token can continue the structured output (grammar dead end)");
        break;
      }
      if (j == 0) steps += 1;  // a step that gives the sequence tokens
      if (j == g) {
        ev.token = s.sampler.sample(r, s.tokens);
      } else {
        const Verdict v = s.sampler.verify(r, s.tokens, s.guess[j]);
        ev.token = v.token;
        accepted_guess = v.accepted;
      }
      kept += accepted_guess ? 1 : 0;
      if (!deliver(s, ev, r, accepted_guess) || !accepted_guess) break;
    }
    if (g > 0) {
      drafts += 1;
      draft_tokens += g;
      accepted += static_cast<uint64_t>(kept);
      if (s.proposer) s.proposer->accepted(kept);
    }
    s.guess.clear();
    if (!s.done) commit_blocks(s);
  }
  L.seqs.clear();
  L.chunks.clear();
  drop_done(running_);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    metrics_.steps += 1;
    metrics_.prompt_tokens += new_prompt_tokens;
    metrics_.generated_tokens += generated_ - generated_before;
    metrics_.decode_steps += steps;
    metrics_.spec_drafts += drafts;
    metrics_.spec_draft_tokens += draft_tokens;
    metrics_.spec_accepted_tokens += accepted;
    metrics_.running = static_cast<int>(running_.size());
    metrics_.kv_blocks_used = engine_.blocks().used_blocks();
    metrics_.prefix_cache_blocks = engine_.blocks().cached_blocks();
    metrics_.prefix_cache_evictions = engine_.blocks().evictions();
  }
}

}  // namespace tpinfer
