// tpinfer serve end to end: a real server process on 127.0.0.1 with the bible
// model, driven by a real HTTP client. Greedy outputs are compared with the
// command-line generator and with the same request run alone; errors with
// their OpenAI error JSON; streams with their non-streamed twins.
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <map>
#include <mutex>
#include <set>

#include "server/server_process.h"

namespace tpinfer {
namespace {

using nlohmann::json;
using testing::bible_model;
using testing::HttpResult;
using testing::metric_value;
using testing::ServerProcess;
using testing::StreamResult;

// One server for the API tests that need no special options.
class ServerApi : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { server_ = new ServerProcess({"-m", bible_model(), "--served-model-name", "bible-kjv"}); }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override { ASSERT_TRUE(server_->ok()) << server_->log(); }
  std::unique_ptr<httplib::Client> client() { return server_->client(); }
  std::string metrics() {
    auto c = client();
    auto res = c->Get("/metrics");
    return res ? res->body : "";
  }
  static ServerProcess* server_;
};
ServerProcess* ServerApi::server_ = nullptr;

json completion(const std::string& prompt, int max_tokens) {
  return {{"prompt", prompt}, {"max_tokens", max_tokens}, {"temperature", 0}};
}

json chat(const std::string& content, int max_tokens) {
  return {{"messages", {{{"role", "system"}, {"content", "Speak as the King James Bible."}},
                        {{"role", "user"}, {"content", content}}}},
          {"max_tokens", max_tokens},
          {"temperature", 0}};
}

void expect_error_json(const HttpResult& r, int status, const std::string& what) {
  EXPECT_EQ(r.status, status) << what << ": " << r.raw;
  ASSERT_TRUE(r.body.is_object()) << what << ": " << r.raw;
  ASSERT_TRUE(r.body.contains("error")) << what << ": " << r.raw;
  const json& e = r.body["error"];
  EXPECT_TRUE(e["message"].is_string() && !e["message"].get<std::string>().empty()) << what;
  EXPECT_TRUE(e["type"].is_string()) << what;
  EXPECT_TRUE(e.contains("param") && (e["param"].is_null() || e["param"].is_string())) << what;
  EXPECT_TRUE(e.contains("code") && (e["code"].is_null() || e["code"].is_string())) << what;
}

TEST_F(ServerApi, GreedyCompletionEqualsTheCommandLineGenerator) {
  const std::string prompt = "And Jesus said unto them,";
  std::string out;
  ASSERT_EQ(testing::run_command(testing::binary() + " run -m " + bible_model() +
                                     " --temperature 0 --no-pin --json -n 24 -p '" + prompt + "' 2>/dev/null",
                                 &out),
            0)
      << out;
  const json cli = json::parse(out);
  auto c = client();
  const HttpResult r = testing::post_json(*c, "/v1/completions", completion(prompt, 24));
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(r.body["choices"][0]["text"], cli["text"]);
  EXPECT_EQ(r.body["usage"]["prompt_tokens"], cli["prompt_tokens"].size());
  EXPECT_EQ(r.body["usage"]["completion_tokens"], cli["tokens"].size());
}

TEST_F(ServerApi, CompletionResponseAndStreamAgree) {
  auto c = client();
  json req = completion("In the beginning God created", 20);
  req["model"] = "bible-kjv";
  const HttpResult r = testing::post_json(*c, "/v1/completions", req);
  ASSERT_EQ(r.status, 200) << r.raw;
  const json& b = r.body;
  EXPECT_EQ(b["object"], "text_completion");
  EXPECT_EQ(b["id"].get<std::string>().rfind("cmpl-", 0), 0u);
  EXPECT_TRUE(b["created"].is_number_integer());
  EXPECT_EQ(b["model"], "bible-kjv");
  ASSERT_EQ(b["choices"].size(), 1u);
  EXPECT_EQ(b["choices"][0]["index"], 0);
  EXPECT_TRUE(b["choices"][0]["logprobs"].is_null());
  const std::string text = b["choices"][0]["text"];
  EXPECT_FALSE(text.empty());
  const int completion_tokens = b["usage"]["completion_tokens"];
  EXPECT_EQ(b["choices"][0]["finish_reason"], completion_tokens == 20 ? "length" : "stop");
  EXPECT_EQ(b["usage"]["total_tokens"].get<int>(),
            b["usage"]["prompt_tokens"].get<int>() + b["usage"]["completion_tokens"].get<int>());
  const HttpResult tok = testing::post_json(*c, "/tokenize", json{{"prompt", "In the beginning God created"}});
  ASSERT_EQ(tok.status, 200);
  EXPECT_EQ(b["usage"]["prompt_tokens"], tok.body["count"]);

  json sreq = req;
  sreq["stream"] = true;
  const StreamResult s = testing::post_stream(*c, "/v1/completions", sreq);
  ASSERT_EQ(s.status, 200) << s.raw;
  EXPECT_EQ(s.content_type.rfind("text/event-stream", 0), 0u) << s.content_type;
  EXPECT_TRUE(s.done) << s.raw;
  ASSERT_FALSE(s.events.empty());
  std::set<std::string> ids;
  int finishes = 0;
  for (const json& e : s.events) {
    ids.insert(e["id"].get<std::string>());
    EXPECT_EQ(e["object"], "text_completion");
    EXPECT_EQ(e["model"], "bible-kjv");
    EXPECT_FALSE(e.contains("usage")) << e;
    for (const json& ch : e["choices"]) {
      EXPECT_TRUE(ch.contains("text") && ch.contains("logprobs") && ch.contains("finish_reason")) << ch;
      if (!ch["finish_reason"].is_null()) {
        ++finishes;
        EXPECT_EQ(ch["finish_reason"], b["choices"][0]["finish_reason"]);
      }
    }
  }
  EXPECT_EQ(ids.size(), 1u);
  EXPECT_EQ(finishes, 1);
  EXPECT_EQ(testing::stream_texts(s)[0], text);
}

TEST_F(ServerApi, StreamIncludeUsageEndsWithAUsageChunk) {
  auto c = client();
  json req = completion("The LORD is my shepherd", 12);
  req["stream"] = true;
  req["stream_options"] = {{"include_usage", true}};
  const StreamResult s = testing::post_stream(*c, "/v1/completions", req);
  ASSERT_EQ(s.status, 200);
  ASSERT_TRUE(s.done);
  ASSERT_GE(s.events.size(), 2u);
  for (size_t i = 0; i + 1 < s.events.size(); ++i) {
    ASSERT_TRUE(s.events[i].contains("usage")) << s.events[i];
    EXPECT_TRUE(s.events[i]["usage"].is_null());
  }
  const json& last = s.events.back();
  EXPECT_TRUE(last["choices"].is_array() && last["choices"].empty()) << last;
  const HttpResult r = testing::post_json(*c, "/v1/completions", completion("The LORD is my shepherd", 12));
  EXPECT_EQ(last["usage"], r.body["usage"]);
}

TEST_F(ServerApi, ChatResponseAndStreamAgree) {
  auto c = client();
  json req = chat("Who created the heaven and the earth?", 24);
  req["model"] = "bible-kjv";
  const HttpResult r = testing::post_json(*c, "/v1/chat/completions", req);
  ASSERT_EQ(r.status, 200) << r.raw;
  const json& b = r.body;
  EXPECT_EQ(b["object"], "chat.completion");
  EXPECT_EQ(b["id"].get<std::string>().rfind("chatcmpl-", 0), 0u);
  ASSERT_EQ(b["choices"].size(), 1u);
  EXPECT_EQ(b["choices"][0]["message"]["role"], "assistant");
  const std::string text = b["choices"][0]["message"]["content"];
  EXPECT_FALSE(text.empty());
  const HttpResult tok = testing::post_json(*c, "/tokenize", json{{"messages", req["messages"]}});
  ASSERT_EQ(tok.status, 200) << tok.raw;
  EXPECT_EQ(b["usage"]["prompt_tokens"], tok.body["count"]);

  json sreq = req;
  sreq["stream"] = true;
  const StreamResult s = testing::post_stream(*c, "/v1/chat/completions", sreq);
  ASSERT_EQ(s.status, 200);
  ASSERT_TRUE(s.done);
  ASSERT_GE(s.events.size(), 2u);
  EXPECT_EQ(s.events[0]["choices"][0]["delta"]["role"], "assistant");
  for (const json& e : s.events) EXPECT_EQ(e["object"], "chat.completion.chunk");
  EXPECT_EQ(s.events.back()["choices"][0]["finish_reason"], b["choices"][0]["finish_reason"]);
  EXPECT_EQ(testing::stream_texts(s)[0], text);

  // max_completion_tokens is the newer name and wins over max_tokens.
  json mreq = req;
  mreq["max_completion_tokens"] = 5;
  const HttpResult m = testing::post_json(*c, "/v1/chat/completions", mreq);
  ASSERT_EQ(m.status, 200);
  EXPECT_EQ(m.body["usage"]["completion_tokens"], 5);
}

TEST_F(ServerApi, NChoicesAreIndependentAndSeedsRepeat) {
  auto c = client();
  json req = {{"prompt", "And the word of the LORD came"}, {"max_tokens", 24}, {"n", 3}, {"temperature", 1.0},
              {"seed", 1234}};
  const HttpResult a = testing::post_json(*c, "/v1/completions", req);
  ASSERT_EQ(a.status, 200) << a.raw;
  ASSERT_EQ(a.body["choices"].size(), 3u);
  std::set<std::string> texts;
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(a.body["choices"][i]["index"], i);
    texts.insert(a.body["choices"][i]["text"].get<std::string>());
  }
  EXPECT_GE(texts.size(), 2u) << "sampled choices should differ: " << a.raw;
  EXPECT_GE(a.body["usage"]["completion_tokens"].get<int>(), 3);
  EXPECT_LE(a.body["usage"]["completion_tokens"].get<int>(), 3 * 24);
  const HttpResult b = testing::post_json(*c, "/v1/completions", req);
  ASSERT_EQ(b.status, 200);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(a.body["choices"][i]["text"], b.body["choices"][i]["text"]);
  // Streamed, the same seed gives the same choices.
  req["stream"] = true;
  const StreamResult s = testing::post_stream(*c, "/v1/completions", req);
  const auto st = testing::stream_texts(s, 3);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(st[i], a.body["choices"][i]["text"]);
}

