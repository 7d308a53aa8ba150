// Helpers shared by the tests: temporary folders, synth models, and running an
// engine over a prompt to get the logits of every position.
#pragma once

#include <cstdint>
#include <filesystem>
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

}  // namespace tpinfer::testing
