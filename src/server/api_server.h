// The OpenAI-compatible HTTP server over an Engine (tpinfer serve).
//
// Endpoints: POST /v1/completions, POST /v1/chat/completions (both streamed as
// server-sent events with "stream": true), GET /v1/models, GET /v1/models/{id},
// GET /health, GET /metrics (Prometheus, server/metrics.h), POST /tokenize,
// POST /detokenize (vLLM's). Errors are OpenAI error JSON (server/request_parser.h
// says what is checked); nothing a client sends ends the process.
//
// Data parallel: the server may own several engines, each an independent
// replica of the model (tp x pp ranks of its own) with its own scheduler and
// KV cache, behind the one endpoint. Each sequence goes to the replica with
// the fewest unfinished sequences (waiting, running or in flight); a request's
// n choices may land on different replicas. Greedy output does not depend on
// the replica: every replica computes the same logits.
//
// Threads: HTTP handlers run on a pool (one thread per open connection in use);
// they parse, tokenize, submit sequences to a Scheduler and then wait for, or
// stream, what it produces. One scheduler thread per replica runs its engine
// step after step and, between steps, snapshots the engine's parallel counters
// (communication per dimension, pipeline stage times) for /metrics. Detokenization and stop strings run in the scheduler's token
// callback, so a stop string ends its sequence at the very token that completed it.
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
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "engine/engine.h"
#include "engine/scheduler.h"
#include "server/chat_format.h"
#include "server/metrics.h"
#include "server/request_parser.h"

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
  size_t max_body_bytes = 16u << 20;
  int http_threads = 0;  // 0: max_num_seqs + 32
  std::chrono::milliseconds drain_timeout{30000};
  SchedulerOptions scheduler;
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
  int64_t max_model_len() const { return max_model_len_; }
  size_t replicas() const { return replicas_.size(); }

 private:
  struct RequestState;
  struct SequenceOut;
  class HttpServer;
  // A data-parallel replica: an engine, its scheduler and the thread that runs it.
  struct Replica {
    Engine* engine = nullptr;
    std::unique_ptr<Scheduler> scheduler;
    std::thread thread;
    std::mutex loop_mutex;
    std::condition_variable loop_cv;
    bool work_pending = false;
    bool stop_loop = false;
  };

  void install_routes();
  void scheduler_loop(size_t replica);
  void wake_scheduler(size_t replica);
  void stop_schedulers();
  // The replica with the fewest unfinished sequences.
  size_t pick_replica() const;
  std::vector<SchedulerMetrics> scheduler_metrics() const;

  bool authorized(const httplib::Request& req, httplib::Response& res) const;
  void handle_generation(Endpoint endpoint, const httplib::Request& req, httplib::Response& res);
  void handle_tokenize(const httplib::Request& req, httplib::Response& res);
  void handle_detokenize(const httplib::Request& req, httplib::Response& res);
  void handle_models(const httplib::Request& req, httplib::Response& res);

  // Submits every sequence of a request (prompts x n); throws ApiError.
  std::shared_ptr<RequestState> start(const GenerationRequest& request,
                                      const std::vector<std::vector<int32_t>>& prompts,
                                      const std::vector<int64_t>& max_tokens);
  void cancel(RequestState& state);
  void end_request(const std::shared_ptr<RequestState>& state);
  void stream(const std::shared_ptr<RequestState>& state, httplib::Response& res);
  nlohmann::ordered_json full_response(const RequestState& state) const;
  std::string new_id(const char* prefix);
  uint64_t random_u64();

  Engine& engine_;  // the first replica's: tokenizer and configuration, the same for all
  ServerOptions options_;
  std::string model_name_;
  std::vector<std::unique_ptr<Replica>> replicas_;
  std::mutex dispatch_mutex_;  // picking a replica and submitting to it, as one step
  int64_t max_model_len_ = 0;
  std::unique_ptr<ChatFormatter> chat_;
  std::unique_ptr<HttpServer> http_;
  ServerMetrics metrics_;
  ParserLimits limits_;
  int64_t created_ = 0;

  // Requests in flight (for draining and cancelling at shutdown).
  std::mutex live_mutex_;
  std::condition_variable live_cv_;
  std::set<std::shared_ptr<RequestState>> live_;
  std::atomic<bool> draining_{false};
  bool shutdown_requested_ = false;
  bool shutdown_forced_ = false;

  std::mutex rng_mutex_;
  std::mt19937_64 rng_;
};

}  // namespace tpinfer::server
