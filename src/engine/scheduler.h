// Continuous batching over the engine's paged KV cache (what the server runs).
// Every step: running sequences contribute one decode token each, and waiting
// sequences are admitted and prefilled in chunks within a per-step token budget,
// so a long prompt never stalls the streams already running. Finished or
// cancelled sequences release their KV blocks at once. When blocks run out, the
// newest running sequence is preempted: its blocks are freed and it waits to be
// recomputed (prompt + tokens so far), never dropped.
//
// With pipeline stages (pp > 1) the scheduler keeps one batch per stage in
// flight, vLLM's "virtual engines": running sequences are spread over pp
// lanes (a new one joins the lane with the fewest), and each step serves the
// next lane in turn: it collects that lane's batch submitted pp steps ago,
// samples its tokens, and submits the lane's next batch, so while the last
// stage runs one lane the first stage already runs another. A sequence is in
// at most one batch at a time; a sequence in flight is never preempted and a
// cancel reaches it when its batch comes back.
//
// Prefix caching (on unless options.prefix_caching is false): every full
// block of a sequence whose K/V are computed is committed to the block
// allocator's prefix cache under the chain hash of its tokens and all before
// them (engine/block_allocator.h). A sequence about to be prefilled first takes
// the longest cached prefix of its tokens, in whole blocks and short of its
// last token (which must be computed for its logits), and starts computing
// after it: n_computed begins at the cached length. A waiting sequence whose
// next uncached block another running sequence is about to compute (the n
// choices of one request, or requests sharing a system prompt that arrive
// together) waits for it instead of computing it again. Blocks of finished
// sequences stay cached until reserve() needs room.
//
// Speculative decoding (options.speculative): a running sequence whose next
// step is a decode asks its proposer (engine/speculative.h; n-gram lookup, or
// a draft model shared by the sequences of this scheduler, each with its own
// KV table in the draft's cache) for up to k guesses and puts its last token
// and the guesses in the batch as consecutive rows that all want logits.
// When the batch comes back, Sampler::verify keeps guesses while it accepts
// them and its own token replaces the first it rejects (or the last row gives
// one more); only the kept positions count as computed, so the rest of the
// K/V is overwritten by the next step. Each sequence accepts its own count.
// Guesses never preempt: they take KV blocks only when free ones are there,
// and tokens from the step's budget only when the budget has room.
//
// Threading: submit()/cancel()/metrics()/unfinished()/prefix_match() may be
// called from any thread; run() drives the engine from one thread; callbacks
// run on that thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/constraint.h"
#include "engine/engine.h"
#include "engine/sampler.h"
#include "engine/speculative.h"

namespace tpinfer {

struct TokenEvent {
  int32_t token = -1;
  float logprob = 0;                                    // of the chosen token
  std::vector<std::pair<int32_t, float>> top_logprobs;  // when asked for
  // On a sequence's first token: how many of its prompt tokens were found in
  // the prefix cache rather than computed (0 on the others).
  int cached_prompt_tokens = 0;
};

enum class FinishReason { Stop, Length, Cancelled, Error };
const char* finish_reason_name(FinishReason r);

// One sequence to generate: its prompt, how to sample it, when to stop, and
// the callbacks that receive its tokens. (The server turns each choice of an
// HTTP request into one of these.)
struct SequenceSpec {
  std::vector<int32_t> prompt;
  SamplingParams sampling;
  int max_tokens = 16;
  bool stop_at_eog = true;
  int top_logprobs = -1;  // -1: no logprobs; 0..20: chosen token (+ that many alternatives)
  // Guesses per decode step for this sequence when the scheduler speculates:
  // -1 the scheduler's k, 0 none, else at most kMaxSpeculativeTokens.
  int speculative_tokens = -1;
  // Called for every generated token; return false to finish the sequence (a stop
  // string was seen, the client went away).
  std::function<bool(const TokenEvent&)> on_token;
  // Called once at the end (tokens generated, why it ended, error text if any).
  std::function<void(FinishReason, const std::string&)> on_finish;
  // Structured output (engine/constraint.h): this sequence's own constraint,
  // or null. A constrained sequence takes no speculative guesses.
  std::shared_ptr<TokenConstraint> constraint;
};

struct SchedulerOptions {
  int max_num_seqs = 64;
  int max_batch_tokens = 512;  // tokens per step (decode tokens + prefill chunks)
  int max_model_len = 0;       // 0: the model's context
  bool prefix_caching = true;  // reuse the computed K/V of shared prompt beginnings
  // Guesses checked per decode step (method None: off). A draft engine is
  // used from the scheduler's thread only.
  SpeculativeOptions speculative;
};

struct SchedulerMetrics {
  int running = 0;
  int waiting = 0;
  int kv_blocks_total = 0;
  int kv_blocks_used = 0;
  uint64_t preemptions = 0;
  uint64_t steps = 0;
  uint64_t prompt_tokens = 0;
  uint64_t generated_tokens = 0;
  int prefix_cache_blocks = 0;          // blocks in the prefix cache, held or not
  uint64_t prefix_cache_queries = 0;    // tokens of the sequences looked up in the prefix cache
  uint64_t prefix_cache_hits = 0;       // of them, tokens found (not computed)
  uint64_t prefix_cache_evictions = 0;  // cached blocks evicted to make room
  // Decode steps of sequences (one per sequence per step it decodes in); of
  // them, the ones that carried guesses; the guesses, and those accepted.
  uint64_t decode_steps = 0;
  uint64_t spec_drafts = 0;
  uint64_t spec_draft_tokens = 0;
  uint64_t spec_accepted_tokens = 0;
};

class Scheduler {
 public:
  Scheduler(Engine& engine, const SchedulerOptions& options);
  ~Scheduler();