TEST_F(ServerApi, StopStringsSpanningTokensAreCutAndNotSent) {
  auto c = client();
  const std::string prompt = "And Jesus said unto them,";
  const HttpResult full = testing::post_json(*c, "/v1/completions", completion(prompt, 32));
  ASSERT_EQ(full.status, 200);
  const std::string text = full.body["choices"][0]["text"];
  ASSERT_GT(text.size(), 30u) << text;
  // Several stop strings: from the middle of words (they span tokens), and one
  // that never occurs.
  for (const auto& [from, len] : std::vector<std::pair<size_t, size_t>>{{8, 7}, {13, 3}, {20, 9}, {1, 2}}) {
    const std::string stop = text.substr(from, len);
    const std::string want = text.substr(0, text.find(stop));
    json req = completion(prompt, 32);
    req["stop"] = json::array({"zzzz never", stop});
    const HttpResult r = testing::post_json(*c, "/v1/completions", req);
    ASSERT_EQ(r.status, 200) << r.raw;
    EXPECT_EQ(r.body["choices"][0]["text"], want) << "stop '" << stop << "'";
    EXPECT_EQ(r.body["choices"][0]["finish_reason"], "stop");
    req["stream"] = true;
    const StreamResult s = testing::post_stream(*c, "/v1/completions", req);
    EXPECT_EQ(testing::stream_texts(s)[0], want) << "stop '" << stop << "'";
    // (The streamed pieces concatenate to the cut text: nothing past the cut was sent.)
    EXPECT_EQ(s.events.back()["choices"][0]["finish_reason"], "stop");
  }
  // A plain string works as well as an array; a stop that does not occur changes nothing.
  json req = completion(prompt, 32);
  req["stop"] = "zzzz never";
  const HttpResult r = testing::post_json(*c, "/v1/completions", req);
  EXPECT_EQ(r.body["choices"][0]["text"], text);
}

TEST_F(ServerApi, CompletionLogprobs) {
  auto c = client();
  json req = completion("And God said", 10);
  req["logprobs"] = 3;
  const HttpResult r = testing::post_json(*c, "/v1/completions", req);
  ASSERT_EQ(r.status, 200) << r.raw;
  const json& lp = r.body["choices"][0]["logprobs"];
  const size_t n = r.body["usage"]["completion_tokens"];
  ASSERT_EQ(lp["tokens"].size(), n);
  ASSERT_EQ(lp["token_logprobs"].size(), n);
  ASSERT_EQ(lp["top_logprobs"].size(), n);
  ASSERT_EQ(lp["text_offset"].size(), n);
  std::string joined;
  for (size_t i = 0; i < n; ++i) {
    EXPECT_EQ(lp["text_offset"][i].get<size_t>(), joined.size());
    joined += lp["tokens"][i].get<std::string>();
    const double chosen = lp["token_logprobs"][i];
    EXPECT_LE(chosen, 0.0);
    ASSERT_EQ(lp["top_logprobs"][i].size(), 3u) << lp["top_logprobs"][i];
    double best = -1e30;
    for (const auto& [tok, v] : lp["top_logprobs"][i].items()) best = std::max(best, v.get<double>());
    EXPECT_NEAR(chosen, best, 1e-6) << "greedy picks the most likely token";
  }
  EXPECT_EQ(joined, r.body["choices"][0]["text"]);

  // Streamed: the same tokens and values, split over chunks.
  req["stream"] = true;
  const StreamResult s = testing::post_stream(*c, "/v1/completions", req);
  std::vector<double> streamed;
  for (const json& e : s.events) {
    for (const json& ch : e["choices"]) {
      if (ch["logprobs"].is_null()) continue;
      for (const auto& v : ch["logprobs"]["token_logprobs"]) streamed.push_back(v);
    }
  }
  ASSERT_EQ(streamed.size(), n);
  for (size_t i = 0; i < n; ++i) EXPECT_DOUBLE_EQ(streamed[i], lp["token_logprobs"][i].get<double>());
}

TEST_F(ServerApi, ChatLogprobs) {
  auto c = client();
  json req = chat("Blessed are the meek", 8);
  req["logprobs"] = true;
  req["top_logprobs"] = 2;
  const HttpResult r = testing::post_json(*c, "/v1/chat/completions", req);
  ASSERT_EQ(r.status, 200) << r.raw;
  const json& content = r.body["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(content.size(), r.body["usage"]["completion_tokens"].get<size_t>());
  for (const json& item : content) {
    const std::string token = item["token"];
    std::vector<int> bytes;
    for (unsigned char ch : token) bytes.push_back(ch);
    EXPECT_EQ(item["bytes"].get<std::vector<int>>(), bytes);
    EXPECT_LE(item["logprob"].get<double>(), 0.0);
    ASSERT_EQ(item["top_logprobs"].size(), 2u);
    EXPECT_EQ(item["top_logprobs"][0]["token"], item["token"]) << "greedy: the chosen token is the top one";
    EXPECT_GE(item["top_logprobs"][0]["logprob"].get<double>(), item["top_logprobs"][1]["logprob"].get<double>());
  }
  req["logprobs"] = false;
  EXPECT_TRUE(testing::post_json(*c, "/v1/chat/completions", req).body["choices"][0]["logprobs"].is_null());
}

TEST_F(ServerApi, ModelsEndpoint) {
  auto c = client();
  const HttpResult r = testing::get(*c, "/v1/models");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.body["object"], "list");
  ASSERT_EQ(r.body["data"].size(), 1u);
  EXPECT_EQ(r.body["data"][0]["id"], "bible-kjv");
  EXPECT_EQ(r.body["data"][0]["object"], "model");
  EXPECT_EQ(r.body["data"][0]["max_model_len"], 512);
  EXPECT_EQ(testing::get(*c, "/v1/models/bible-kjv").status, 200);
  expect_error_json(testing::get(*c, "/v1/models/gpt-4o"), 404, "unknown model");
  EXPECT_EQ(testing::get(*c, "/health").status, 200);
}

TEST_F(ServerApi, TokenizeRoundTrip) {
  auto c = client();
  for (const char* text : {"In the beginning God created the heaven and the earth.",
                                 "  Spaces,\ttabs\nand newlines; ünïcödé and 😀 emoji  ", "x"}) {
    const HttpResult t = testing::post_json(*c, "/tokenize", json{{"prompt", text}, {"add_special_tokens", false}});
    ASSERT_EQ(t.status, 200) << t.raw;
    EXPECT_EQ(t.body["count"], t.body["tokens"].size());
    const HttpResult d = testing::post_json(*c, "/detokenize", json{{"tokens", t.body["tokens"]}});
    ASSERT_EQ(d.status, 200) << d.raw;
    EXPECT_EQ(d.body["prompt"], text);
    // With special tokens, BOS comes first.
    const HttpResult s = testing::post_json(*c, "/tokenize", json{{"prompt", text}});
    EXPECT_EQ(s.body["tokens"][0], 4094);
    EXPECT_EQ(s.body["count"].get<size_t>(), t.body["count"].get<size_t>() + 1);
  }
  expect_error_json(testing::post_json(*c, "/detokenize", json{{"tokens", {1, 2, 99999}}}), 400, "id out of range");
  expect_error_json(testing::post_json(*c, "/tokenize", json{{"prompt", 5}}), 400, "prompt not a string");
}

