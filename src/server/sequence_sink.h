// The sink of one sequence's tokens: where the scheduler thread puts what one
// choice of a request generates, and where the HTTP thread that answers the
// request takes it from.
//
// The scheduler thread calls on_token() and on_finish() (a SequenceSpec's
// callbacks). They turn token ids into text (StreamDecoder: never a broken
// UTF-8 character), hold back text that may begin a stop string (StopMatcher)
// and end the sequence at the very token that completes one, record logprobs
// when asked for, and observe time to first token, inter-token latency and
// end-to-end latency in ServerMetrics.
//
// The HTTP thread reads the released text under the channel's mutex: all at
// once when every choice finished, or piece by piece with take() when
// streaming. The sinks of one request share one SinkChannel, so the HTTP thread
// waits on a single condition variable for news from any of its choices.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "engine/scheduler.h"
#include "server/openai_json.h"
#include "server/stop_matcher.h"
#include "tokenizer/tokenizer.h"

namespace tpinfer::server {

class ServerMetrics;

// What the sinks of one request share with the HTTP thread that reads them.
struct SinkChannel {
  std::mutex mutex;
  std::condition_variable cv;  // notified whenever a sink has news
  // Set when the client went away or the server cancels: each sequence still
  // running ends, as cancelled, at its next token.
  std::atomic<bool> abandoned{false};
};

// What take() hands the HTTP thread: the news since the last take().
struct SinkNews {
  std::string text;
  std::vector<TokenLogprob> logprobs;
  bool finish = false;  // the sequence ended (reported once)
  FinishReason reason = FinishReason::Stop;
  std::string error;
};

class SequenceSink {
 public:
  // `logprobs`: record a TokenLogprob per token. `keep_special`: special
  // tokens decoded even with skip_special (a tool-call format's markers).
  // `channel` and `metrics` must outlive the sink.
  SequenceSink(SinkChannel& channel, ServerMetrics& metrics, const Tokenizer& tok, bool skip_special,
               std::vector<std::string> stops, bool logprobs, std::vector<int32_t> keep_special = {});

  // Before the sequence is submitted: latencies count from now.
  void mark_submitted();

  // Scheduler thread only. Returns false to end the sequence (a stop string
  // completed, or the channel was abandoned).
  bool on_token(const TokenEvent& ev);
  // Scheduler thread only: the sequence ended. Releases the text held back;
  // a sequence cut because the channel was abandoned ends as Cancelled, one
  // that met a stop string as Stop.
  void on_finish(FinishReason reason, const std::string& error);

  // With the channel's mutex held: is there anything take() would return?
  bool has_news() const;
  // With the channel's mutex held: moves out the text and logprobs released
  // so far, and the finish the first time it is seen.
  SinkNews take();

  // The rest is read and written with the channel's mutex held.
  uint64_t id = 0;  // in its replica's scheduler; 0 until submitted
  size_t replica = 0;
  std::string text;                    // released text not yet taken
  std::vector<TokenLogprob> logprobs;  // likewise
  int64_t completion_tokens = 0;
  int64_t cached_prompt_tokens = 0;  // of its prompt, found in the prefix cache (from its first token)
  bool finished = false;
  bool finish_reported = false;  // take() has handed out the finish
  FinishReason reason = FinishReason::Stop;
  std::string error;

 private:
  using Clock = std::chrono::steady_clock;
  SinkChannel& channel_;
  ServerMetrics& metrics_;
  const bool record_logprobs_;
  // Scheduler thread only (mark_submitted() happens before the submit).
  StreamDecoder decoder_;
  StopMatcher stop_;
  Clock::time_point submitted_;
  Clock::time_point last_token_;
  bool seen_token_ = false;
  bool cut_by_cancel_ = false;
  size_t text_bytes_ = 0;  // of all text decoded so far, released or held
};

}  // namespace tpinfer::server
