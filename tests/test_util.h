// Helpers shared by the tests: temporary folders, synth models, and running an
// engine over a prompt to get the logits of every position.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "model/synth.h"

namespace tpinfer::testing {

// A fresh folder under the system temp dir, removed with the object.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::filesystem::path& path() const { return path_; }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

// A small synth model of `arch` (2 layers, hidden 64, 4 heads, 2 KV heads,
// ffn 128, vocab 300 unless the spec says otherwise) written to `out`.
SynthSpec small_spec(Arch arch);

// Logits [tokens.size(), vocab] of every position, from a fresh engine.
std::vector<float> engine_logits(const std::string& model, const std::vector<int32_t>& tokens,
                                 EngineOptions options = {});
EngineOptions f32_options(int tp = 1);

// Greedy decoding by hand on `engine`: the context as one step, then one token
// per step, n tokens. margins[i]: the top logit minus the runner-up at step i
// (where a different split may legitimately flip the choice).
struct GreedyDecode {
  std::vector<int32_t> tokens;
  std::vector<float> margins;
};
GreedyDecode greedy_decode(Engine& engine, std::vector<int32_t> context, int n);

// Deterministic pseudo-random token ids in [0, vocab).
std::vector<int32_t> random_tokens(int n, int vocab, uint64_t seed);

// Runs a shell command; returns its exit code and fills `out` with stdout+stderr.
int run_command(const std::string& cmd, std::string* out);
std::string binary();
std::string shared_dir();
std::string source_dir();

// Timed tests: a test that asserts a duration, a rate or a ratio of times
// fails whenever the machine is busy (ctest -j, another job), so none is in
// the default suite. Each such test starts with TPINFER_SKIP_UNLESS_TIMED()
// and runs only with TPINFER_TIMED_TESTS=1, on an idle machine. Tests in the
// default suite keep to hang-catchers: upper bounds on elapsed time at ten
// times what the run needs or more, and lower bounds that load cannot break.
bool timed_tests_enabled();
#define TPINFER_SKIP_UNLESS_TIMED()                                                    \
  do {                                                                                 \
    if (!::tpinfer::testing::timed_tests_enabled()) {                                  \
      GTEST_SKIP() << "timed test: run with TPINFER_TIMED_TESTS=1 on an idle machine"; \
    }                                                                                  \
  } while (0)

// Waits for an event instead of sleeping for a guess of how long it takes:
// polls `done` every millisecond until it holds (true) or `cap` has passed
// (false). The cap only ends a hang; make it generous.
bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds cap = std::chrono::seconds(60));

}  // namespace tpinfer::testing
