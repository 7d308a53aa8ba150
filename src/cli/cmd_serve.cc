// tpinfer serve: the OpenAI-compatible HTTP server (server/api_server.h). This
// file turns options into engines (one per data-parallel replica) and an
// ApiServer, and SIGTERM / SIGINT into a graceful shutdown (a second signal
// stops at once).
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "cli/common.h"
#include "comm/mpi_comm.h"
#include "core/error.h"
#include "server/api_server.h"
#include "server/kv_budget.h"

namespace tpinfer::cli {
namespace {

struct ServeOptions {
  ModelOptions model;
  int dp = 1;
  std::string host = "127.0.0.1";
  int port = 8000;
  int max_num_seqs = 64;
  int max_num_batched_tokens = 512;
  int max_model_len = 0;
  std::string kv_cache_memory;
  std::string served_model_name;
  std::string api_key;
  std::string chat_template;
  std::string tool_call_parser = "auto";
  double drain_timeout = 30.0;
  bool no_prefix_caching = false;
  SpeculativeCliOptions speculative;
};

// The signal handler may only write to a pipe; a thread reads it.
int g_signal_pipe[2] = {-1, -1};

extern "C" void on_signal(int) {
  const int saved = errno;
  const char byte = 's';
  [[maybe_unused]] const ssize_t n = write(g_signal_pipe[1], &byte, 1);
  errno = saved;
}

// Installs the handlers for the lifetime of the object and runs the thread that
// turns signals into server shutdowns.
class SignalWatcher {
 public:
  explicit SignalWatcher(server::ApiServer& server) {
    if (pipe(g_signal_pipe) != 0) throw Error(cat("pipe: ", std::strerror(errno)));
    fcntl(g_signal_pipe[1], F_SETFL, O_NONBLOCK);
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;  // accept() and friends must not fail with EINTR
    sigaction(SIGTERM, &sa, &old_term_);
    sigaction(SIGINT, &sa, &old_int_);
    thread_ = std::thread([this, &server] {
      int signals = 0;
      char byte = 0;
      while (read(g_signal_pipe[0], &byte, 1) == 1 && byte == 's') {
        ++signals;
        if (signals == 1) {
          std::fprintf(stderr, "shutting down: finishing requests in flight (a second signal stops at once)\n");
          server.request_shutdown(false);
        } else {
          std::fprintf(stderr, "stopping now\n");
          server.request_shutdown(true);
        }
      }
    });
  }
  ~SignalWatcher() {
    sigaction(SIGTERM, &old_term_, nullptr);
    sigaction(SIGINT, &old_int_, nullptr);
    const char byte = 'q';
    [[maybe_unused]] const ssize_t n = write(g_signal_pipe[1], &byte, 1);
    thread_.join();
    close(g_signal_pipe[0]);
    close(g_signal_pipe[1]);
    g_signal_pipe[0] = g_signal_pipe[1] = -1;
  }

