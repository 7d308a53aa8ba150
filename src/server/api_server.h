// The OpenAI-compatible HTTP server over an Engine (tpinfer serve).
//
// Endpoints: POST /v1/completions, POST /v1/chat/completions (both streamed as
// server-sent events with "stream": true), GET /v1/models, GET /v1/models/{id},
// GET /health, GET /metrics (Prometheus, server/metrics.h), POST /tokenize,
// POST /detokenize (vLLM's). Errors are OpenAI error JSON (server/request_parser.h
// says what is checked); nothing a client sends ends the process.
//
// The server's files, one idea each: this one routes HTTP requests, answers
// them, and drains and shuts down; server/request_parser.h validates bodies,
// server/replica_pool.h runs the data-parallel replicas (engine + scheduler +
// thread each, least-loaded or prefix-holding dispatch),
// server/sequence_sink.h takes one sequence's tokens from its scheduler
// (detokenization, stop strings, logprobs, latencies), server/openai_json.h
// builds the response JSON, whole or streamed, and server/metrics.h renders
// /metrics.
//
// Threads: HTTP handlers run on a pool (one thread per open connection in use);
// they parse, tokenize, submit one SequenceSpec per choice (prompts x n) to the
// replica pool and then wait for, or stream, what the choices' sinks collect.
// A request's n choices may land on different replicas.
//
// A streamed client that goes away is noticed at the next write; its sequences
// are cancelled and their KV blocks freed on the next step. Non-streamed
// requests run to completion.
//
// Shutdown (request_shutdown(), e.g. from SIGTERM): /health turns 503 and new
// requests get 503 with "Connection: close"; requests in flight get up to
// `drain_timeout` to finish, then are cancelled; then the listener closes and
// run() returns.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "engine/scheduler.h"
#include "server/chat_format.h"
#include "server/metrics.h"
#include "server/replica_pool.h"
#include "server/request_parser.h"
#include "server/structured_output.h"
#include "server/sequence_sink.h"
#include "server/tool_calls.h"

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace tpinfer::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8000;                // 0: any free port (see bind())
  std::string served_model_name;  // empty: the model's name
  std::string api_key;            // empty: no authentication
  std::string chat_template;      // template text; empty: the model's own, else ChatML
  // The tool-call format: "auto" (detected from the chat template), or one of
  // kToolCallFormats' names but "none" (server/tool_calls.h).
  std::string tool_call_parser = "auto";
  size_t max_body_bytes = 16u << 20;
  int http_threads = 0;  // 0: max_num_seqs + 32
  std::chrono::milliseconds drain_timeout{30000};
  SchedulerOptions scheduler;
  // Speculative decoding with a draft model: one draft engine per replica, in
  // the order of the engines (each replica's scheduler thread drives its own).
  std::vector<Engine*> drafts;
};

class ApiServer {
 public:
  // Sets up routes and the scheduler; serves nothing until bind() and run().
  ApiServer(Engine& engine, ServerOptions options);
  // One replica per engine (data parallel); the engines must hold the same
  // model. The options apply to every replica's scheduler.
  ApiServer(const std::vector<Engine*>& engines, ServerOptions options);
  ~ApiServer();
  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;

  // Binds host:port and returns the port (the one chosen when port is 0).
  // Throws ConfigError when the address cannot be bound.
  int bind();
  // Serves until a shutdown completes (blocking). Call once, after bind().
  void run();
  // Starts a graceful shutdown (any thread; returns at once). With `force`,
  // requests in flight are cancelled without waiting.
  void request_shutdown(bool force = false);

  const std::string& model_name() const { return model_name_; }
  int64_t max_model_len() const { return pool_.max_model_len(); }
  size_t replicas() const { return pool_.size(); }
  // The format tool calls are parsed in (None: requests with tools that may
  // call them are refused).
  ToolCallFormat tool_call_format() const { return tool_format_; }

 private:
  // One completions or chat-completions request between its submit and its
  // last byte out: its choices' sinks and what its responses repeat.
  struct CompletionInFlight;
  class HttpServer;

  void install_routes();

  bool authorized(const httplib::Request& req, httplib::Response& res) const;
  void handle_generation(Endpoint endpoint, const httplib::Request& req, httplib::Response& res);
  void handle_tokenize(const httplib::Request& req, httplib::Response& res);
  void handle_detokenize(const httplib::Request& req, httplib::Response& res);
  void handle_models(const httplib::Request& req, httplib::Response& res);

  // Submits every sequence of a request (prompts x n), each with its own
  // constraint over `grammar` when there is one; throws ApiError.
  std::shared_ptr<CompletionInFlight> start(const GenerationRequest& request,
                                            const std::vector<std::vector<int32_t>>& prompts,
                                            const std::vector<int64_t>& max_tokens,
                                            const std::shared_ptr<CompiledGrammar>& grammar);
  void cancel(CompletionInFlight& completion);
  void end_request(const std::shared_ptr<CompletionInFlight>& completion);
  void stream(const std::shared_ptr<CompletionInFlight>& completion, httplib::Response& res);
  nlohmann::ordered_json full_response(const CompletionInFlight& completion);
  // Streams one choice's news through its tool-call parser: content chunks,
  // each call as a chunk naming it and a chunk of its arguments, and at the
  // end a finish chunk ("tool_calls" when the choice made any). Returns false
  // when the client is gone.
  bool write_tool_choice_news(const CompletionInFlight& completion, size_t index, SinkNews& news,
                              ToolCallStream& parser, size_t& calls,
                              const std::function<bool(nlohmann::ordered_json)>& write_choice);
  std::string new_id(const char* prefix);
  std::string new_tool_call_id();
  uint64_t random_u64();

  ServerOptions options_;
  ServerMetrics metrics_;  // before pool_: its threads write here until they stop
  ReplicaPool pool_;
  Engine& engine_;  // the first replica's: tokenizer and configuration, the same for all
  std::string model_name_;
  std::unique_ptr<ChatFormatter> chat_;
  std::unique_ptr<StructuredOutputs> structured_;  // response_format / grammar, compiled once per format
  ToolCallFormat tool_format_ = ToolCallFormat::None;
  std::vector<int32_t> tool_markers_;  // the format's marker tokens that are special tokens
  std::unique_ptr<HttpServer> http_;
  ParserLimits limits_;
  int64_t created_ = 0;

  // Requests in flight (for draining and cancelling at shutdown).
  std::mutex live_mutex_;
  std::condition_variable live_cv_;
  std::set<std::shared_ptr<CompletionInFlight>> live_;
  std::atomic<bool> draining_{false};
  bool shutdown_requested_ = false;
  bool shutdown_forced_ = false;

  std::mutex rng_mutex_;
  std::mt19937_64 rng_;
};

}  // namespace tpinfer::server
