#include "server/stop_matcher.h"

#include <algorithm>

namespace tpinfer::server {

StopMatcher::StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {
  stops_.erase(std::remove_if(stops_.begin(), stops_.end(), [](const std::string& s) { return s.empty(); }),
               stops_.end());
}

std::string StopMatcher::push(std::string_view text) {
  if (stopped_) return "";
  if (stops_.empty()) return std::string(text);
  held_.append(text);

  // The stop string that completes first wins (on a tie, the one that starts
  // first): what a client reading token by token would have seen, so the
  // result does not depend on how the text was cut into pieces. Every match
  // starts in held_: the text released earlier could not begin a stop string.
  size_t best = std::string::npos, best_end = std::string::npos;
  const std::string* best_stop = nullptr;
  for (const std::string& s : stops_) {
    const size_t at = held_.find(s);
    if (at == std::string::npos) continue;
    const size_t end = at + s.size();
    if (end < best_end || (end == best_end && at < best)) {
      best = at;
      best_end = end;
      best_stop = &s;
    }
  }
  if (best_stop != nullptr) {
    stopped_ = true;
    matched_ = *best_stop;
    std::string out = held_.substr(0, best);
    held_.clear();
    return out;
  }

  // Hold the longest suffix of held_ that is a proper prefix of some stop string.
  size_t keep = 0;
  for (const std::string& s : stops_) {
    const size_t max_len = std::min(s.size() - 1, held_.size());
    for (size_t len = max_len; len > keep; --len) {
      if (held_.compare(held_.size() - len, len, s, 0, len) == 0) {
        keep = len;
        break;
      }
    }
  }
  std::string out = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return out;
}

std::string StopMatcher::flush() {
  if (stopped_) return "";
  std::string out;
  out.swap(held_);
  return out;
}

std::string truncate_at_stop(std::string_view text, const std::vector<std::string>& stops, bool* stopped) {
  // Walk the end position forward; the first end at which some stop string
  // completes decides, and the longest of those (earliest start) is cut.
  for (size_t end = 1; end <= text.size(); ++end) {
    size_t start = std::string_view::npos;
    for (const std::string& s : stops) {
      if (s.empty() || s.size() > end) continue;
      if (text.substr(end - s.size(), s.size()) == s) start = std::min(start, end - s.size());
    }
    if (start != std::string_view::npos) {
      if (stopped) *stopped = true;
      return std::string(text.substr(0, start));
    }
  }
  if (stopped) *stopped = false;
  return std::string(text);
}

}  // namespace tpinfer::server
