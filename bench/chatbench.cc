// tpinfer_chatbench: a multi-turn chat workload for an OpenAI-compatible
// server (tpinfer serve, or any other), the traffic prefix caching is for.
// --conversations client threads each hold one conversation: a system prompt
// shared by all (--system-words words), then --turns user messages, each sent
// with the whole conversation so far (the replies included) as a streamed
// chat completion (temperature 0, ignore_eos, --max-tokens). The tool reports
// the time to first token of the first turns and of the later turns (median
// and p90), the prompt tokens the server says it found cached, and the
// requests and generated tokens per second over the whole run.
//
//   tpinfer_chatbench --url http://127.0.0.1:8000 --conversations 16 --turns 6 --system-words 600
#include <httplib.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "sse_stream.h"

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

struct Options {
  std::string url = "http://127.0.0.1:8000";
  int conversations = 16;
  int turns = 6;
  int system_words = 600;
  int user_words = 12;
  int max_tokens = 16;
  std::string label;
  bool json_out = false;
};

struct TurnStats {
  bool ok = false;
  std::string error;
  double ttft = 0;
  int64_t prompt_tokens = 0;
  int64_t cached_tokens = 0;
  int64_t completion_tokens = 0;
  std::string reply;
};

const char* kWords[] = {"the",    "light", "water",    "king",    "field",  "house",  "river", "stone",
                        "bread",  "city",  "mountain", "servant", "gate",   "wind",   "seed",  "morning",
                        "people", "tree",  "fire",     "land",    "silver", "door",   "voice", "road",
                        "night",  "sea",   "lamp",     "star",    "valley", "harvest"};

// `n` words, a different sequence for every seed.
std::string words(int n, uint64_t seed) {
  std::string out;
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (int i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    if (i > 0) out += ' ';
    out += kWords[x % (sizeof(kWords) / sizeof(kWords[0]))];
  }
  return out;
}

TurnStats one_turn(httplib::Client& client, const Options& o, const json& messages) {
  TurnStats st;
  // logprobs: every token makes a chunk at once, even one whose text is held
  // back (part of a UTF-8 character), so the first chunk times the first token.
  const json body = {{"messages", messages},
                     {"max_tokens", o.max_tokens},
                     {"temperature", 0},
                     {"ignore_eos", true},
                     {"stream", true},
                     {"logprobs", true},
                     {"stream_options", {{"include_usage", true}}}};
  const auto t0 = Clock::now();
  st.error = tpinfer::bench::post_stream(client, "/v1/chat/completions", body, "", [&](const json& e) {
    if (e.contains("usage") && e["usage"].is_object()) {
      st.prompt_tokens = e["usage"].value("prompt_tokens", 0);
      st.completion_tokens = e["usage"].value("completion_tokens", 0);
      if (e["usage"].contains("prompt_tokens_details") && e["usage"]["prompt_tokens_details"].is_object()) {
        st.cached_tokens = e["usage"]["prompt_tokens_details"].value("cached_tokens", 0);
      }
    }
    if (!e.contains("choices") || e["choices"].empty()) return;
    const json& c = e["choices"][0];
    const bool token =
        (c.contains("logprobs") && c["logprobs"].is_object()) ||
        (c.contains("delta") && c["delta"].contains("content") && !c["delta"]["content"].get<std::string>().empty());
    if (st.ttft == 0 && token) st.ttft = std::chrono::duration<double>(Clock::now() - t0).count();
    if (c.contains("delta") && c["delta"].contains("content")) st.reply += c["delta"]["content"].get<std::string>();
  });
  st.ok = st.error.empty();
  return st;
}

double quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double pos = q * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(pos);
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (pos - static_cast<double>(lo));
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"tpinfer_chatbench: multi-turn chat conversations against an OpenAI-compatible server"};
  app.add_option("--url", o.url, "Server base URL")->capture_default_str();
  app.add_option("--conversations", o.conversations, "Conversations at once, one client each")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--turns", o.turns, "User messages per conversation")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--system-words", o.system_words, "Words of the system prompt every conversation shares")
      ->capture_default_str();
  app.add_option("--user-words", o.user_words, "Words of each user message")->capture_default_str();
  app.add_option("--max-tokens", o.max_tokens, "Tokens generated per reply (ignore_eos)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--label", o.label, "A name for this run in the output");
  app.add_flag("--json", o.json_out, "Print one JSON object");
  CLI11_PARSE(app, argc, argv);
  {
    httplib::Client probe(o.url);
    auto res = probe.Get("/health");
    if (!res || res->status != 200) {
      std::fprintf(stderr, "error: %s/health does not answer 200; is the server up?\n", o.url.c_str());
      return 1;
    }
  }
  const std::string system = "You are a helpful assistant. " + words(o.system_words, 1);
  std::vector<std::vector<TurnStats>> stats(static_cast<size_t>(o.conversations));
  std::vector<std::thread> threads;
  const auto t0 = Clock::now();
  for (int c = 0; c < o.conversations; ++c) {
    threads.emplace_back([&, c] {
      httplib::Client client(o.url);
      client.set_read_timeout(1200, 0);
      client.set_connection_timeout(30, 0);
      json messages = json::array({{{"role", "system"}, {"content", system}}});
      for (int t = 0; t < o.turns; ++t) {
        messages.push_back(
            {{"role", "user"},
             {"content", words(o.user_words, 1000 + static_cast<uint64_t>(c) * 100 + static_cast<uint64_t>(t))}});
        TurnStats st = one_turn(client, o, messages);
        messages.push_back({{"role", "assistant"}, {"content", st.reply}});
        stats[static_cast<size_t>(c)].push_back(std::move(st));
      }
    });
  }
  for (auto& t : threads) t.join();
  const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();

  std::vector<double> first, later;
  int64_t prompt = 0, cached = 0, generated = 0;
  int requests = 0, failed = 0;
  for (const auto& conv : stats) {
    for (size_t t = 0; t < conv.size(); ++t) {
      const TurnStats& s = conv[t];
      ++requests;
      if (!s.ok) {
        ++failed;
        std::fprintf(stderr, "request failed: %s\n", s.error.c_str());
        continue;
      }
      (t == 0 ? first : later).push_back(s.ttft);
      prompt += s.prompt_tokens;
      cached += s.cached_tokens;
      generated += s.completion_tokens;
    }
  }
  const json out = {{"label", o.label},
                    {"conversations", o.conversations},
                    {"turns", o.turns},
                    {"requests", requests},
                    {"failed", failed},
                    {"seconds", seconds},
                    {"prompt_tokens", prompt},
                    {"cached_prompt_tokens", cached},
                    {"generated_tokens", generated},
                    {"requests_per_second", requests / seconds},
                    {"generated_tokens_per_second", static_cast<double>(generated) / seconds},
                    {"ttft_first_turn_median", quantile(first, 0.5)},
                    {"ttft_first_turn_p90", quantile(first, 0.9)},
                    {"ttft_later_turns_median", quantile(later, 0.5)},
                    {"ttft_later_turns_p90", quantile(later, 0.9)}};
  if (o.json_out) {
    std::printf("%s\n", out.dump().c_str());
  } else {
    std::printf(
        "%s: %d requests (%d failed) in %.1f s: %.2f requests/s, %.1f generated tokens/s; prompt tokens %lld, of them "
        "cached %lld\n  TTFT first turn: median %.3f s, p90 %.3f s; later turns: median %.3f s, p90 %.3f s\n",
        o.label.c_str(), requests, failed, seconds, requests / seconds, static_cast<double>(generated) / seconds,
        static_cast<long long>(prompt), static_cast<long long>(cached), quantile(first, 0.5), quantile(first, 0.9),
        quantile(later, 0.5), quantile(later, 0.9));
  }
  return failed == 0 ? 0 : 1;
}
