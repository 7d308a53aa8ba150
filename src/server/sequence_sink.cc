#include "server/sequence_sink.h"

#include "server/metrics.h"

namespace tpinfer::server {

namespace {

double seconds_between(std::chrono::steady_clock::time_point a, std::chrono::steady_clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

}  // namespace

SequenceSink::SequenceSink(SinkChannel& channel, ServerMetrics& metrics, const Tokenizer& tok, bool skip_special,
                           std::vector<std::string> stops, bool logprobs, std::vector<int32_t> keep_special)
    : channel_(channel),
      metrics_(metrics),
      record_logprobs_(logprobs),
      decoder_(tok, skip_special, std::move(keep_special)),
      stop_(std::move(stops)) {}

void SequenceSink::mark_submitted() { submitted_ = Clock::now(); }

bool SequenceSink::on_token(const TokenEvent& ev) {
  if (channel_.abandoned) {
    cut_by_cancel_ = true;  // finishes as cancelled, not as a stop
    return false;
  }
  const auto now = Clock::now();
  if (seen_token_)
    metrics_.observe_itl(seconds_between(last_token_, now));
  else
    metrics_.observe_ttft(seconds_between(submitted_, now));
  seen_token_ = true;
  last_token_ = now;
  const std::string piece = decoder_.push(ev.token);
  std::string out = stop_.push(piece);
  TokenLogprob lp;
  if (record_logprobs_) {
    lp.token = ev.token;
    lp.logprob = ev.logprob;
    lp.top = ev.top_logprobs;
    lp.text_offset = text_bytes_;
  }
  text_bytes_ += piece.size();
  {
    std::lock_guard<std::mutex> lock(channel_.mutex);
    text += out;
    if (record_logprobs_) logprobs.push_back(std::move(lp));
    if (completion_tokens == 0) cached_prompt_tokens = ev.cached_prompt_tokens;
    completion_tokens += 1;
  }
  channel_.cv.notify_all();
  return !stop_.stopped();
}

void SequenceSink::on_finish(FinishReason why, const std::string& what) {
  std::string tail;
  if (cut_by_cancel_) why = FinishReason::Cancelled;
  if (why == FinishReason::Stop || why == FinishReason::Length) {
    tail = stop_.push(decoder_.finish());
    tail += stop_.flush();
    if (stop_.stopped()) why = FinishReason::Stop;
  }
  metrics_.observe_e2e(seconds_between(submitted_, Clock::now()));
  {
    std::lock_guard<std::mutex> lock(channel_.mutex);
    text += tail;
    finished = true;
    reason = why;
    error = what;
  }
  channel_.cv.notify_all();
}

bool SequenceSink::has_news() const { return !text.empty() || !logprobs.empty() || (finished && !finish_reported); }

SinkNews SequenceSink::take() {
  SinkNews news;
  news.text.swap(text);
  news.logprobs.swap(logprobs);
  if (finished && !finish_reported) {
    finish_reported = true;
    news.finish = true;
    news.reason = reason;
    news.error = error;
  }
  return news;
}

}  // namespace tpinfer::server
