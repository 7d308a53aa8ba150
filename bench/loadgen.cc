// tpinfer_loadgen: load for an OpenAI-compatible server (tpinfer serve, or any
// other). For each concurrency level C, C client threads each send
// --requests streamed completions one after another (temperature 0,
// ignore_eos, --max-tokens each, a different prompt per request), and the tool
// reports aggregate generated tokens per second over the level's wall time,
// the mean time to first token and the mean inter-token gap seen by clients.
// Token counts come from the server's usage chunk (stream_options.include_usage).
//
//   tpinfer_loadgen --url http://127.0.0.1:8000 --concurrency 1,16 --max-tokens 64
#include <httplib.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "sse_stream.h"

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

struct Options {
  std::string url = "http://127.0.0.1:8000";
  std::string concurrency = "1,16";
  int requests = 4;
  int max_tokens = 64;
  std::string model;
  std::string api_key;
  bool json_out = false;
};

struct RequestStats {
  bool ok = false;
  std::string error;
  int64_t completion_tokens = 0;
  double ttft = 0;      // seconds to the first text chunk
  double duration = 0;  // seconds to the end of the stream
};

const char* kPrompts[] = {"In the beginning",    "And God said",        "The LORD is my shepherd",
                          "Blessed are the",     "And Jesus answered",  "Now the serpent was",
                          "Honour thy father",   "And it came to pass", "For God so loved",
                          "Thus saith the LORD", "And Moses said unto", "Then answered Peter"};

RequestStats one_request(httplib::Client& client, const Options& o, int index) {
  RequestStats st;
  json body = {{"prompt", std::string(kPrompts[index % 12]) + " " + std::to_string(index)},
               {"max_tokens", o.max_tokens},
               {"temperature", 0},
               {"ignore_eos", true},
               {"stream", true},
               {"stream_options", {{"include_usage", true}}}};
  if (!o.model.empty()) body["model"] = o.model;
  const auto t0 = Clock::now();
  st.error = tpinfer::bench::post_stream(client, "/v1/completions", body, o.api_key, [&](const json& e) {
    if (e.contains("usage") && e["usage"].is_object()) st.completion_tokens = e["usage"].value("completion_tokens", 0);
    if (st.ttft == 0 && e.contains("choices") && !e["choices"].empty() && !e["choices"][0].value("text", "").empty()) {
      st.ttft = std::chrono::duration<double>(Clock::now() - t0).count();
    }
  });
  st.duration = std::chrono::duration<double>(Clock::now() - t0).count();
  st.ok = st.error.empty();
  return st;
}

struct LevelResult {
  int concurrency = 0;
  int requests = 0;
  int failed = 0;
  int64_t tokens = 0;
  double seconds = 0;
  double tokens_per_second = 0;
  double mean_ttft = 0;
  double mean_itl = 0;
};

LevelResult run_level(const Options& o, int concurrency) {
  std::vector<RequestStats> stats(static_cast<size_t>(concurrency * o.requests));
  std::vector<std::thread> threads;
  const auto t0 = Clock::now();
  for (int c = 0; c < concurrency; ++c) {
    threads.emplace_back([&, c] {
      httplib::Client client(o.url);
      client.set_read_timeout(600, 0);
      client.set_connection_timeout(30, 0);
      for (int r = 0; r < o.requests; ++r) {
        const int index = c * o.requests + r;
        stats[static_cast<size_t>(index)] = one_request(client, o, index);
      }
    });
  }
  for (auto& t : threads) t.join();
  LevelResult out;
  out.concurrency = concurrency;
  out.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  int ok = 0;
  for (const RequestStats& s : stats) {
    ++out.requests;
    if (!s.ok) {
      ++out.failed;
      std::fprintf(stderr, "request failed: %s\n", s.error.c_str());
      continue;
    }
    ++ok;
    out.tokens += s.completion_tokens;
    out.mean_ttft += s.ttft;
    if (s.completion_tokens > 1) out.mean_itl += (s.duration - s.ttft) / static_cast<double>(s.completion_tokens - 1);
  }
  if (ok > 0) {
    out.mean_ttft /= ok;
    out.mean_itl /= ok;
  }
  out.tokens_per_second = out.seconds > 0 ? static_cast<double>(out.tokens) / out.seconds : 0;
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"tpinfer_loadgen: aggregate generated tokens/s of an OpenAI-compatible server"};
  app.add_option("--url", o.url, "Server base URL")->capture_default_str();
  app.add_option("--concurrency", o.concurrency, "Comma-separated concurrent streams per level")->capture_default_str();
  app.add_option("--requests", o.requests, "Requests per stream, sent one after another")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--max-tokens", o.max_tokens, "Tokens generated per request (ignore_eos)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--model", o.model, "Model name to send (default: none, the server's)");
  app.add_option("--api-key", o.api_key, "Bearer token");
  app.add_flag("--json", o.json_out, "Print one JSON object");
  CLI11_PARSE(app, argc, argv);

  std::vector<int> levels;
  std::stringstream ss(o.concurrency);
  for (std::string item; std::getline(ss, item, ',');) {
    try {
      const int c = std::stoi(item);
      if (c < 1) throw std::invalid_argument(item);
      levels.push_back(c);
    } catch (const std::exception&) {
      std::fprintf(stderr, "error: --concurrency: '%s' is not a positive integer\n", item.c_str());
      return 1;
    }
  }
  {
    httplib::Client probe(o.url);
    auto res = probe.Get("/health");
    if (!res || res->status != 200) {
      std::fprintf(stderr, "error: %s/health does not answer 200; is the server up?\n", o.url.c_str());
      return 1;
    }
  }
  // One short warm-up request, so the first level does not pay for cold caches.
  {
    Options w = o;
    w.max_tokens = 4;
    httplib::Client client(o.url);
    one_request(client, w, 0);
  }

  std::vector<LevelResult> results;
  for (int c : levels) results.push_back(run_level(o, c));

  int failed = 0;
  json j = {
      {"url", o.url}, {"max_tokens", o.max_tokens}, {"requests_per_stream", o.requests}, {"levels", json::array()}};
  if (!o.json_out) {
    std::printf("%11s %9s %8s %10s %10s %12s %10s %10s\n", "concurrency", "requests", "failed", "tokens", "seconds",
                "tokens/s", "ttft ms", "itl ms");
  }
  for (const LevelResult& r : results) {
    failed += r.failed;
    j["levels"].push_back({{"concurrency", r.concurrency},
                           {"requests", r.requests},
                           {"failed", r.failed},
                           {"generated_tokens", r.tokens},
                           {"seconds", r.seconds},
                           {"generated_tokens_per_second", r.tokens_per_second},
                           {"mean_ttft_seconds", r.mean_ttft},
                           {"mean_itl_seconds", r.mean_itl}});
    if (!o.json_out) {
      std::printf("%11d %9d %8d %10lld %10.2f %12.1f %10.1f %10.2f\n", r.concurrency, r.requests, r.failed,
                  static_cast<long long>(r.tokens), r.seconds, r.tokens_per_second, r.mean_ttft * 1e3,
                  r.mean_itl * 1e3);
    }
  }
  if (results.size() >= 2 && results.front().tokens_per_second > 0) {
    const double ratio = results.back().tokens_per_second / results.front().tokens_per_second;
    j["ratio_last_to_first"] = ratio;
    if (!o.json_out) {
      std::printf("aggregate tokens/s at %d streams / at %d: %.2fx\n", results.back().concurrency,
                  results.front().concurrency, ratio);
    }
  }
  if (o.json_out) std::printf("%s\n", j.dump(2).c_str());
  return failed == 0 ? 0 : 1;
}
