#include "server/api_server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <thread>

#include "core/error.h"
#include "core/thread_pool.h"
#include "server/openai_json.h"
#include "server/sequence_sink.h"

namespace tpinfer::server {

using ojson = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

namespace {

void send_json(httplib::Response& res, int status, const ojson& body) {
  res.status = status;
  res.set_content(dump_json(body), "application/json");
}

void send_error(httplib::Response& res, const ApiError& e) { send_json(res, e.status, e.to_json()); }

// The 64-bit finalizer of SplitMix64: decorrelates seeds that differ by one.
uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

bool constant_time_equal(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace

// httplib::Server with its listening socket in reach: Debian's libcpp-httplib
// listens with a backlog of 5, and a burst of clients (64 streams connecting
// at once) overflows that queue and gets connections reset.
class ApiServer::HttpServer : public httplib::Server {
 public:
  bool widen_backlog() { return ::listen(svr_sock_, SOMAXCONN) == 0; }
};

struct ApiServer::CompletionInFlight {
  ResponseHead head;
  // The format its chat output is parsed for tool calls in; None: plain text
  // (no tools, or tool_choice "none").
  ToolCallFormat tool_format = ToolCallFormat::None;
  int64_t prompt_tokens = 0;
  int n = 1;  // choices per prompt: seqs[p x n, (p + 1) x n) share prompt p
  SinkChannel channel;
  std::vector<std::unique_ptr<SequenceSink>> seqs;  // one per choice, in choice order

  bool all_finished() const {  // with channel.mutex held
    for (const auto& s : seqs) {
      if (!s->finished) return false;
    }
    return true;
  }
  bool all_finished_locked() {
    std::lock_guard<std::mutex> lock(channel.mutex);
    return all_finished();
  }
  int64_t completion_tokens() const {  // with channel.mutex held, or after all_finished()
    int64_t n = 0;
    for (const auto& s : seqs) n += s->completion_tokens;
    return n;
  }
  // With channel.mutex held, or after all_finished(). A prompt counts once,
  // and so do its cached tokens: those its choices found in the cache before
  // any of them computed it (the fewest a choice found; its siblings then
  // found more, computed by this very request).
  UsageCounts usage() const {
    UsageCounts u;
    u.prompt_tokens = prompt_tokens;
    u.completion_tokens = completion_tokens();
    for (size_t p = 0; p * static_cast<size_t>(n) < seqs.size(); ++p) {
      int64_t fewest = seqs[p * static_cast<size_t>(n)]->cached_prompt_tokens;
      for (size_t j = 1; j < static_cast<size_t>(n); ++j) {
        fewest = std::min(fewest, seqs[p * static_cast<size_t>(n) + j]->cached_prompt_tokens);
      }
      u.cached_prompt_tokens += fewest;
    }
    return u;
  }
};

ApiServer::ApiServer(Engine& engine, ServerOptions options)
    : ApiServer(std::vector<Engine*>{&engine}, std::move(options)) {}

ApiServer::ApiServer(const std::vector<Engine*>& engines, ServerOptions options)
    : options_(std::move(options)),
      pool_(engines, options_.scheduler, metrics_, options_.drafts),
      engine_(pool_.engine()),
      rng_(std::random_device{}()) {
  const Tokenizer& tok = engine_.tokenizer();
  model_name_ = options_.served_model_name;
  if (model_name_.empty()) model_name_ = engine_.config().name;
  if (model_name_.empty()) model_name_ = std::filesystem::path(engine_.source().path()).filename().string();

  chat_ = std::make_unique<ChatFormatter>(tok, options_.chat_template);
  tool_format_ = resolve_tool_call_parser(options_.tool_call_parser, chat_->source());
  for (const std::string& marker : tool_call_marker_tokens(tool_format_)) {
    const int32_t id = tok.token_id(marker);
    if (id >= 0 && tok.is_special(id)) tool_markers_.push_back(id);
  }
  structured_ = std::make_unique<StructuredOutputs>(tok, engine_.config().vocab, tool_markers_);

  limits_.max_model_len = pool_.max_model_len();
  limits_.vocab_size = std::min<int32_t>(engine_.config().vocab, tok.vocab_size());
  created_ =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();

  http_ = std::make_unique<HttpServer>();
  const int threads =
      options_.http_threads > 0 ? options_.http_threads : std::max(16, options_.scheduler.max_num_seqs + 32);
  http_->new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  http_->set_payload_max_length(options_.max_body_bytes);
  // httplib's default also sets SO_REUSEPORT, which lets a second server bind
  // the same port and silently share its traffic; a port in use must be an error.
  http_->set_socket_options([](socket_t sock) {
    const int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  http_->set_tcp_nodelay(true);
  install_routes();
}

ApiServer::~ApiServer() { pool_.stop(); }

int ApiServer::bind() {
  int port = options_.port;
  bool ok = false;
  if (port == 0) {
    port = http_->bind_to_any_port(options_.host);
    ok = port > 0;
  } else {
    ok = http_->bind_to_port(options_.host, port);
  }
  if (!ok) {
    throw ConfigError(cat("cannot listen on ", options_.host, ":", options_.port, ": ", std::strerror(errno),
                          " (is the port in use, or the host not an address of this machine?)"));
  }
  if (!http_->widen_backlog()) {
    throw Error(cat("cannot widen the listen backlog on ", options_.host, ":", port, ": ", std::strerror(errno)));
  }
  return port;
}

void ApiServer::install_routes() {
  // httplib's request, not the body parsed from it (GenerationRequest) nor
  // the work the scheduler runs (SequenceSpec).
  using HttpRequest = httplib::Request;
  using HttpResponse = httplib::Response;
  http_->Post("/v1/completions", [this](const HttpRequest& req, HttpResponse& res) {
    handle_generation(Endpoint::Completions, req, res);
  });
  http_->Post("/v1/chat/completions", [this](const HttpRequest& req, HttpResponse& res) {
    handle_generation(Endpoint::ChatCompletions, req, res);
  });
  http_->Get("/v1/models", [this](const HttpRequest& req, HttpResponse& res) { handle_models(req, res); });
  http_->Get(R"(/v1/models/(.+))", [this](const HttpRequest& req, HttpResponse& res) { handle_models(req, res); });
  http_->Post("/tokenize", [this](const HttpRequest& req, HttpResponse& res) { handle_tokenize(req, res); });
  http_->Post("/detokenize", [this](const HttpRequest& req, HttpResponse& res) { handle_detokenize(req, res); });
  http_->Get("/health", [this](const HttpRequest&, HttpResponse& res) {
    if (draining_) {
      send_error(res, shutting_down());
      return;
    }
    res.status = 200;
  });
  http_->Get("/metrics", [this](const HttpRequest&, HttpResponse& res) {
    res.status = 200;
    res.set_content(metrics_.render(pool_.metrics()), "text/plain; version=0.0.4; charset=utf-8");
  });

  // Statuses httplib produces itself (unknown route, body too large, malformed
  // HTTP) get the OpenAI error JSON too; responses that already have a body
  // (the handlers' own errors) pass through.
  http_->set_error_handler(httplib::Server::HandlerWithResponse([this](const HttpRequest& req, HttpResponse& res) {
    if (!res.body.empty() || res.is_chunked_content_provider_) return httplib::Server::HandlerResponse::Unhandled;
    ApiError e;
    e.status = res.status;
    if (res.status == 404) {
      e.message = "Not found: " + req.method + " " + req.path;
      e.code = "not_found";
    } else if (res.status == 413) {
      e.message =
          "The request body is larger than the server accepts (" + std::to_string(options_.max_body_bytes) + " bytes).";
      e.code = "request_too_large";
    } else if (res.status >= 500) {
      e = server_error(res.status, "Internal server error.");
    } else {
      e.message = "Bad request.";
    }
    send_error(res, e);
    return httplib::Server::HandlerResponse::Handled;
  }));
  http_->set_exception_handler([](const HttpRequest&, HttpResponse& res, std::exception_ptr ep) {
    std::string what = "unknown exception";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    send_error(res, server_error(500, "Internal server error: " + what));
  });
  // Counted when the response is about to be written, not in the logger (which
  // runs after the client already has it): a client that reads /metrics right
  // after an answer must see that answer counted.
  http_->set_post_routing_handler(
      [this](const HttpRequest& req, HttpResponse& res) { metrics_.count_request(req.path, res.status); });
}

bool ApiServer::authorized(const httplib::Request& req, httplib::Response& res) const {
  if (options_.api_key.empty()) return true;
  const std::string want = "Bearer " + options_.api_key;
  if (constant_time_equal(req.get_header_value("Authorization"), want)) return true;
  ApiError e;
  e.status = 401;
  e.message = "Invalid or missing API key. Send it as 'Authorization: Bearer <key>'.";
  e.code = "invalid_api_key";
  send_error(res, e);
  return false;
}

void ApiServer::run() {
  pool_.start();
  std::thread http_thread([this] {
    // The engine pinned the thread that built it (the driver's rank) to its
    // core; the HTTP threads started from here must not all inherit that one.
    unpin_current_thread();
    http_->listen_after_bind();
    // Listening ended (stop(), or an error): run() must not wait for a signal.
    std::lock_guard<std::mutex> lock(live_mutex_);
    shutdown_requested_ = true;
    shutdown_forced_ = true;
    live_cv_.notify_all();
  });

  std::vector<std::shared_ptr<CompletionInFlight>> left;
  {
    std::unique_lock<std::mutex> lock(live_mutex_);
    live_cv_.wait(lock, [&] { return shutdown_requested_; });
    draining_ = true;
    const auto deadline = Clock::now() + options_.drain_timeout;
    live_cv_.wait_until(lock, deadline, [&] { return live_.empty() || shutdown_forced_; });
    left.assign(live_.begin(), live_.end());
  }
  if (!left.empty()) std::fprintf(stderr, "shutdown: cancelling %zu requests still in flight\n", left.size());
  for (const auto& st : left) cancel(*st);
  left.clear();
  {
    // Cancelled requests end at the next scheduler step; a stalled client
    // costs at most the write timeout.
    std::unique_lock<std::mutex> lock(live_mutex_);
    live_cv_.wait_for(lock, std::chrono::seconds(15), [&] { return live_.empty(); });
  }
  http_->stop();
  http_thread.join();
  pool_.stop();
}

void ApiServer::request_shutdown(bool force) {
  {
    std::lock_guard<std::mutex> lock(live_mutex_);
    shutdown_requested_ = true;
    if (force) shutdown_forced_ = true;
  }
  draining_ = true;
  live_cv_.notify_all();
}

std::string ApiServer::new_id(const char* prefix) {
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%s-%016llx%08llx", prefix, static_cast<unsigned long long>(random_u64()),
                static_cast<unsigned long long>(random_u64() & 0xffffffffull));
  return buf;
}

std::string ApiServer::new_tool_call_id() { return tool_call_id(random_u64(), random_u64()); }

uint64_t ApiServer::random_u64() {
  std::lock_guard<std::mutex> lock(rng_mutex_);
  return rng_();
}

namespace {

// One choice of a request as the scheduler runs it; `seed` is already mixed
// for the choice. The callbacks, set by the caller, go to its sink.
SequenceSpec sequence_spec(const GenerationRequest& request, std::vector<int32_t> prompt, int64_t max_tokens,
                           uint64_t seed) {
  SequenceSpec spec;
  spec.prompt = std::move(prompt);
  spec.max_tokens = static_cast<int>(max_tokens);
  spec.stop_at_eog = !request.ignore_eos;
  spec.top_logprobs = request.logprobs;
  spec.speculative_tokens = request.num_speculative_tokens;
  spec.sampling.temperature = static_cast<float>(request.temperature);
  spec.sampling.top_p = static_cast<float>(request.top_p);
  spec.sampling.top_k = request.top_k;
  spec.sampling.min_p = static_cast<float>(request.min_p);
  spec.sampling.repeat_penalty = static_cast<float>(request.repetition_penalty);
  spec.sampling.presence_penalty = static_cast<float>(request.presence_penalty);
  spec.sampling.frequency_penalty = static_cast<float>(request.frequency_penalty);
  spec.sampling.seed = seed;
  return spec;
}

}  // namespace

std::shared_ptr<ApiServer::CompletionInFlight> ApiServer::start(const GenerationRequest& request,
                                                                const std::vector<std::vector<int32_t>>& prompts,
                                                                const std::vector<int64_t>& max_tokens,
                                                                const std::shared_ptr<CompiledGrammar>& grammar) {
  const Tokenizer& tok = engine_.tokenizer();
  auto st = std::make_shared<CompletionInFlight>();
  st->head.endpoint = request.endpoint;
  st->head.id = new_id(request.endpoint == Endpoint::ChatCompletions ? "chatcmpl" : "cmpl");
  st->head.created =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  st->head.model = model_name_;
  st->head.logprobs = request.logprobs;
  st->head.include_usage = request.include_usage;
  st->n = request.n;
  if (request.tools.is_array() && request.tool_choice.kind != ToolChoice::None) st->tool_format = tool_format_;
  const std::vector<int32_t> keep = st->tool_format != ToolCallFormat::None ? tool_markers_ : std::vector<int32_t>{};
  for (const auto& p : prompts) st->prompt_tokens += static_cast<int64_t>(p.size());
  for (size_t p = 0; p < prompts.size(); ++p) {
    for (int j = 0; j < request.n; ++j) {
      st->seqs.push_back(std::make_unique<SequenceSink>(st->channel, metrics_, tok, request.skip_special_tokens,
                                                        request.stop, request.logprobs >= 0, keep));
    }
  }
  {
    std::lock_guard<std::mutex> lock(live_mutex_);
    if (draining_) throw shutting_down();
    live_.insert(st);
  }

  // Seeds: the request's (or a random one), mixed with the sequence index so
  // the n choices are independent and the same seed repeats the same choices.
  const uint64_t base_seed = request.seed ? static_cast<uint64_t>(*request.seed) : random_u64();
  for (size_t k = 0; k < st->seqs.size(); ++k) {
    const size_t p = k / static_cast<size_t>(request.n);
    SequenceSpec spec = sequence_spec(request, prompts[p], max_tokens[p], mix64(base_seed + k));
    if (grammar) spec.constraint = std::make_shared<GrammarConstraint>(grammar);
    // The callbacks run on the scheduler thread and hold the request alive.
    spec.on_token = [st, k](const TokenEvent& ev) { return st->seqs[k]->on_token(ev); };
    spec.on_finish = [st, k](FinishReason reason, const std::string& error) { st->seqs[k]->on_finish(reason, error); };
    st->seqs[k]->mark_submitted();
    try {
      const Placement where = pool_.submit(std::move(spec));
      std::lock_guard<std::mutex> lock(st->channel.mutex);
      st->seqs[k]->id = where.id;
      st->seqs[k]->replica = where.replica;
    } catch (const std::exception& e) {
      // Only a shutdown can get here: the request was validated against the
      // same limits. The sequences already submitted go.
      {
        std::lock_guard<std::mutex> lock(st->channel.mutex);
        for (size_t j = k; j < st->seqs.size(); ++j) st->seqs[j]->finished = true;
      }
      cancel(*st);
      end_request(st);
      if (draining_) throw shutting_down();
      throw ApiError::invalid(e.what(), request.endpoint == Endpoint::ChatCompletions ? "messages" : "prompt");
    }
  }
  return st;
}

void ApiServer::end_request(const std::shared_ptr<CompletionInFlight>& st) {
  std::lock_guard<std::mutex> lock(live_mutex_);
  live_.erase(st);
  live_cv_.notify_all();
}

void ApiServer::handle_generation(Endpoint endpoint, const httplib::Request& req, httplib::Response& res) {
  if (!authorized(req, res)) return;
  if (draining_) return send_error(res, shutting_down());
  GenerationParse parsed = parse_generation_request(endpoint, req.body, limits_);
  if (const ApiError* e = std::get_if<ApiError>(&parsed)) return send_error(res, *e);
  const GenerationRequest& request = std::get<GenerationRequest>(parsed);
  if (!request.model.empty() && request.model != model_name_) {
    return send_error(res, ApiError::model_not_found(request.model));
  }

  const Tokenizer& tok = engine_.tokenizer();
  std::vector<std::vector<int32_t>> prompts;
  std::shared_ptr<CompiledGrammar> grammar;  // the output's constraint, if any
  if (endpoint == Endpoint::Completions) {
    for (const Prompt& p : request.prompts) {
      prompts.push_back(p.is_tokens ? p.tokens : tok.encode(p.text, /*add_special=*/true, /*parse_special=*/true));
    }
  } else {
    const bool may_call = request.tools.is_array() && request.tool_choice.kind != ToolChoice::None;
    if (may_call && tool_format_ == ToolCallFormat::None) {
      return send_error(res, ApiError::invalid("This model's chat template renders no tools, or asks for tool calls "
                                               "in a format this server does not parse; start the server with "
                                               "--tool-call-parser hermes, llama3_json or mistral to use tools.",
                                               "tools"));
    }
    // A request that forces calls (tool_choice required or a named
    // function): its output is the format's calls, by constrained decoding.
    if (const auto forced = may_call ? tool_call_constraint(tool_format_, request.tools, request.tool_choice,
                                                            request.parallel_tool_calls)
                                     : std::nullopt) {
      if (request.output.kind != OutputFormat::Kind::Text) {
        return send_error(res, ApiError::invalid("A forced tool call ('tool_choice' required or a function) and a "
                                                 "'response_format' or 'grammar' cannot both shape the output.",
                                                 "tool_choice"));
      }
      try {
        grammar = structured_->compile(*forced);
      } catch (const ApiError& e) {
        return send_error(res, e);
      }
    }
    ojson messages = request.messages;
    prepare_messages_for_format(tool_format_, messages);
    try {
      prompts.push_back(
          chat_->tokens(messages, request.add_generation_prompt, request.chat_template_kwargs, request.tools));
    } catch (const TemplateFailure& e) {
      return send_error(res, ApiError::invalid(std::string("The chat template failed: ") + e.what(), "messages"));
    }
  }
  std::vector<int64_t> max_tokens;
  for (const auto& p : prompts) {
    auto checked = check_prompt_length(request, static_cast<int64_t>(p.size()), max_model_len());
    if (const ApiError* e = std::get_if<ApiError>(&checked)) return send_error(res, *e);
    max_tokens.push_back(std::get<int64_t>(checked));
  }

  std::shared_ptr<CompletionInFlight> st;
  try {
    if (!grammar) grammar = structured_->compile(request.output);
    st = start(request, prompts, max_tokens, grammar);
  } catch (const ApiError& e) {
    return send_error(res, e);
  }
  if (request.stream) return stream(st, res);

  {
    std::unique_lock<std::mutex> lock(st->channel.mutex);
    st->channel.cv.wait(lock, [&] { return st->all_finished(); });
  }
  end_request(st);
  for (const auto& s : st->seqs) {
    if (s->reason == FinishReason::Error) {
      return send_error(res, server_error(500, "Generation failed: " + s->error));
    }
    if (s->reason == FinishReason::Cancelled) return send_error(res, shutting_down());
  }
  send_json(res, 200, full_response(*st));
}

ojson ApiServer::full_response(const CompletionInFlight& st) {
  const Tokenizer& tok = engine_.tokenizer();
  ojson choices = ojson::array();
  for (size_t i = 0; i < st.seqs.size(); ++i) {
    const SequenceSink& s = *st.seqs[i];
    if (st.tool_format != ToolCallFormat::None) {
      ParsedToolCalls parsed = parse_tool_calls(st.tool_format, s.text);
      if (!parsed.calls.empty()) {
        ojson calls = ojson::array();
        for (const ToolCall& call : parsed.calls) calls.push_back(tool_call_json(new_tool_call_id(), call));
        choices.push_back(
            choice_json(st.head, ChoiceForm::Message, i, parsed.content, s.logprobs, "tool_calls", tok, calls));
        continue;
      }
    }
    choices.push_back(
        choice_json(st.head, ChoiceForm::Message, i, s.text, s.logprobs, finish_reason_name(s.reason), tok));
  }
  return response_json(st.head, std::move(choices), st.usage());
}

void ApiServer::stream(const std::shared_ptr<CompletionInFlight>& st, httplib::Response& res) {
  struct Cursor {
    bool started = false;
    // Per choice, when the output is parsed for tool calls: the parser and
    // the calls streamed so far.
    std::vector<ToolCallStream> parsers;
    std::vector<size_t> calls;
  };
  auto cursor = std::make_shared<Cursor>();
  if (st->tool_format != ToolCallFormat::None) {
    cursor->parsers.assign(st->seqs.size(), ToolCallStream(st->tool_format));
    cursor->calls.assign(st->seqs.size(), 0);
  }
  const bool chat = st->head.endpoint == Endpoint::ChatCompletions;
  res.status = 200;
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [this, st, cursor, chat](size_t, httplib::DataSink& sink) -> bool {
        const Tokenizer& tok = engine_.tokenizer();
        auto write = [&](const std::string& data) { return sink.write(data.data(), data.size()); };
        auto write_choice = [&](ojson choice) {
          return write(sse_event(chunk_json(st->head, ojson::array({std::move(choice)}))));
        };
        if (!cursor->started) {
          cursor->started = true;
          if (chat) {
            for (size_t i = 0; i < st->seqs.size(); ++i) {
              if (!write_choice(role_delta_json(i))) return false;
            }
          }
        }
        std::vector<SinkNews> taken;
        taken.reserve(st->seqs.size());
        bool all_done = true;
        {
          std::unique_lock<std::mutex> lock(st->channel.mutex);
          auto news = [&] {
            for (const auto& s : st->seqs) {
              if (s->has_news()) return true;
            }
            return false;
          };
          st->channel.cv.wait_for(lock, std::chrono::milliseconds(250), news);
          for (const auto& s : st->seqs) {
            taken.push_back(s->take());
            if (!s->finish_reported) all_done = false;
          }
        }
        for (size_t i = 0; i < taken.size(); ++i) {
          SinkNews& t = taken[i];
          const bool failed = t.finish && (t.reason == FinishReason::Error || t.reason == FinishReason::Cancelled);
          if (t.text.empty() && t.logprobs.empty() && !t.finish) continue;
          if (!cursor->parsers.empty() && !failed) {
            if (!write_tool_choice_news(*st, i, t, cursor->parsers[i], cursor->calls[i], write_choice)) return false;
          } else if (!t.text.empty() || !t.logprobs.empty() || (t.finish && !failed)) {
            const char* finish = t.finish && !failed ? finish_reason_name(t.reason) : nullptr;
            if (!write_choice(choice_json(st->head, ChoiceForm::Delta, i, t.text, t.logprobs, finish, tok))) {
              return false;
            }
          }
          if (failed) {
            const ApiError e =
                t.reason == FinishReason::Error ? server_error(500, "Generation failed: " + t.error) : shutting_down();
            if (!write(sse_event(e.to_json()))) return false;
          }
        }
        if (all_done) {
          if (st->head.include_usage) {
            UsageCounts usage;
            {
              std::lock_guard<std::mutex> lock(st->channel.mutex);
              usage = st->usage();
            }
            if (!write(sse_event(usage_chunk_json(st->head, usage)))) return false;
          }
          if (!write(kSseDone)) return false;
          sink.done();
        }
        return true;
      },
      [this, st](bool success) {
        // The response is gone: finished, or the client went away mid-stream.
        if (!success || !st->all_finished_locked()) cancel(*st);
        end_request(st);
      });
}

bool ApiServer::write_tool_choice_news(const CompletionInFlight& st, size_t index, SinkNews& news,
                                       ToolCallStream& parser, size_t& calls,
                                       const std::function<bool(ojson)>& write_choice) {
  const Tokenizer& tok = engine_.tokenizer();
  std::vector<ToolCallPiece> pieces = parser.push(news.text);
  if (news.finish) {
    for (ToolCallPiece& p : parser.finish()) pieces.push_back(std::move(p));
  }
  // The news' logprobs go with its first chunk (or a chunk of their own).
  std::vector<TokenLogprob> logprobs = std::move(news.logprobs);
  auto chunk = [&](const std::string& text, const ojson& tool_calls) {
    const bool ok =
        write_choice(choice_json(st.head, ChoiceForm::Delta, index, text, logprobs, nullptr, tok, tool_calls));
    logprobs.clear();
    return ok;
  };
  for (const ToolStreamDelta& d : tool_stream_deltas(pieces, calls, [this] { return new_tool_call_id(); })) {
    if (!chunk(d.content, d.tool_calls)) return false;
  }
  if (!logprobs.empty() && !chunk("", nullptr)) return false;
  if (news.finish) {
    const char* finish = calls > 0 ? "tool_calls" : finish_reason_name(news.reason);
    return write_choice(choice_json(st.head, ChoiceForm::Delta, index, "", {}, finish, tok));
  }
  return true;
}

void ApiServer::handle_models(const httplib::Request& req, httplib::Response& res) {
  if (!authorized(req, res)) return;
  ojson model = {{"id", model_name_},
                 {"object", "model"},
                 {"created", created_},
                 {"owned_by", "tpinfer"},
                 {"root", model_name_},
                 {"parent", nullptr},
                 {"max_model_len", max_model_len()}};
  if (req.matches.size() > 1) {
    const std::string id = req.matches[1];
    if (id != model_name_) return send_error(res, ApiError::model_not_found(id));
    return send_json(res, 200, model);
  }
  send_json(res, 200, {{"object", "list"}, {"data", ojson::array({model})}});
}

void ApiServer::handle_tokenize(const httplib::Request& req, httplib::Response& res) {
  if (draining_) return send_error(res, shutting_down());
  TokenizeParse parsed = parse_tokenize_request(req.body, limits_);
  if (const ApiError* e = std::get_if<ApiError>(&parsed)) return send_error(res, *e);
  const TokenizeRequest& r = std::get<TokenizeRequest>(parsed);
  if (!r.model.empty() && r.model != model_name_) return send_error(res, ApiError::model_not_found(r.model));
  std::vector<int32_t> ids;
  if (r.is_chat) {
    try {
      ojson messages = r.messages;
      prepare_messages_for_format(tool_format_, messages);
      ids = chat_->tokens(messages, r.add_generation_prompt, r.chat_template_kwargs, r.tools);
    } catch (const TemplateFailure& e) {
      return send_error(res, ApiError::invalid(std::string("The chat template failed: ") + e.what(), "messages"));
    }
  } else {
    ids = engine_.tokenizer().encode(r.prompt, r.add_special_tokens, /*parse_special=*/true);
  }
  send_json(res, 200, {{"count", ids.size()}, {"max_model_len", max_model_len()}, {"tokens", ids}});
}

void ApiServer::handle_detokenize(const httplib::Request& req, httplib::Response& res) {
  if (draining_) return send_error(res, shutting_down());
  DetokenizeParse parsed = parse_detokenize_request(req.body, limits_);
  if (const ApiError* e = std::get_if<ApiError>(&parsed)) return send_error(res, *e);
  const DetokenizeRequest& r = std::get<DetokenizeRequest>(parsed);
  if (!r.model.empty() && r.model != model_name_) return send_error(res, ApiError::model_not_found(r.model));
  send_json(res, 200, {{"prompt", engine_.tokenizer().decode(r.tokens)}});
}

void ApiServer::cancel(CompletionInFlight& st) {
  if (st.channel.abandoned.exchange(true)) return;
  std::vector<Placement> placed;
  {
    std::lock_guard<std::mutex> lock(st.channel.mutex);
    for (const auto& s : st.seqs) {
      if (s->finished) continue;
      metrics_.count_cancelled();
      if (s->id != 0) placed.push_back({s->replica, s->id});
    }
  }
  // A sequence in the middle of a step ends at its next token instead (its
  // token callback sees `abandoned`); either way its blocks are freed.
  for (const Placement& where : placed) pool_.cancel(where);
}

}  // namespace tpinfer::server