// `promtool check metrics` (Debian's prometheus package) on a /metrics body:
// the exposition parses and every name follows Prometheus' conventions (_total
// only on counters, units in names, base units, help on every metric).
void expect_promtool_accepts(const std::string& metrics) {
  std::string out;
  ASSERT_EQ(testing::run_command("command -v promtool", &out), 0)
      << "promtool not found: install Debian's prometheus package (scripts/deps.sh does)";
  testing::TempDir dir;
  const std::string file = dir.file("metrics.txt");
  std::ofstream(file, std::ios::binary) << metrics;
  EXPECT_EQ(testing::run_command("promtool check metrics < " + file + " 2>&1", &out), 0) << out << "\n" << metrics;
  EXPECT_EQ(out, "") << metrics;
}

TEST_F(ServerApi, MetricsReportRequestsTokensLatencyCacheAndCollectives) {
  auto c = client();
  ASSERT_EQ(testing::post_json(*c, "/v1/completions", completion("Honour thy father", 6)).status, 200);
  testing::post_json(*c, "/v1/completions", std::string("{not json"));
  const std::string m = testing::idle_metrics(*c);
  EXPECT_GE(metric_value(m, "tpinfer_requests_total{endpoint=\"/v1/completions\",status=\"200\"}"), 1);
  EXPECT_GE(metric_value(m, "tpinfer_requests_total{endpoint=\"/v1/completions\",status=\"400\"}"), 1);
  EXPECT_GE(metric_value(m, "tpinfer_prompt_tokens_total"), 4);
  EXPECT_GE(metric_value(m, "tpinfer_generation_tokens_total"), 6);
  EXPECT_GE(metric_value(m, "tpinfer_time_to_first_token_seconds_count"), 1);
  EXPECT_GE(metric_value(m, "tpinfer_inter_token_latency_seconds_count"), 5);
  EXPECT_GE(metric_value(m, "tpinfer_e2e_request_latency_seconds_count"), 1);
  EXPECT_EQ(metric_value(m, "tpinfer_time_to_first_token_seconds_count"),
            metric_value(m, "tpinfer_time_to_first_token_seconds_bucket{le=\"+Inf\"}"));
  EXPECT_EQ(metric_value(m, "tpinfer_num_requests_running"), 0);
  EXPECT_EQ(metric_value(m, "tpinfer_num_requests_waiting"), 0);
  // The default cache: 2 GiB, but no more than 64 sequences x 512 tokens use.
  EXPECT_EQ(metric_value(m, "tpinfer_kv_cache_capacity_blocks"), 64 * 512 / 16);
  EXPECT_EQ(metric_value(m, "tpinfer_kv_cache_used_blocks"), 0);
  EXPECT_EQ(metric_value(m, "tpinfer_kv_cache_usage_ratio"), 0);
  EXPECT_GE(metric_value(m, "tpinfer_num_preemptions_total"), 0);
  EXPECT_GE(metric_value(m, "tpinfer_scheduler_steps_total"), 6);
  // Every step broadcasts the batch from the driver.
  EXPECT_GE(metric_value(m, "tpinfer_collective_calls_total{collective=\"broadcast\"}"),
            metric_value(m, "tpinfer_scheduler_steps_total"));
  EXPECT_GE(metric_value(m, "tpinfer_collective_bytes_total{collective=\"broadcast\"}"), 1);
  EXPECT_GE(metric_value(m, "tpinfer_collective_seconds_total{collective=\"all_reduce\"}"), 0);
  // Of the time in collectives, the wait for the last rank (present: -1 when missing).
  EXPECT_GE(metric_value(m, "tpinfer_collective_wait_seconds_total{collective=\"all_reduce\"}"), 0);
  EXPECT_LE(metric_value(m, "tpinfer_collective_wait_seconds_total{collective=\"all_reduce\"}"),
            metric_value(m, "tpinfer_collective_seconds_total{collective=\"all_reduce\"}"));
  expect_promtool_accepts(m);
}

TEST_F(ServerApi, BadInputGetsItsStatusAndErrorJsonAndTheServerKeepsServing) {
  struct Case {
    const char* path;
    std::string body;
    int status;
    const char* param;  // expected error.param, "" for null
  };
  const std::string long_prompt = [] {
    std::string s;
    for (int i = 0; i < 300; ++i) s += "and the ";
    return s;
  }();
  const std::vector<Case> cases = {
      {"/v1/completions", "{\"prompt\": \"x\"", 400, ""},
      {"/v1/completions", "[1, 2]", 400, ""},
      {"/v1/completions", "", 400, ""},
      {"/v1/completions", "{\"prompt\": 5}", 400, "prompt"},
      {"/v1/completions", "{\"prompt\": \"\"}", 400, "prompt"},
      {"/v1/completions", "{\"prompt\": []}", 400, "prompt"},
      {"/v1/completions", "{}", 400, "prompt"},
      {"/v1/completions", "{\"prompt\": [1, 99999]}", 400, "prompt"},
      {"/v1/completions", "{\"prompt\": [1, -1]}", 400, "prompt"},
      {"/v1/completions", "{\"prompt\": \"x\", \"max_tokens\": \"10\"}", 400, "max_tokens"},
      {"/v1/completions", "{\"prompt\": \"x\", \"max_tokens\": 0}", 400, "max_tokens"},
      {"/v1/completions", "{\"prompt\": \"x\", \"max_tokens\": -3}", 400, "max_tokens"},
      {"/v1/completions", "{\"prompt\": \"x\", \"max_tokens\": 100000}", 400, "max_tokens"},
      {"/v1/completions", "{\"prompt\": \"x\", \"max_tokens\": 1.5}", 400, "max_tokens"},
      {"/v1/completions", "{\"prompt\": \"x\", \"temperature\": 3}", 400, "temperature"},
      {"/v1/completions", "{\"prompt\": \"x\", \"temperature\": \"hot\"}", 400, "temperature"},
      {"/v1/completions", "{\"prompt\": \"x\", \"top_p\": 0}", 400, "top_p"},
      {"/v1/completions", "{\"prompt\": \"x\", \"n\": 0}", 400, "n"},
      {"/v1/completions", "{\"prompt\": \"x\", \"stream\": \"yes\"}", 400, "stream"},
      {"/v1/completions", "{\"prompt\": \"x\", \"stream_options\": {\"include_usage\": true}}", 400, "stream_options"},
      {"/v1/completions", "{\"prompt\": \"x\", \"stop\": [\"a\",\"b\",\"c\",\"d\",\"e\"]}", 400, "stop"},
      {"/v1/completions", "{\"prompt\": \"x\", \"stop\": 7}", 400, "stop"},
      {"/v1/completions", "{\"prompt\": \"x\", \"logprobs\": 50}", 400, "logprobs"},
      {"/v1/completions", "{\"prompt\": \"x\", \"presence_penalty\": 9}", 400, "presence_penalty"},
      {"/v1/completions", "{\"prompt\": \"x\", \"seed\": \"s\"}", 400, "seed"},
      {"/v1/completions", "{\"prompt\": \"x\", \"echo\": true}", 400, "echo"},
      {"/v1/completions", "{\"prompt\": \"x\", \"logit_bias\": {\"5\": 1}}", 400, "logit_bias"},
      {"/v1/completions", json{{"prompt", long_prompt}, {"max_tokens", 8}}.dump(), 400, "prompt"},
      {"/v1/completions", json{{"prompt", "x"}, {"model", "gpt-4o"}}.dump(), 404, "model"},
      {"/v1/completions", std::string(200, '[') + std::string(200, ']'), 400, ""},
      {"/v1/chat/completions", "{\"messages\": []}", 400, "messages"},
      {"/v1/chat/completions", "{\"messages\": \"hi\"}", 400, "messages"},
      {"/v1/chat/completions", "{\"messages\": [{\"role\": \"user\"}]}", 400, "messages[0].content"},
      {"/v1/chat/completions", "{\"messages\": [{\"content\": \"hi\"}]}", 400, "messages[0].role"},
      {"/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": 5}]}", 400, "messages[0].content"},
      {"/v1/chat/completions",
       "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\", \"image_url\": {}}]}]}", 400,
       "messages[0].content[0].type"},
      {"/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"top_logprobs\": 2}", 400,
       "top_logprobs"},
      {"/v1/chat/completions",
       "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"max_completion_tokens\": 0}", 400,
       "max_completion_tokens"},
      {"/v1/chat/completions",
       "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"tools\": [{\"type\": \"function\"}]}", 400,
       "tools[0].function"},
      {"/v1/chat/completions", json{{"messages", {{{"role", "user"}, {"content", long_prompt}}}}}.dump(), 400,
       "messages"},
      {"/v1/chat/completions", json{{"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"model", "nope"}}.dump(),
       404, "model"},
  };
  auto c = client();
  for (const Case& k : cases) {
    const HttpResult r = testing::post_json(*c, k.path, k.body);
    const std::string what = std::string(k.path) + " " + k.body.substr(0, 120);
    expect_error_json(r, k.status, what);
    if (r.body.is_object() && r.body.contains("error")) {
      if (std::string(k.param).empty()) EXPECT_TRUE(r.body["error"]["param"].is_null()) << what << r.raw;
      else EXPECT_EQ(r.body["error"]["param"], k.param) << what << r.raw;
    }
  }
  const HttpResult nf = testing::post_json(*c, "/v1/completions", json{{"prompt", "x"}, {"model", "gpt-4o"}});
  EXPECT_EQ(nf.body["error"]["code"], "model_not_found");
  const HttpResult too_long = testing::post_json(*c, "/v1/completions", json{{"prompt", long_prompt}, {"max_tokens", 8}});
  EXPECT_EQ(too_long.body["error"]["code"], "context_length_exceeded");
  // Too large a body: 413, with the body discarded so the connection stays usable.
  expect_error_json(testing::post_json(*c, "/v1/completions", std::string(17u << 20, ' ')), 413, "17 MiB body");
  expect_error_json(testing::get(*c, "/v1/no-such-thing"), 404, "unknown path");
  expect_error_json(testing::get(*c, "/v1/completions"), 404, "GET on a POST endpoint");

  // Unknown fields are ignored (as vLLM does), and the server still serves.
  const HttpResult ok = testing::post_json(
      *c, "/v1/completions", json{{"prompt", "And God said"}, {"max_tokens", 3}, {"temperature", 0}, {"foo", {1, 2}}});
  ASSERT_EQ(ok.status, 200) << ok.raw;
  EXPECT_EQ(ok.body["usage"]["completion_tokens"], 3);
  const HttpResult ok_chat = testing::post_json(*c, "/v1/chat/completions", chat("Amen", 3));
  EXPECT_EQ(ok_chat.status, 200) << ok_chat.raw;
}