 private:
  struct sigaction old_term_ {};
  struct sigaction old_int_ {};
  std::thread thread_;
};

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(cat("--chat-template: cannot read '", path, "'"));
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void serve(ServeOptions& o) {
  server::resolve_tool_call_parser(o.tool_call_parser, "");  // checked before the model loads
  EngineOptions eo = engine_options(o.model, o.dp);
  if (o.dp > 1 && resolve(eo.comm) == CommBackend::Mpi) {
    throw ConfigError(
        "--data-parallel-size > 1 runs its replicas as threads of one process (--comm local); under mpirun, start one "
        "server per replica instead and balance them in front");
  }
  if (!o.kv_cache_memory.empty() && o.model.ctx_size > 0) {
    throw ConfigError("--kv-cache-memory and -c/--ctx-size both size the KV cache; give only one");
  }
  if (o.model.ctx_size <= 0) {
    // A memory budget per rank; without one, 2 GiB, but no more than every
    // sequence at full length can use (max_num_seqs x max_model_len).
    const uint64_t bytes = server::parse_byte_size(o.kv_cache_memory.empty() ? "2GiB" : o.kv_cache_memory);
    const auto src = ModelSource::open(o.model.model);
    const ShardPlan plan = ShardPlan::build(src->config(), eo.parallel, shard_constraints(*src));
    const PipelinePlan pipeline = PipelinePlan::build(src->config().n_layers, eo.parallel.pp, eo.parallel.pipeline_split);
    eo.kv_tokens = server::kv_tokens_for_budget(bytes, src->config(), plan, eo.kv_type, eo.kv_block_size,
                                                pipeline.max_stage_layers());
    if (o.kv_cache_memory.empty()) {
      const int64_t len = o.max_model_len > 0 ? o.max_model_len : src->config().max_context;
      if (len > 0) {
        const int64_t useful = static_cast<int64_t>(o.max_num_seqs) * len;
        const int64_t rounded = (useful + eo.kv_block_size - 1) / eo.kv_block_size * eo.kv_block_size;
        eo.kv_tokens = std::min(eo.kv_tokens, rounded);
      }
    }
  }
  server::ServerOptions so;
  so.host = o.host;
  so.port = o.port;
  so.served_model_name = o.served_model_name;
  so.api_key = o.api_key;
  if (!o.chat_template.empty()) so.chat_template = read_file(o.chat_template);
  so.tool_call_parser = o.tool_call_parser;
  so.drain_timeout = std::chrono::milliseconds(static_cast<int64_t>(o.drain_timeout * 1000));
  so.scheduler.max_num_seqs = o.max_num_seqs;
  so.scheduler.max_batch_tokens = o.max_num_batched_tokens;
  so.scheduler.max_model_len = o.max_model_len;
  so.scheduler.prefix_caching = !o.no_prefix_caching;

  // A client that disconnects must cost a failed write, not the process.
  signal(SIGPIPE, SIG_IGN);
  // Data-parallel replicas: tp x pp rank threads each, pinned side by side.
  std::vector<std::unique_ptr<Engine>> engines;
  for (int d = 0; d < o.dp; ++d) {
    EngineOptions replica = eo;
    replica.first_cpu = d * eo.parallel.tp * eo.parallel.pp * eo.parallel.threads_per_rank;
    engines.push_back(std::make_unique<Engine>(o.model.model, replica));
  }
  Engine& engine = *engines[0];
  if (!engine.is_driver()) {  // under mpirun: rank 0 serves HTTP, the others run the worker loop
    engine.run_worker();
    return;
  }
  std::vector<Engine*> replicas;
  for (auto& e : engines) replicas.push_back(e.get());
  // A draft model per replica: each replica's scheduler thread drives its own.
  std::vector<std::unique_ptr<Engine>> drafts;
  for (Engine* e : replicas) {
    if (auto d = open_draft(o.speculative, o.model, *e)) {
      so.drafts.push_back(d.get());
      drafts.push_back(std::move(d));
    }
  }
  so.scheduler.speculative = speculative_options(o.speculative, drafts.empty() ? nullptr : drafts[0].get());
  server::ApiServer server(replicas, so);
  const int port = server.bind();
  SignalWatcher watcher(server);
  const int64_t cache_tokens = static_cast<int64_t>(engine.blocks().n_blocks()) * engine.blocks().block_size();
  uint64_t kv_bytes = 0;
  for (const RankReport& r : engine.rank_reports()) kv_bytes = std::max(kv_bytes, r.kv_bytes);
  std::string stages;
  for (int c : engine.pipeline().layer_counts()) stages += (stages.empty() ? "" : ",") + std::to_string(c);
  std::fprintf(stderr,
               "tpinfer serve: model '%s', tp %d, pp %d (layers %s), dp %d, KV cache %lld tokens per replica (%s per "
               "rank), max model length %lld, max %d sequences per replica, prefix caching %s, speculative %s, tool "
               "calls %s\n",
               server.model_name().c_str(), engine.tp(), engine.pp(), stages.c_str(), o.dp,
               static_cast<long long>(cache_tokens), format_bytes(kv_bytes).c_str(),
               static_cast<long long>(server.max_model_len()), o.max_num_seqs, o.no_prefix_caching ? "off" : "on",
               so.scheduler.speculative.method == Speculation::None
                   ? "off"
                   : cat(name(so.scheduler.speculative.method), " k ", so.scheduler.speculative.k).c_str(),
               server::kToolCallFormats[server.tool_call_format()]);
  std::fprintf(stderr, "listening on http://%s:%d\n", o.host.c_str(), port);
  std::fflush(stderr);
  server.run();
  std::fprintf(stderr, "tpinfer serve: stopped\n");
}

}  // namespace

void register_serve(CLI::App& app) {
  auto o = std::make_shared<ServeOptions>();
  CLI::App* cmd = app.add_subcommand("serve", "OpenAI-compatible HTTP server with continuous batching");
  add_model_options(*cmd, o->model);
  cmd->add_option("--dp,--data-parallel-size", o->dp,
                  "Independent replicas of the model (tp x pp ranks each) behind the one endpoint; each request goes "
                  "to the least loaded, or one that holds its prompt's beginning")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--host", o->host, "Address to listen on")->capture_default_str();
  cmd->add_option("--port", o->port, "Port to listen on (0: any free port)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  cmd->add_option("--max-num-seqs", o->max_num_seqs, "Sequences running at once")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--max-num-batched-tokens", o->max_num_batched_tokens, "Tokens per engine step")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--max-model-len", o->max_model_len, "Longest prompt + completion (default: the model's context)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--kv-cache-memory", o->kv_cache_memory,
                  "KV-cache memory per rank, e.g. 512MiB, 2GiB, 1.5G (default: 2GiB, at most what max-num-seqs "
                  "sequences of max-model-len tokens use)");
  cmd->add_flag("--no-prefix-caching", o->no_prefix_caching,
                "Prefill every prompt whole: keep no computed blocks for later requests that begin alike");
  add_speculative_options(*cmd, o->speculative);
  cmd->add_option("--served-model-name", o->served_model_name, "Model name in the API (default: the model's)");
  cmd->add_option("--api-key", o->api_key, "Require 'Authorization: Bearer KEY' on /v1 requests");
  cmd->add_option("--chat-template", o->chat_template, "Jinja chat template file (default: the model's, else ChatML)");
  cmd->add_option("--tool-call-parser", o->tool_call_parser,
                  "Format of the model's tool calls: auto (from the chat template), hermes, llama3_json, mistral")
      ->capture_default_str();
  cmd->add_option("--drain-timeout", o->drain_timeout, "Seconds requests in flight get to finish at shutdown")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->callback([o] { serve(*o); });
}

}  // namespace tpinfer::cli
