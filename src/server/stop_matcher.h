// Stop strings over streamed text. Text arrives piece by piece (one token's worth
// at a time, already whole UTF-8 characters); a stop string may span pieces. The
// matcher releases text as soon as it cannot be the start of a stop string and
// holds back the longest tail that still could be, so a client never sees the
// beginning of a stop string that then completes. When a stop string completes,
// everything before it is released, the stop string and everything after are
// dropped, and stopped() turns true. The stop string that completes first wins
// (on a tie, the one that starts first), so the result is the same however the
// text was cut into pieces. With no stop strings, text passes through.
//
// push() is linear in the held text times the number of stop strings (the held
// tail is shorter than the longest stop string).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace tpinfer::server {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops);

  // Appends `text`; returns the text that is now safe to emit (possibly empty).
  // After a stop, returns "" for every further push.
  std::string push(std::string_view text);
  // At the end of generation: the held-back tail (it never became a stop string).
  std::string flush();

  bool stopped() const { return stopped_; }
  // The stop string that matched (empty when none did).
  const std::string& matched() const { return matched_; }

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool stopped_ = false;
  std::string matched_;
};

// The plain reference: the whole text cut before the stop string that completes
// first (what all pushes together must equal; used by the tests).
std::string truncate_at_stop(std::string_view text, const std::vector<std::string>& stops, bool* stopped = nullptr);

}  // namespace tpinfer::server