  // Queues a sequence; returns its id. Throws Error when the sequence can never
  // run (empty prompt, prompt + max_tokens over the model length or the cache).
  uint64_t submit(SequenceSpec spec);
  // Finishes a sequence early (client gone); its blocks are freed on the next step.
  void cancel(uint64_t id);

  // Runs steps until stop() (blocking; call from the serving thread).
  void run();
  // Runs one step if there is work; returns false when idle. (For tests and
  // single-threaded drivers.)
  bool step();
  // Asks run() to return; with `drain`, after every queued sequence finished.
  void stop(bool drain);

  SchedulerMetrics metrics() const;
  // Sequences submitted and not finished (waiting, running or in flight): the
  // load a data-parallel dispatcher balances.
  int unfinished() const { return unfinished_.load(std::memory_order_relaxed); }
  const SchedulerOptions& options() const { return options_; }
  int lanes() const { return static_cast<int>(lanes_.size()); }
  // How many leading full blocks of `prompt` this scheduler holds in its
  // prefix cache or has a sequence computing; 0 without prefix caching. Any
  // thread: what a data-parallel dispatcher asks each replica.
  int prefix_match(const std::vector<int32_t>& prompt) const;

 private:
  struct Sequence;
  // One batch in flight: its sequences and how many tokens each put in it.
  struct Lane {
    std::vector<Sequence*> seqs;
    std::vector<int64_t> chunks;
    bool in_flight = false;
    int logit_top = 0;  // how its batch's logits rows come back (Batch::logit_top)
  };
  bool ensure_blocks(Sequence& s, int64_t tokens);
  void preempt(Sequence& victim);
  void finish(Sequence& s, FinishReason reason, const std::string& error = "");
  void attach_prefix(Sequence& s);
  void commit_blocks(Sequence& s);
  bool waits_for_prefix(const Sequence& s) const;
  void propose(Sequence& s, int64_t budget);
  // Hands one sampled token to the sequence; false when it finished with it.
  bool deliver(Sequence& s, TokenEvent& ev, const LogitRow& row, bool computed);
  void build_and_submit(int lane);
  void collect(int lane);
  void collect_all();
  bool any_in_flight() const;

  Engine& engine_;
  SchedulerOptions options_;
  mutable std::mutex mutex_;
  std::condition_variable work_cv_;
  std::deque<std::unique_ptr<Sequence>> incoming_;  // submitted, not yet seen by the loop
  std::vector<std::unique_ptr<Sequence>> waiting_;  // admitted in order, no KV yet (or preempted)
  std::vector<std::unique_ptr<Sequence>> running_;  // have KV blocks
  std::vector<uint64_t> cancelled_;
  uint64_t next_id_ = 1;
  bool stopping_ = false;
  bool drain_ = false;
  SchedulerMetrics metrics_;
  std::atomic<int> unfinished_{0};
  // Chain hashes of the prompt blocks of every unfinished sequence (with how
  // many hold each): what this replica is computing, for prefix_match().
  std::unordered_map<uint64_t, int> unfinished_hashes_;
  std::vector<Lane> lanes_;
  int next_lane_ = 0;
  Batch batch_;
  uint64_t generated_ = 0;  // tokens delivered (the scheduler thread's count)
};

}  // namespace tpinfer