TEST(ServerAuth, ApiKeyGuardsV1) {
  ServerProcess server({"-m", bible_model(), "--api-key", "s3cret"});
  ASSERT_TRUE(server.ok()) << server.log();
  auto c = server.client();
  expect_error_json(testing::get(*c, "/v1/models"), 401, "no key");
  EXPECT_EQ(testing::get(*c, "/v1/models").body["error"]["code"], "invalid_api_key");
  expect_error_json(testing::get(*c, "/v1/models", {{"Authorization", "Bearer wrong"}}), 401, "wrong key");
  expect_error_json(testing::post_json(*c, "/v1/completions", completion("x", 2)), 401, "no key, completions");
  expect_error_json(testing::post_json(*c, "/v1/chat/completions", chat("x", 2), {{"Authorization", "Bearer s3cre"}}),
                    401, "prefix of the key");
  EXPECT_EQ(testing::get(*c, "/v1/models", {{"Authorization", "Bearer s3cret"}}).status, 200);
  const json req = completion("And God said", 2);
  EXPECT_EQ(testing::post_json(*c, "/v1/completions", req, {{"Authorization", "Bearer s3cret"}}).status, 200);
  EXPECT_EQ(testing::get(*c, "/health").status, 200);  // not under /v1
}

TEST(ServerAuth, APortInUseIsAnError) {
  ServerProcess server({"-m", bible_model()});
  ASSERT_TRUE(server.ok()) << server.log();
  std::string out;
  const int code = testing::run_command(testing::binary() + " serve --no-pin -m " + bible_model() +
                                            " --host 127.0.0.1 --port " + std::to_string(server.port()) + " 2>&1",
                                        &out);
  EXPECT_EQ(code, 1) << out;
  EXPECT_NE(out.find("cannot listen on 127.0.0.1:" + std::to_string(server.port())), std::string::npos) << out;
}

// Chat prompts are what the template renders (byte for byte what Jinja2 gives,
// tests/../shared/models/templates/expected), with BOS added once where the
// model asks for it; a template that raises is the client's 400.
TEST(ServerChatTemplate, PromptsAreTheRenderedTemplate) {
  const std::string templates = testing::shared_dir() + "/models/templates/";
  const json conversations = json::parse(testing::read_text(templates + "conversations.json"));
  const json tokens = json::parse(testing::read_text(templates + "tokens.json"));
  for (const std::string name : {"chatml", "Qwen-Qwen2.5-7B-Instruct", "google-gemma-2-2b-it"}) {
    std::vector<std::string> args = {"-m", bible_model()};
    if (name != "chatml") args.insert(args.end(), {"--chat-template", templates + name + ".jinja"});
    ServerProcess server(args);
    ASSERT_TRUE(server.ok()) << server.log();
    auto c = server.client();
    for (const std::string conv : {"hello", "system-multiturn", "unicode-whitespace"}) {
      const json& k = conversations[conv];
      const HttpResult t = testing::post_json(
          *c, "/tokenize", json{{"messages", k["messages"]}, {"add_generation_prompt", k["add_generation_prompt"]}});
      const std::string expected = templates + "expected/" + name + "." + conv;
      if (std::ifstream(expected + ".error").good()) {
        expect_error_json(t, 400, name + " " + conv);
        const std::string raised = testing::read_text(expected + ".error");
        std::string message = raised.substr(raised.find(": ") + 2);
        while (!message.empty() && std::isspace(static_cast<unsigned char>(message.back()))) message.pop_back();
        EXPECT_NE(t.body["error"]["message"].get<std::string>().find(message), std::string::npos) << t.raw;
        json req = {{"messages", k["messages"]}, {"max_tokens", 2}};
        expect_error_json(testing::post_json(*c, "/v1/chat/completions", req), 400, name + " " + conv);
        continue;
      }
      ASSERT_EQ(t.status, 200) << name << " " << conv << ": " << t.raw;
      EXPECT_EQ(t.body["tokens"][0], 4094) << "BOS first";
      const HttpResult d = testing::post_json(*c, "/detokenize", json{{"tokens", t.body["tokens"]}});
      // The template writes the model's BOS itself (Gemma: the bible model's in
      // place of <bos>) or not at all (then the server adds it): once either way.
      std::string want = testing::read_text(expected + ".txt");
      if (tokens[name].contains("bos_token")) {
        const std::string bos = tokens[name]["bos_token"];
        if (want.rfind(bos, 0) == 0) want.replace(0, bos.size(), "<|begin_of_text|>");
      }
      if (want.rfind("<|begin_of_text|>", 0) != 0) want = "<|begin_of_text|>" + want;
      EXPECT_EQ(d.body["prompt"].get<std::string>(), want) << name << " " << conv;
      // The chat endpoint uses exactly these tokens.
      json req = {{"messages", k["messages"]}, {"max_tokens", 2}, {"add_generation_prompt", k["add_generation_prompt"]}};
      const HttpResult r = testing::post_json(*c, "/v1/chat/completions", req);
      ASSERT_EQ(r.status, 200) << r.raw;
      EXPECT_EQ(r.body["usage"]["prompt_tokens"], t.body["count"]) << name << " " << conv;
    }
  }
}

