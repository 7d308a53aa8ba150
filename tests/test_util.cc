#include "test_util.h"

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <thread>

#include "core/error.h"
#include "engine/sampler.h"

namespace tpinfer::testing {

TempDir::TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "tpinfer-test-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) throw Error("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

SynthSpec small_spec(Arch arch) {
  SynthSpec s;
  s.arch = arch;
  s.layers = 2;
  s.hidden = 64;
  s.heads = 4;
  s.kv_heads = 2;
  s.ffn = 128;
  s.vocab = 300;
  s.context = 256;
  return s;
}

EngineOptions f32_options(int tp) {
  EngineOptions o;
  o.parallel.tp = tp;
  o.parallel.threads_per_rank = 1;
  o.kv_type = DType::F32;
  o.kv_tokens = 256;
  o.pin_threads = false;
  return o;
}

std::vector<float> engine_logits(const std::string& model, const std::vector<int32_t>& tokens, EngineOptions options) {
  if (options.kv_tokens == 0) options.kv_tokens = 256;
  Engine engine(model, options);
  Batch b;
  std::vector<int32_t> table;
  if (!engine.blocks().reserve(table, static_cast<int64_t>(tokens.size()))) throw Error("KV cache too small");
  b.sequences.push_back({table});
  for (size_t i = 0; i < tokens.size(); ++i) {
    b.tokens.push_back(tokens[i]);
    b.positions.push_back(static_cast<int32_t>(i));
    b.seq.push_back(0);
    b.want_logits.push_back(1);
  }
  return engine.step(b);
}

std::vector<int32_t> random_tokens(int n, int vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> t;
  for (int i = 0; i < n; ++i) t.push_back(static_cast<int32_t>(rng() % static_cast<uint64_t>(vocab)));
  return t;
}

int run_command(const std::string& cmd, std::string* out) {
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) return -1;
  std::array<char, 4096> buf{};
  std::string text;
  size_t got;
  while ((got = std::fread(buf.data(), 1, buf.size(), p)) > 0) text.append(buf.data(), got);
  const int status = ::pclose(p);
  if (out) *out = text;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string binary() { return TPINFER_BINARY; }
std::string shared_dir() { return TPINFER_SHARED_DIR; }
std::string source_dir() { return TPINFER_SOURCE_DIR; }

bool timed_tests_enabled() {
  const char* timed = std::getenv("TPINFER_TIMED_TESTS");
  return timed != nullptr && std::string(timed) == "1";
}

bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds cap) {
  const auto give_up = std::chrono::steady_clock::now() + cap;
  for (;;) {
    if (done()) return true;
    if (std::chrono::steady_clock::now() >= give_up) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

GreedyDecode greedy_decode(Engine& engine, std::vector<int32_t> context, int n) {
  std::vector<int32_t> table;
  GreedyDecode out;
  const int64_t vocab = engine.config().vocab;
  size_t computed = 0;
  for (int step = 0; step < n; ++step) {
    if (!engine.blocks().reserve(table, static_cast<int64_t>(context.size()))) throw Error("KV cache too small");
    Batch b;
    b.sequences.push_back({table});
    for (size_t i = computed; i < context.size(); ++i) {
      b.tokens.push_back(context[i]);
      b.positions.push_back(static_cast<int32_t>(i));
      b.seq.push_back(0);
      b.want_logits.push_back(i + 1 == context.size() ? 1 : 0);
    }
    computed = context.size();
    const std::vector<float>& l = engine.step(b);
    std::vector<float> v(l.begin(), l.begin() + vocab);
    const int32_t best = argmax(v);
    const float top = v[static_cast<size_t>(best)];
    v[static_cast<size_t>(best)] = -INFINITY;
    out.tokens.push_back(best);
    out.margins.push_back(top - v[static_cast<size_t>(argmax(v))]);
    context.push_back(best);
  }
  return out;
}

}  // namespace tpinfer::testing