// Tools. A template that renders none (the bible model's ChatML) refuses
// tools that may be called, naming `tools`, and takes tool_choice "none". A
// Hermes-style template (tool_templates/hermes.jinja: the real ones' prompts
// do not fit the bible model's 512 tokens; tool_render_test renders those)
// renders the tools and an OpenAI tool-call history (arguments as a JSON
// string, null content, a tool result); the output is parsed for calls, and
// the bible model's verses, with none in them, come back as content, whole
// and streamed alike. Forcing a call waits for constrained decoding (400
// naming tool_choice).
TEST(ServerTools, ToolsReachTheTemplateAndOutputIsParsed) {
  const json tools = json::parse(R"([{"type": "function", "function": {"name": "get_weather",
      "description": "Current weather", "parameters": {"type": "object",
      "properties": {"city": {"type": "string"}}, "required": ["city"]}}}])");
  const json history = json::parse(R"([
      {"role": "user", "content": "Weather in Paris?"},
      {"role": "assistant", "content": null, "tool_calls": [{"id": "call_abc", "type": "function",
        "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
      {"role": "tool", "tool_call_id": "call_abc", "content": "sunny"},
      {"role": "user", "content": "And the LORD said"}])");
  {
    ServerProcess plain({"-m", bible_model()});
    ASSERT_TRUE(plain.ok()) << plain.log();
    EXPECT_NE(plain.log().find("tool calls none"), std::string::npos) << plain.log();
    auto c = plain.client();
    json req = {{"messages", history}, {"tools", tools}, {"max_tokens", 4}, {"temperature", 0}};
    const HttpResult refused = testing::post_json(*c, "/v1/chat/completions", req);
    expect_error_json(refused, 400, "tools with a template that renders none");
    EXPECT_EQ(refused.body["error"]["param"], "tools") << refused.raw;
    req["tool_choice"] = "none";
    const HttpResult none = testing::post_json(*c, "/v1/chat/completions", req);
    ASSERT_EQ(none.status, 200) << none.raw;
    EXPECT_TRUE(none.body["choices"][0]["message"]["content"].is_string()) << none.raw;
    EXPECT_FALSE(none.body["choices"][0]["message"].contains("tool_calls")) << none.raw;
  }
  const std::string hermes = testing::source_dir() + "/tests/server/tool_templates/hermes.jinja";
  ServerProcess server({"-m", bible_model(), "--chat-template", hermes});
  ASSERT_TRUE(server.ok()) << server.log();
  EXPECT_NE(server.log().find("tool calls hermes"), std::string::npos) << server.log();
  auto c = server.client();
  json req = {{"messages", history}, {"tools", tools}, {"max_tokens", 12}, {"temperature", 0}, {"ignore_eos", true}};
  const HttpResult r = testing::post_json(*c, "/v1/chat/completions", req);
  ASSERT_EQ(r.status, 200) << r.raw;
  const json& choice = r.body["choices"][0];
  const std::string content = choice["message"]["content"];
  EXPECT_FALSE(content.empty()) << r.raw;
  EXPECT_FALSE(choice["message"].contains("tool_calls")) << r.raw;
  EXPECT_EQ(choice["finish_reason"], "length") << r.raw;
  json no_tools = req;
  no_tools.erase("tools");
  const HttpResult without = testing::post_json(*c, "/v1/chat/completions", no_tools);
  ASSERT_EQ(without.status, 200) << without.raw;
  EXPECT_GT(r.body["usage"]["prompt_tokens"].get<int>(), without.body["usage"]["prompt_tokens"].get<int>() + 20)
      << "the tools are in the prompt";
  // /tokenize renders the same prompt, tools included.
  const HttpResult t = testing::post_json(*c, "/tokenize", json{{"messages", history}, {"tools", tools}});
  ASSERT_EQ(t.status, 200) << t.raw;
  EXPECT_EQ(t.body["count"], r.body["usage"]["prompt_tokens"]);
  const HttpResult d = testing::post_json(*c, "/detokenize", json{{"tokens", t.body["tokens"]}});
  const std::string prompt = d.body["prompt"];
  EXPECT_NE(prompt.find(R"(<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>)"),
            std::string::npos)
      << "the call's arguments string is rendered as the object it holds: " << prompt;
  EXPECT_NE(prompt.find(R"("required": ["city"])"), std::string::npos) << prompt;

  json sreq = req;
  sreq["stream"] = true;
  const StreamResult s = testing::post_stream(*c, "/v1/chat/completions", sreq);
  ASSERT_EQ(s.status, 200) << s.raw;
  EXPECT_TRUE(s.done);
  std::string streamed;
  std::string finish;
  for (const json& e : s.events) {
    if (!e.contains("choices") || e["choices"].empty()) continue;
    const json& ch = e["choices"][0];
    EXPECT_FALSE(ch["delta"].contains("tool_calls")) << e;
    if (ch["delta"].contains("content")) streamed += ch["delta"]["content"].get<std::string>();
    if (ch["finish_reason"].is_string()) finish = ch["finish_reason"];
  }
  EXPECT_EQ(streamed, content);
  EXPECT_EQ(finish, "length");

  // A forced call is made by constrained decoding, whole and streamed. (The
  // city has a maxLength: the bible model would not end a free string.)
  json bounded = tools;
  bounded[0]["function"]["parameters"]["properties"]["city"]["maxLength"] = 16;
  for (const json& choice_json :
       {json("required"), json{{"type", "function"}, {"function", {{"name", "get_weather"}}}}}) {
    json forced = req;
    forced["tools"] = bounded;
    forced["tool_choice"] = choice_json;
    forced["max_tokens"] = 130;
    forced["parallel_tool_calls"] = false;
    const HttpResult f = testing::post_json(*c, "/v1/chat/completions", forced);
    ASSERT_EQ(f.status, 200) << f.raw;
    const json& fc = f.body["choices"][0];
    EXPECT_EQ(fc["finish_reason"], "tool_calls") << f.raw;
    ASSERT_EQ(fc["message"]["tool_calls"].size(), 1u) << f.raw;
    const json& call = fc["message"]["tool_calls"][0];
    EXPECT_EQ(call["function"]["name"], "get_weather") << f.raw;
    const json args = json::parse(call["function"]["arguments"].get<std::string>());
    EXPECT_TRUE(args["city"].is_string() && args["city"].get<std::string>().size() <= 16) << f.raw;
    forced["stream"] = true;
    const StreamResult fs = testing::post_stream(*c, "/v1/chat/completions", forced);
    ASSERT_EQ(fs.status, 200) << fs.raw;
    std::string name, arguments, reason;
    for (const json& e : fs.events) {
      if (!e.contains("choices") || e["choices"].empty()) continue;
      const json& ch = e["choices"][0];
      if (ch["delta"].contains("tool_calls")) {
        const json& d = ch["delta"]["tool_calls"][0]["function"];
        if (d.contains("name")) name += d["name"].get<std::string>();
        if (d.contains("arguments")) arguments += d["arguments"].get<std::string>();
      }
      if (ch["finish_reason"].is_string()) reason = ch["finish_reason"];
    }
    EXPECT_EQ(name, "get_weather");
    EXPECT_EQ(arguments, call["function"]["arguments"].get<std::string>()) << "streamed as whole, greedy";
    EXPECT_EQ(reason, "tool_calls");
  }
  json unknown = req;
  unknown["tool_choice"] = {{"type", "function"}, {"function", {{"name", "get_time"}}}};
  const HttpResult u = testing::post_json(*c, "/v1/chat/completions", unknown);
  expect_error_json(u, 400, "unknown function");
  EXPECT_EQ(u.body["error"]["param"], "tool_choice.function.name") << u.raw;
}

TEST(ServerStartup, BadOptionsAreCleanErrors) {
  testing::TempDir dir;
  const std::string bad_template = dir.file("bad.jinja");
  std::ofstream(bad_template) << "{% for m in messages %}{{ m.content ";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--chat-template " + bad_template, "chat template"},
      {"--chat-template " + dir.file("missing.jinja"), "cannot read"},
      {"--max-model-len 100000", "longer than the model's context of 512"},
      {"--kv-cache-memory 12apples", "not a memory size"},
      {"--tool-call-parser pythonic", "valid: auto, hermes, llama3_json, mistral"},
      {"--kv-cache-memory 1KiB", "less than one block"},
      {"--kv-cache-memory 1MiB -c 256", "give only one"},
      {"-tp 3", "valid: 1, 2, 4, 8"},
      {"-pp 9", "pipeline-parallel-size 9 does not fit the model's 8 layers"},
      {"-pp 2 --pipeline-split 4,3", "sum to the model's 8 layers"},
      {"--speculative ngram --num-speculative-tokens 17", "out of range; valid: 1 to 16"},
      {"--speculative eagle", "valid: none, ngram, draft"},
      {"--speculative draft", "needs a draft model"},
      {"--draft-model " + bible_model(), "--draft-model is for --speculative draft"},
  };
  for (const auto& [args, message] : cases) {
    std::string out;
    const int code = testing::run_command(
        testing::binary() + " serve --no-pin --host 127.0.0.1 --port 0 -m " + bible_model() + " " + args, &out);
    EXPECT_EQ(code, 1) << args << "\n" << out;
    EXPECT_NE(out.find(message), std::string::npos) << args << "\n" << out;
    EXPECT_EQ(out.find("listening"), std::string::npos) << args << "\n" << out;
  }
}

TEST(ServerDisconnect, ClientHangingUpMidStreamFreesItsBlocks) {
  ServerProcess server({"-m", bible_model()});
  ASSERT_TRUE(server.ok()) << server.log();
  auto watcher = server.client();
  double used_while_streaming = -1;
  auto c = server.client();
  const json req = {{"prompt", "And it came to pass"}, {"max_tokens", 400}, {"ignore_eos", true}, {"stream", true},
                    {"temperature", 0}};
  int seen = 0;
  const StreamResult s = testing::post_stream(*c, "/v1/completions", req, [&](const json&) {
    if (++seen < 5) return true;
    auto m = watcher->Get("/metrics");
    used_while_streaming = m ? metric_value(m->body, "tpinfer_kv_cache_used_blocks") : -1;
    return false;  // hang up
  });
  EXPECT_TRUE(s.hung_up);
  EXPECT_GT(used_while_streaming, 0) << "the stream held KV blocks";
  // The server notices at its next write and cancels the sequence.
  double used = -1, running = -1, cancelled = -1, generated = -1;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    auto m = watcher->Get("/metrics");
    ASSERT_TRUE(m);
    used = metric_value(m->body, "tpinfer_kv_cache_used_blocks");
    running = metric_value(m->body, "tpinfer_num_requests_running");
    cancelled = metric_value(m->body, "tpinfer_requests_cancelled_total");
    generated = metric_value(m->body, "tpinfer_generation_tokens_total");
    if (used == 0 && running == 0 && cancelled >= 1) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(used, 0);
  EXPECT_EQ(running, 0);
  EXPECT_EQ(cancelled, 1);
  EXPECT_LT(generated, 400) << "the sequence stopped early";
  // And the server goes on serving.
  EXPECT_EQ(testing::post_json(*watcher, "/v1/completions", completion("Amen", 2)).status, 200);
}

// Greedy requests sent all at once and one at a time give the same text.
struct LoadCase {
  bool chat = false;
  std::string prompt;
  int max_tokens = 16;
  int speculative_tokens = -1;  // -1: the server's
  json body() const {
    json b = chat ? json{{"messages", {{{"role", "user"}, {"content", prompt}}}}} : json{{"prompt", prompt}};
    b["max_tokens"] = max_tokens;
    if (speculative_tokens >= 0) b["num_speculative_tokens"] = speculative_tokens;
    b["temperature"] = 0;
    b["ignore_eos"] = true;
    return b;
  }
  const char* path() const { return chat ? "/v1/chat/completions" : "/v1/completions"; }
};

std::vector<LoadCase> load_cases(int n, int min_tokens, int max_tokens) {
  const std::vector<std::string> openings = {
      "In the beginning", "And God said", "The LORD is my shepherd", "Blessed are the", "And Jesus answered",
      "Now the serpent was", "Honour thy father", "And it came to pass", "For God so loved", "Thus saith the LORD"};
  const std::vector<std::string> tails = {"", " unto them", " in the land of Egypt", ", and", " the children of Israel",
                                          " that day"};
  std::vector<LoadCase> cases;
  std::mt19937 rng(7);
  for (int i = 0; i < n; ++i) {
    LoadCase k;
    k.chat = i % 4 == 3;
    k.prompt = openings[static_cast<size_t>(i) % openings.size()] + tails[static_cast<size_t>(i / 10) % tails.size()];
    k.max_tokens = min_tokens + static_cast<int>(rng() % static_cast<unsigned>(max_tokens - min_tokens + 1));
    cases.push_back(k);
  }
  return cases;
}

std::vector<std::string> run_alone(const ServerProcess& server, const std::vector<LoadCase>& cases) {
  auto c = server.client();
  std::vector<std::string> out;
  for (const LoadCase& k : cases) {
    const HttpResult r = testing::post_json(*c, k.path(), k.body());
    EXPECT_EQ(r.status, 200) << r.raw;
    const json& ch = r.body["choices"][0];
    out.push_back(k.chat ? ch["message"]["content"].get<std::string>() : ch["text"].get<std::string>());
    EXPECT_EQ(r.body["usage"]["completion_tokens"], k.max_tokens);
  }
  return out;
}

std::vector<std::string> run_concurrently(const ServerProcess& server, const std::vector<LoadCase>& cases,
                                          bool stream) {
  std::vector<std::string> out(cases.size());
  std::vector<int> status(cases.size(), -1);
  std::vector<std::string> errors(cases.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < cases.size(); ++i) {
    threads.emplace_back([&, i] {
      auto c = server.client();
      json body = cases[i].body();
      if (stream) {
        body["stream"] = true;
        const StreamResult s = testing::post_stream(*c, cases[i].path(), body);
        status[i] = s.done ? s.status : -2;
        errors[i] = s.error + " " + s.raw.substr(0, 200);
        out[i] = testing::stream_texts(s)[0];
      } else {
        const HttpResult r = testing::post_json(*c, cases[i].path(), body);
        status[i] = r.status;
        if (r.status == 200) {
          const json& ch = r.body["choices"][0];
          out[i] = cases[i].chat ? ch["message"]["content"].get<std::string>() : ch["text"].get<std::string>();
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  bool all_ok = true;
  for (size_t i = 0; i < cases.size(); ++i) {
    EXPECT_EQ(status[i], 200) << "request " << i << ": " << errors[i];
    all_ok = all_ok && status[i] == 200;
  }
  if (!all_ok) ADD_FAILURE() << "server log:\n" << server.log();
  return out;
}

TEST(ServerPreemption, StormLargerThanTheCacheCompletesWithTheOutputsOfRequestsRunAlone) {
  // 512 KiB at 4 KiB per token (8 layers x 4 KV heads x 32 x 2 x f16): 128
  // tokens, 8 blocks; 10 sequences of up to ~55 tokens need ~3x that.
  ServerProcess server({"-m", bible_model(), "--kv-cache-memory", "512KiB", "--max-num-seqs", "10"});
  ASSERT_TRUE(server.ok()) << server.log();
  const std::vector<LoadCase> cases = load_cases(10, 32, 44);
  const std::vector<std::string> together = run_concurrently(server, cases, /*stream=*/false);
  auto c = server.client();
  const std::string m = testing::idle_metrics(*c);
  EXPECT_EQ(metric_value(m, "tpinfer_kv_cache_capacity_blocks"), 8);
  EXPECT_GT(metric_value(m, "tpinfer_num_preemptions_total"), 0) << "the storm must have preempted";
  EXPECT_EQ(metric_value(m, "tpinfer_kv_cache_used_blocks"), 0);
  const std::vector<std::string> alone = run_alone(server, cases);
  for (size_t i = 0; i < cases.size(); ++i) EXPECT_EQ(together[i], alone[i]) << "request " << i << ": " << cases[i].prompt;
}

TEST(ServerConcurrency, SixtyFourStreamsAtTp2EqualTheirRequestsRunAlone) {
  ServerProcess server({"-m", bible_model(), "-tp", "2", "--threads-per-rank", "1", "--max-num-seqs", "64"});
  ASSERT_TRUE(server.ok()) << server.log();
  const std::vector<LoadCase> cases = load_cases(64, 4, 40);
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<std::string> together = run_concurrently(server, cases, /*stream=*/true);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(seconds, 300) << "64 concurrent streams took too long";
  const std::vector<std::string> alone = run_alone(server, cases);
  for (size_t i = 0; i < cases.size(); ++i) EXPECT_EQ(together[i], alone[i]) << "request " << i << ": " << cases[i].prompt;
  const std::string m = server.client()->Get("/metrics")->body;
  EXPECT_GT(metric_value(m, "tpinfer_collective_calls_total{collective=\"all_reduce\"}"), 0);
  EXPECT_GT(metric_value(m, "tpinfer_collective_bytes_total{collective=\"all_reduce\"}"), 0) << "tp 2 all-reduces";
}

// Speculative decoding under continuous batching: 16 concurrent streams, each
// accepting its own number of guesses per step, equal the same requests run
// one at a time with speculation off for them (num_speculative_tokens 0);
// with the n-gram proposer, and with a draft model per data-parallel replica.
// /metrics counts the guesses; a k out of range is a 400.
TEST(ServerSpeculative, SixteenStreamsEqualTheirRequestsRunAloneWithoutGuesses) {
  const std::string draft = testing::shared_dir() + "/models/bible/bible-bf16.gguf";
  for (const std::vector<std::string>& mode : std::vector<std::vector<std::string>>{
           {"--speculative", "ngram", "--num-speculative-tokens", "4"},
           {"--speculative", "draft", "--draft-model", draft, "--num-speculative-tokens", "3", "-dp", "2"}}) {
    std::vector<std::string> args = {"-m", bible_model(), "--threads-per-rank", "1", "--max-num-seqs", "16"};
    args.insert(args.end(), mode.begin(), mode.end());
    ServerProcess server(args);
    ASSERT_TRUE(server.ok()) << server.log();
    EXPECT_NE(server.log().find("speculative " + mode[1]), std::string::npos) << server.log();
    std::vector<LoadCase> cases = load_cases(16, 16, 40);
    const std::vector<std::string> together = run_concurrently(server, cases, /*stream=*/true);
    auto c = server.client();
    const std::string m = testing::idle_metrics(*c);
    const double drafts = metric_value(m, "tpinfer_spec_decode_num_drafts_total");
    const double guessed = metric_value(m, "tpinfer_spec_decode_num_draft_tokens_total");
    const double accepted = metric_value(m, "tpinfer_spec_decode_num_accepted_tokens_total");
    EXPECT_GT(drafts, 0) << m;
    EXPECT_GT(accepted, 0) << mode[1] << ": no guess accepted\n" << m;
    EXPECT_LE(accepted, guessed);
    EXPECT_EQ(metric_value(m, "tpinfer_generation_tokens_total"),
              metric_value(m, "tpinfer_sequence_steps_total") + accepted);
    EXPECT_GT(metric_value(m, "tpinfer_spec_decode_tokens_per_forward"), 1.0);
    for (LoadCase& k : cases) k.speculative_tokens = 0;
    const std::vector<std::string> alone = run_alone(server, cases);
    for (size_t i = 0; i < cases.size(); ++i) {
      EXPECT_EQ(together[i], alone[i]) << mode[1] << " request " << i << ": " << cases[i].prompt;
    }
    EXPECT_EQ(metric_value(testing::idle_metrics(*c), "tpinfer_spec_decode_num_drafts_total"), drafts)
        << "num_speculative_tokens 0 still guessed";
    json bad = cases[0].body();
    bad["num_speculative_tokens"] = 17;
    const HttpResult r = testing::post_json(*c, cases[0].path(), bad);
    EXPECT_EQ(r.status, 400) << r.raw;
    EXPECT_NE(r.raw.find("num_speculative_tokens"), std::string::npos) << r.raw;
  }
}

// Data parallel: two replicas behind one endpoint share 32 concurrent
// requests; each answer equals the same request run alone, and both replicas
// did work.
TEST(ServerDataParallel, ThirtyTwoRequestsAtDp2EqualTheirRequestsRunAlone) {
  ServerProcess server({"-m", bible_model(), "-dp", "2", "--threads-per-rank", "1", "--max-num-seqs", "16"});
  ASSERT_TRUE(server.ok()) << server.log();
  EXPECT_NE(server.log().find("dp 2"), std::string::npos) << server.log();
  const std::vector<LoadCase> cases = load_cases(32, 4, 32);
  const std::vector<std::string> together = run_concurrently(server, cases, /*stream=*/true);
  const std::vector<std::string> alone = run_alone(server, cases);
  for (size_t i = 0; i < cases.size(); ++i) EXPECT_EQ(together[i], alone[i]) << "request " << i << ": " << cases[i].prompt;
  auto c = server.client();
  const std::string m = testing::idle_metrics(*c);
  for (const char* r : {"0", "1"}) {
    const std::string label = std::string("{replica=\"") + r + "\"}";
    EXPECT_GT(metric_value(m, "tpinfer_replica_generation_tokens_total" + label), 0) << "replica " << r << "\n" << m;
    EXPECT_EQ(metric_value(m, "tpinfer_replica_kv_cache_used_blocks" + label), 0) << "replica " << r;
  }
  EXPECT_EQ(metric_value(m, "tpinfer_kv_cache_used_blocks"), 0);
  EXPECT_GT(metric_value(m, "tpinfer_generation_tokens_total"), 0);
}

// Pipeline stages in the server: one batch per stage in flight; streams
// equal their requests run alone, and /metrics shows the stages' time, the
// bubble and the traffic of both dimensions, for a data-parallel pair of
// tp 2 x pp 2 replicas too.
TEST(ServerPipeline, StreamsEqualTheirRequestsRunAloneAndMetricsShowTheStages) {
  for (const std::vector<std::string>& layout : std::vector<std::vector<std::string>>{
           {"-tp", "2", "-pp", "2"}, {"-pp", "2", "-dp", "2"}}) {
    std::vector<std::string> args = {"-m", bible_model(), "--threads-per-rank", "1"};
    args.insert(args.end(), layout.begin(), layout.end());
    ServerProcess server(args);
    ASSERT_TRUE(server.ok()) << server.log();
    const std::vector<LoadCase> cases = load_cases(16, 4, 32);
    const std::vector<std::string> together = run_concurrently(server, cases, /*stream=*/true);
    const std::vector<std::string> alone = run_alone(server, cases);
    for (size_t i = 0; i < cases.size(); ++i) {
      EXPECT_EQ(together[i], alone[i]) << layout[1] << layout[3] << " request " << i << ": " << cases[i].prompt;
    }
    auto c = server.client();
    const std::string m = testing::idle_metrics(*c);
    const bool tp2 = layout[0] == "-tp";
    EXPECT_GT(metric_value(m, "tpinfer_pipeline_stage_busy_seconds_total{replica=\"0\",stage=\"0\"}"), 0) << m;
    EXPECT_GT(metric_value(m, "tpinfer_pipeline_stage_busy_seconds_total{replica=\"0\",stage=\"1\"}"), 0) << m;
    const double bubble = metric_value(m, "tpinfer_pipeline_bubble_ratio{replica=\"0\"}");
    EXPECT_GE(bubble, 0) << m;
    EXPECT_LT(bubble, 1) << m;
    EXPECT_GT(metric_value(m, "tpinfer_pipeline_micro_batches_total{replica=\"0\"}"), 0) << m;
    EXPECT_GT(metric_value(m, "tpinfer_parallel_bytes_total{replica=\"0\",dim=\"pp\"}"), 0) << m;
    if (tp2) {
      EXPECT_GT(metric_value(m, "tpinfer_parallel_bytes_total{replica=\"0\",dim=\"tp\"}"), 0) << m;
    } else {
      EXPECT_GT(metric_value(m, "tpinfer_pipeline_micro_batches_total{replica=\"1\"}"), 0) << m;
    }
    EXPECT_GT(metric_value(m, "tpinfer_collective_bytes_total{collective=\"send_recv\"}"), 0) << m;
    expect_promtool_accepts(m);
  }
}

TEST(ServerShutdown, SigtermFinishesTheStreamInFlightAndExitsZero) {
  ServerProcess server({"-m", bible_model()});
  ASSERT_TRUE(server.ok()) << server.log();
  auto c = server.client();
  const json req = {{"prompt", "And it came to pass"}, {"max_tokens", 40}, {"ignore_eos", true}, {"stream", true},
                    {"temperature", 0}};
  std::atomic<int> exit_code{-100};
  std::thread killer;
  int seen = 0;
  const StreamResult s = testing::post_stream(*c, "/v1/completions", req, [&](const json&) {
    if (++seen == 2) killer = std::thread([&] { exit_code = server.signal_and_wait(SIGTERM, 120); });
    return true;
  });
  killer.join();
  EXPECT_TRUE(s.done) << s.raw;
  EXPECT_EQ(s.events.back()["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(exit_code, 0) << server.log();
  EXPECT_NE(server.log().find("shutting down"), std::string::npos) << server.log();
}

TEST(ServerShutdown, SigintWhenIdleExitsZero) {
  ServerProcess server({"-m", bible_model()});
  ASSERT_TRUE(server.ok()) << server.log();
  EXPECT_EQ(server.signal_and_wait(SIGINT, 60), 0) << server.log();
}

// Prefix caching (on by default, --no-prefix-caching off): a conversation's
// later turns find the earlier turns in the cache and say so in
// usage.prompt_tokens_details.cached_tokens; their replies equal those of a
// server without the cache; n choices of one prompt compute it once; the
// counters reach /metrics in a form promtool accepts.
TEST(ServerPrefixCache, ConversationTurnsReuseTheCacheAndAnswerAsWithout) {
  ServerProcess hot({"-m", bible_model()});
  ServerProcess cold({"-m", bible_model(), "--no-prefix-caching"});
  ASSERT_TRUE(hot.ok()) << hot.log();
  ASSERT_TRUE(cold.ok()) << cold.log();
  EXPECT_NE(hot.log().find("prefix caching on"), std::string::npos) << hot.log();
  EXPECT_NE(cold.log().find("prefix caching off"), std::string::npos) << cold.log();
  auto h = hot.client();
  auto k = cold.client();
  json messages = {{{"role", "system"},
                    {"content",
                     "Speak as the King James Bible. In the beginning God created the heaven and the earth. "
                     "And the earth was without form, and void; and darkness was upon the face of the deep."}}};
  const std::vector<std::string> questions = {"Who made the light?", "And what of the waters?", "What came after?"};
  int64_t last_prompt = 0;
  for (size_t turn = 0; turn < questions.size(); ++turn) {
    messages.push_back({{"role", "user"}, {"content", questions[turn]}});
    const json req = {{"messages", messages}, {"max_tokens", 12}, {"temperature", 0}, {"ignore_eos", true}};
    const HttpResult a = testing::post_json(*h, "/v1/chat/completions", req);
    const HttpResult b = testing::post_json(*k, "/v1/chat/completions", req);
    ASSERT_EQ(a.status, 200) << a.raw;
    ASSERT_EQ(b.status, 200) << b.raw;
    EXPECT_EQ(a.body["choices"][0]["message"], b.body["choices"][0]["message"]) << "turn " << turn;
    EXPECT_EQ(a.body["usage"]["prompt_tokens"], b.body["usage"]["prompt_tokens"]);
    const int64_t prompt = a.body["usage"]["prompt_tokens"].get<int64_t>();
    const int64_t cached = a.body["usage"]["prompt_tokens_details"]["cached_tokens"].get<int64_t>();
    EXPECT_EQ(b.body["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    if (turn == 0) {
      EXPECT_EQ(cached, 0);
    } else {
      // The whole 16-token blocks of the previous turn's prompt, but for the
      // one where its last token (the template's "assistant" header) may
      // tokenize otherwise once the reply follows it.
      EXPECT_GE(cached, (last_prompt / 16 - 1) * 16) << "turn " << turn << ": " << a.raw;
      EXPECT_GT(cached, 0);
      EXPECT_LT(cached, prompt);
      EXPECT_EQ(cached % 16, 0);
    }
    last_prompt = prompt;
    messages.push_back(a.body["choices"][0]["message"]);
  }

  // Streamed with include_usage, the last chunk says it too: the whole conversation is cached now.
  json req = {{"messages", messages},
              {"max_tokens", 4},
              {"temperature", 0},
              {"stream", true},
              {"stream_options", {{"include_usage", true}}}};
  const StreamResult s = testing::post_stream(*h, "/v1/chat/completions", req);
  ASSERT_TRUE(s.done) << s.raw;
  EXPECT_GT(s.events.back()["usage"]["prompt_tokens_details"]["cached_tokens"].get<int>(), 0) << s.raw;

  // n = 3 of a new prompt: computed once, so the hits grow by two copies' worth;
  // the request itself found nothing cached before it.
  const double hits_before = metric_value(testing::idle_metrics(*h), "tpinfer_prefix_cache_hits_total");
  const json n3 = {{"prompt",
                    "And God called the light Day, and the darkness he called Night. And the evening and the "
                    "morning were the first day. And God said, Let there be a firmament"},
                   {"max_tokens", 6},
                   {"temperature", 0},
                   {"n", 3}};
  const HttpResult r = testing::post_json(*h, "/v1/completions", n3);
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(r.body["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
  for (size_t i = 1; i < 3; ++i) EXPECT_EQ(r.body["choices"][i]["text"], r.body["choices"][0]["text"]);
  const int64_t n3_prompt = r.body["usage"]["prompt_tokens"].get<int64_t>();
  ASSERT_GE(n3_prompt, 33);
  const std::string m = testing::idle_metrics(*h);
  EXPECT_EQ(metric_value(m, "tpinfer_prefix_cache_hits_total") - hits_before,
            2.0 * static_cast<double>((n3_prompt - 1) / 16 * 16));
  EXPECT_GT(metric_value(m, "tpinfer_prefix_cache_queries_total"), metric_value(m, "tpinfer_prefix_cache_hits_total"));
  EXPECT_GT(metric_value(m, "tpinfer_prefix_cache_blocks"), 0);
  EXPECT_EQ(metric_value(m, "tpinfer_prefix_cache_evictions_total"), 0);
  EXPECT_EQ(metric_value(m, "tpinfer_kv_cache_used_blocks"), 0) << "cached blocks nobody holds are not in use";
  expect_promtool_accepts(m);
  const std::string mc = testing::idle_metrics(*k);
  EXPECT_EQ(metric_value(mc, "tpinfer_prefix_cache_queries_total"), 0);
  EXPECT_EQ(metric_value(mc, "tpinfer_prefix_cache_blocks"), 0);
  expect_promtool_accepts(mc);
}

// Data parallel: a prompt goes to the replica that holds its beginning even
// when another is less loaded (within the slack).
TEST(ServerPrefixCache, DataParallelRoutesAPromptToTheReplicaHoldingItsPrefix) {
  ServerProcess server({"-m", bible_model(), "-dp", "2", "--threads-per-rank", "1", "--max-num-seqs", "16"});
  ASSERT_TRUE(server.ok()) << server.log();
  auto c = server.client();
  const std::string text =
      "And God made the firmament, and divided the waters which were under the firmament from the waters which "
      "were above the firmament: and it was so.";
  // Idle replicas: the first goes to replica 0.
  ASSERT_EQ(testing::post_json(*c, "/v1/completions", completion(text, 2)).status, 200);
  // A long stream keeps replica 0 busier than replica 1 (replica 0 again: no
  // prefix anywhere, equal load); while it runs, the prompt sharing the
  // first one's beginning still goes to replica 0.
  auto streamer = server.client();
  const json long_req = {
      {"prompt", "Amen"}, {"max_tokens", 300}, {"ignore_eos", true}, {"stream", true}, {"temperature", 0}};
  HttpResult shared;
  std::string during;
  int seen = 0;
  testing::post_stream(*streamer, "/v1/completions", long_req, [&](const json&) {
    if (++seen < 2) return true;
    shared = testing::post_json(*c, "/v1/completions", completion(text + " And God called the firmament Heaven.", 2));
    during = server.client()->Get("/metrics")->body;
    return false;
  });
  ASSERT_EQ(shared.status, 200) << shared.raw;
  EXPECT_GT(shared.body["usage"]["prompt_tokens_details"]["cached_tokens"].get<int>(), 0) << shared.raw;
  EXPECT_GT(metric_value(during, "tpinfer_replica_prefix_cache_hits_total{replica=\"0\"}"), 0) << during;
  EXPECT_EQ(metric_value(during, "tpinfer_replica_prefix_cache_hits_total{replica=\"1\"}"), 0) << during;
}

}  // namespace
}  // namespace tpinfer

namespace tpinfer {
namespace {

// Structured outputs through HTTP: a JSON schema (n choices sampled at
// temperature 1, streamed and not), a GBNF grammar, and schemas or grammars
// that cannot be honoured (400 naming the keyword).
TEST(ServerStructuredOutput, SchemaAndGrammarConstrainEveryChoice) {
  ServerProcess server({"-m", bible_model()});
  ASSERT_TRUE(server.ok()) << server.log();
  auto c = server.client();
  const json schema = json::parse(R"({"type": "object", "properties": {
      "name": {"type": "string", "minLength": 1, "maxLength": 12},
      "age": {"type": "integer", "minimum": 0, "maximum": 150},
      "tribe": {"enum": ["Judah", "Levi", "Benjamin"]},
      "sons": {"type": "array", "items": {"type": "string", "maxLength": 8}, "maxItems": 2}},
    "required": ["name", "age", "tribe"], "additionalProperties": false})");
  json body = {{"messages", {{{"role", "user"}, {"content", "Who was the son of Jacob?"}}}},
               {"max_tokens", 300},
               {"n", 4},
               {"temperature", 1.0},
               {"seed", 11},
               {"response_format", {{"type", "json_schema"}, {"json_schema", {{"name", "person"}, {"schema", schema}}}}}};
  const HttpResult r = testing::post_json(*c, "/v1/chat/completions", body);
  ASSERT_EQ(r.status, 200) << r.raw;
  ASSERT_EQ(r.body["choices"].size(), 4u);
  std::vector<std::string> contents;
  for (const json& ch : r.body["choices"]) {
    const std::string text = ch["message"]["content"].get<std::string>();
    contents.push_back(text);
    EXPECT_EQ(ch["finish_reason"], "stop") << text;
    json doc;
    ASSERT_NO_THROW(doc = json::parse(text)) << text;
    ASSERT_TRUE(doc.is_object()) << text;
    EXPECT_TRUE(doc["name"].is_string() && !doc["name"].get<std::string>().empty()) << text;
    EXPECT_TRUE(doc["age"].is_number_integer() && doc["age"].get<int>() >= 0 && doc["age"].get<int>() <= 150) << text;
    const std::string tribe = doc["tribe"].is_string() ? doc["tribe"].get<std::string>() : "";
    EXPECT_TRUE(tribe == "Judah" || tribe == "Levi" || tribe == "Benjamin") << text;
    for (const auto& [key, value] : doc.items()) {
      EXPECT_TRUE(key == "name" || key == "age" || key == "tribe" || key == "sons") << text;
    }
    if (doc.contains("sons")) {
      EXPECT_LE(doc["sons"].size(), 2u) << text;
    }
  }
  // The same request streamed gives the same choices (same seed).
  body["stream"] = true;
  const StreamResult s = testing::post_stream(*c, "/v1/chat/completions", body);
  ASSERT_EQ(s.status, 200);
  EXPECT_EQ(testing::stream_texts(s, 4), contents);

  // A grammar of the user's own.
  const HttpResult g = testing::post_json(
      *c, "/v1/completions",
      json{{"prompt", "And he answered,"}, {"max_tokens", 20}, {"temperature", 1.0}, {"n", 3},
           {"grammar", "root ::= (\"Yea\" | \"Nay\") (\", \" [a-z]+)? \".\""}});
  ASSERT_EQ(g.status, 200) << g.raw;
  for (const json& ch : g.body["choices"]) {
    const std::string text = ch["text"].get<std::string>();
    EXPECT_TRUE(text.rfind("Yea", 0) == 0 || text.rfind("Nay", 0) == 0) << text;
    if (ch["finish_reason"] == "stop") {
      EXPECT_EQ(text.back(), '.') << text;
    }
  }
  // json_object: an object (the bible model's free strings may not end within
  // the tokens given; what comes out is an object's beginning).
  const HttpResult o = testing::post_json(
      *c, "/v1/completions",
      json{{"prompt", "Write it:"}, {"max_tokens", 8}, {"temperature", 0}, {"response_format", {{"type", "json_object"}}}});
  ASSERT_EQ(o.status, 200) << o.raw;
  EXPECT_EQ(o.body["choices"][0]["text"].get<std::string>().substr(0, 1), "{") << o.raw;

  // What cannot be honoured is a 400 naming the keyword.
  json bad = {{"prompt", "x"},
              {"response_format",
               {{"type", "json_schema"},
                {"json_schema", {{"name", "n"}, {"schema", {{"type", "object"}, {"patternProperties", json::object()}}}}}}}};
  HttpResult e = testing::post_json(*c, "/v1/completions", bad);
  EXPECT_EQ(e.status, 400) << e.raw;
  EXPECT_NE(e.raw.find("patternProperties"), std::string::npos) << e.raw;
  EXPECT_EQ(e.body["error"]["param"], "response_format") << e.raw;
  e = testing::post_json(*c, "/v1/completions", json{{"prompt", "x"}, {"grammar", "root ::= undefined_rule"}});
  EXPECT_EQ(e.status, 400) << e.raw;
  EXPECT_EQ(e.body["error"]["param"], "grammar") << e.raw;
  EXPECT_NE(e.raw.find("undefined_rule"), std::string::npos) << e.raw;
}

}  // namespace
}  // namespace tpinfer
