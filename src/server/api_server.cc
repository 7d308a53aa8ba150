#include "server/api_server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "core/thread_pool.h"
#include "server/stop_matcher.h"

namespace tpinfer::server {

using ojson = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

namespace {

std::string dump(const ojson& j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }

void send_json(httplib::Response& res, int status, const ojson& body) {
  res.status = status;
  res.set_content(dump(body), "application/json");
}

void send_error(httplib::Response& res, const ApiError& e) { send_json(res, e.status, e.to_json()); }

ApiError server_error(int status, std::string message, std::string code = "") {
  ApiError e;
  e.status = status;
  e.type = status == 503 ? "service_unavailable" : "server_error";
  e.message = std::move(message);
  e.code = std::move(code);
  return e;
}

ApiError shutting_down() { return server_error(503, "The server is shutting down.", "service_unavailable"); }

// The 64-bit finalizer of SplitMix64: decorrelates seeds that differ by one.
uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

ojson usage_json(int64_t prompt, int64_t completion) {
  return {{"prompt_tokens", prompt}, {"completion_tokens", completion}, {"total_tokens", prompt + completion}};
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

struct TokenLogprob {
  int32_t token = -1;
  float logprob = 0;
  std::vector<std::pair<int32_t, float>> top;
  size_t text_offset = 0;  // bytes into the completion text where the token's text begins
};

// One choice of a request: filled by the scheduler thread's callbacks, drained
// by the HTTP thread.
struct ApiServer::SequenceOut {
  SequenceOut(const Tokenizer& tok, bool skip_special, std::vector<std::string> stops)
      : decoder(tok, skip_special), stop(std::move(stops)) {}

  // Scheduler thread only.
  StreamDecoder decoder;
  StopMatcher stop;
  Clock::time_point submitted;
  Clock::time_point last_token;
  bool seen_token = false;
  bool cut_by_cancel = false;
  size_t text_bytes = 0;

  // Under RequestState::mutex.
  uint64_t id = 0;      // in its replica's scheduler
  size_t replica = 0;
  std::string text;                    // released text the HTTP thread has not taken yet
  std::vector<TokenLogprob> logprobs;  // likewise
  int64_t completion_tokens = 0;
  bool finished = false;
  bool finish_reported = false;  // streaming: the final chunk went out
  FinishReason reason = FinishReason::Stop;
  std::string error;
};

struct ApiServer::RequestState {
  Endpoint endpoint = Endpoint::Completions;
  bool include_usage = false;
  int logprobs = -1;
  std::string id;
  int64_t created = 0;
  int64_t prompt_tokens = 0;

  std::mutex mutex;
  std::condition_variable cv;
  std::vector<std::unique_ptr<SequenceOut>> seqs;
  std::atomic<bool> abandoned{false};

  bool all_finished() const {  // with `mutex` held
    for (const auto& s : seqs) {
      if (!s->finished) return false;
    }
    return true;
  }
  bool all_finished_locked() {
    std::lock_guard<std::mutex> lock(mutex);
    return all_finished();
  }
};

namespace {

Engine& first_engine(const std::vector<Engine*>& engines) {
  if (engines.empty() || engines[0] == nullptr) throw ConfigError("the server needs at least one engine");
  return *engines[0];
}

}  // namespace

ApiServer::ApiServer(Engine& engine, ServerOptions options)
    : ApiServer(std::vector<Engine*>{&engine}, std::move(options)) {}

ApiServer::ApiServer(const std::vector<Engine*>& engines, ServerOptions options)
    : engine_(first_engine(engines)), options_(std::move(options)), rng_(std::random_device{}()) {
  const int context = engine_.config().max_context;
  if (context > 0 && options_.scheduler.max_model_len > context) {
    throw ConfigError(cat("--max-model-len ", options_.scheduler.max_model_len,
                          " is longer than the model's context of ", context, " tokens"));
  }
  for (Engine* e : engines) {
    if (e == nullptr || e->config().vocab != engine_.config().vocab || e->config().n_layers != engine_.config().n_layers) {
      throw ConfigError("the replicas of a data-parallel server must hold the same model");
    }
    auto r = std::make_unique<Replica>();
    r->engine = e;
    r->scheduler = std::make_unique<Scheduler>(*e, options_.scheduler);
    max_model_len_ = replicas_.empty() ? r->scheduler->options().max_model_len
                                       : std::min<int64_t>(max_model_len_, r->scheduler->options().max_model_len);
    replicas_.push_back(std::move(r));
  }
  const Tokenizer& tok = engine_.tokenizer();
  model_name_ = options_.served_model_name;
  if (model_name_.empty()) model_name_ = engine_.config().name;
  if (model_name_.empty()) model_name_ = std::filesystem::path(engine_.source().path()).filename().string();

  chat_ = std::make_unique<ChatFormatter>(tok, options_.chat_template);

  limits_.max_model_len = max_model_len_;
  limits_.vocab_size = std::min<int32_t>(engine_.config().vocab, tok.vocab_size());
  created_ = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
                 .count();

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

ApiServer::~ApiServer() { stop_schedulers(); }

void ApiServer::stop_schedulers() {
  for (auto& r : replicas_) {
    if (!r->thread.joinable()) continue;
    {
      std::lock_guard<std::mutex> lock(r->loop_mutex);
      r->stop_loop = true;
    }
    r->loop_cv.notify_all();
    r->thread.join();
  }
}

size_t ApiServer::pick_replica() const {
  size_t best = 0;
  int best_load = 0;
  for (size_t i = 0; i < replicas_.size(); ++i) {
    const int load = replicas_[i]->scheduler->unfinished();
    if (i == 0 || load < best_load) {
      best = i;
      best_load = load;
    }
  }
  return best;
}

std::vector<SchedulerMetrics> ApiServer::scheduler_metrics() const {
  std::vector<SchedulerMetrics> m;
  for (const auto& r : replicas_) m.push_back(r->scheduler->metrics());
  return m;
}

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
  using httplib::Request;
  using httplib::Response;
  http_->Post("/v1/completions",
              [this](const Request& req, Response& res) { handle_generation(Endpoint::Completions, req, res); });
  http_->Post("/v1/chat/completions",
              [this](const Request& req, Response& res) { handle_generation(Endpoint::ChatCompletions, req, res); });
  http_->Get("/v1/models", [this](const Request& req, Response& res) { handle_models(req, res); });
  http_->Get(R"(/v1/models/(.+))", [this](const Request& req, Response& res) { handle_models(req, res); });
  http_->Post("/tokenize", [this](const Request& req, Response& res) { handle_tokenize(req, res); });
  http_->Post("/detokenize", [this](const Request& req, Response& res) { handle_detokenize(req, res); });
  http_->Get("/health", [this](const Request&, Response& res) {
    if (draining_) {
      send_error(res, shutting_down());
      return;
    }
    res.status = 200;
  });
  http_->Get("/metrics", [this](const Request&, Response& res) {
    res.status = 200;
    res.set_content(metrics_.render(scheduler_metrics()), "text/plain; version=0.0.4; charset=utf-8");
  });

  // Statuses httplib produces itself (unknown route, body too large, malformed
  // HTTP) get the OpenAI error JSON too; responses that already have a body
  // (the handlers' own errors) pass through.
  http_->set_error_handler(httplib::Server::HandlerWithResponse([this](const Request& req, Response& res) {
    if (!res.body.empty() || res.is_chunked_content_provider_) return httplib::Server::HandlerResponse::Unhandled;
    ApiError e;
    e.status = res.status;
    if (res.status == 404) {
      e.message = "Not found: " + req.method + " " + req.path;
      e.code = "not_found";
    } else if (res.status == 413) {
      e.message = "The request body is larger than the server accepts (" + std::to_string(options_.max_body_bytes) +
                  " bytes).";
      e.code = "request_too_large";
    } else if (res.status >= 500) {
      e = server_error(res.status, "Internal server error.");
    } else {
      e.message = "Bad request.";
    }
    send_error(res, e);
    return httplib::Server::HandlerResponse::Handled;
  }));
  http_->set_exception_handler([](const Request&, Response& res, std::exception_ptr ep) {
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
      [this](const Request& req, Response& res) { metrics_.count_request(req.path, res.status); });
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

void ApiServer::wake_scheduler(size_t replica) {
  Replica& r = *replicas_[replica];
  {
    std::lock_guard<std::mutex> lock(r.loop_mutex);
    r.work_pending = true;
  }
  r.loop_cv.notify_one();
}

void ApiServer::scheduler_loop(size_t replica) {
  Replica& r = *replicas_[replica];
  for (;;) {
    bool busy = false;
    try {
      busy = r.scheduler->step();
    } catch (const std::exception& e) {
      // The sequences of the failed step got FinishReason::Error; the others go on.
      std::fprintf(stderr, "error: engine step failed (replica %zu): %s\n", replica, e.what());
      busy = true;
    }
    // The engine's counters: this thread, between steps.
    metrics_.set_parallel(replica, r.engine->parallel_stats());
    metrics_.set_expert_load(replica, r.engine->expert_load());
    std::unique_lock<std::mutex> lock(r.loop_mutex);
    if (!busy) r.loop_cv.wait(lock, [&] { return r.work_pending || r.stop_loop; });
    r.work_pending = false;
    if (r.stop_loop) break;
  }
  // Whatever is left (nothing after a drain) ends as cancelled, callbacks included.
  r.scheduler->stop(/*drain=*/false);
  r.scheduler->run();
}

void ApiServer::run() {
  for (size_t i = 0; i < replicas_.size(); ++i) {
    replicas_[i]->thread = std::thread([this, i] { scheduler_loop(i); });
  }
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

  std::vector<std::shared_ptr<RequestState>> left;
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
  stop_schedulers();
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

uint64_t ApiServer::random_u64() {
  std::lock_guard<std::mutex> lock(rng_mutex_);
  return rng_();
}


std::shared_ptr<ApiServer::RequestState> ApiServer::start(const GenerationRequest& request,
                                                          const std::vector<std::vector<int32_t>>& prompts,
                                                          const std::vector<int64_t>& max_tokens) {
  const Tokenizer& tok = engine_.tokenizer();
  auto st = std::make_shared<RequestState>();
  st->endpoint = request.endpoint;
  st->include_usage = request.include_usage;
  st->logprobs = request.logprobs;
  st->id = new_id(request.endpoint == Endpoint::ChatCompletions ? "chatcmpl" : "cmpl");
  st->created =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  for (const auto& p : prompts) st->prompt_tokens += static_cast<int64_t>(p.size());
  for (size_t p = 0; p < prompts.size(); ++p) {
    for (int j = 0; j < request.n; ++j) {
      st->seqs.push_back(std::make_unique<SequenceOut>(tok, request.skip_special_tokens, request.stop));
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
    SequenceSpec r;
    r.prompt = prompts[p];
    r.max_tokens = static_cast<int>(max_tokens[p]);
    r.stop_at_eog = !request.ignore_eos;
    r.top_logprobs = request.logprobs;
    r.sampling.temperature = static_cast<float>(request.temperature);
    r.sampling.top_p = static_cast<float>(request.top_p);
    r.sampling.top_k = request.top_k;
    r.sampling.min_p = static_cast<float>(request.min_p);
    r.sampling.repeat_penalty = static_cast<float>(request.repetition_penalty);
    r.sampling.presence_penalty = static_cast<float>(request.presence_penalty);
    r.sampling.frequency_penalty = static_cast<float>(request.frequency_penalty);
    r.sampling.seed = mix64(base_seed + k);
    // The callbacks run on the scheduler thread and hold the state alive.
    r.on_token = [this, st, k](const TokenEvent& ev) -> bool {
      SequenceOut& s = *st->seqs[k];
      if (st->abandoned) {
        s.cut_by_cancel = true;  // finishes as cancelled, not as a stop
        return false;
      }
      const auto now = Clock::now();
      if (s.seen_token) metrics_.observe_itl(seconds_between(s.last_token, now));
      else metrics_.observe_ttft(seconds_between(s.submitted, now));
      s.seen_token = true;
      s.last_token = now;
      const std::string piece = s.decoder.push(ev.token);
      std::string out = s.stop.push(piece);
      TokenLogprob lp;
      if (st->logprobs >= 0) {
        lp.token = ev.token;
        lp.logprob = ev.logprob;
        lp.top = ev.top_logprobs;
        lp.text_offset = s.text_bytes;
      }
      s.text_bytes += piece.size();
      {
        std::lock_guard<std::mutex> lock(st->mutex);
        s.text += out;
        if (st->logprobs >= 0) s.logprobs.push_back(std::move(lp));
        s.completion_tokens += 1;
      }
      st->cv.notify_all();
      return !s.stop.stopped();
    };
    r.on_finish = [this, st, k](FinishReason reason, const std::string& error) {
      SequenceOut& s = *st->seqs[k];
      std::string tail;
      if (s.cut_by_cancel) reason = FinishReason::Cancelled;
      if (reason == FinishReason::Stop || reason == FinishReason::Length) {
        tail = s.stop.push(s.decoder.finish());
        tail += s.stop.flush();
        if (s.stop.stopped()) reason = FinishReason::Stop;
      }
      metrics_.observe_e2e(seconds_between(s.submitted, Clock::now()));
      {
        std::lock_guard<std::mutex> lock(st->mutex);
        s.text += tail;
        s.finished = true;
        s.reason = reason;
        s.error = error;
      }
      st->cv.notify_all();
    };
    st->seqs[k]->submitted = Clock::now();
    try {
      std::lock_guard<std::mutex> dispatch(dispatch_mutex_);
      const size_t replica = pick_replica();
      const uint64_t id = replicas_[replica]->scheduler->submit(std::move(r));
      {
        std::lock_guard<std::mutex> lock(st->mutex);
        st->seqs[k]->id = id;
        st->seqs[k]->replica = replica;
      }
      wake_scheduler(replica);
    } catch (const std::exception& e) {
      // Only a shutdown can get here: the request was validated against the
      // same limits. The sequences already submitted go.
      {
        std::lock_guard<std::mutex> lock(st->mutex);
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

void ApiServer::end_request(const std::shared_ptr<RequestState>& st) {
  std::lock_guard<std::mutex> lock(live_mutex_);
  live_.erase(st);
  live_cv_.notify_all();
}

namespace {

// Token text for logprobs: the token's bytes, special tokens as their text
// (invalid UTF-8 of partial characters becomes U+FFFD when dumped).
ojson bytes_json(const std::string& b) {
  ojson arr = ojson::array();
  for (unsigned char c : b) arr.push_back(static_cast<int>(c));
  return arr;
}

ojson completion_logprobs(const std::vector<TokenLogprob>& lps, const Tokenizer& tok) {
  ojson tokens = ojson::array(), token_logprobs = ojson::array(), top = ojson::array(), offsets = ojson::array();
  for (const TokenLogprob& lp : lps) {
    tokens.push_back(tok.token_bytes(lp.token));
    token_logprobs.push_back(lp.logprob);
    ojson alts = ojson::object();
    for (const auto& [id, l] : lp.top) alts[tok.token_bytes(id)] = l;
    top.push_back(std::move(alts));
    offsets.push_back(lp.text_offset);
  }
  return {{"tokens", tokens}, {"token_logprobs", token_logprobs}, {"top_logprobs", top}, {"text_offset", offsets}};
}

ojson chat_logprobs(const std::vector<TokenLogprob>& lps, const Tokenizer& tok) {
  ojson content = ojson::array();
  for (const TokenLogprob& lp : lps) {
    const std::string b = tok.token_bytes(lp.token);
    ojson alts = ojson::array();
    for (const auto& [id, l] : lp.top) {
      const std::string ab = tok.token_bytes(id);
      alts.push_back({{"token", ab}, {"logprob", l}, {"bytes", bytes_json(ab)}});
    }
    content.push_back({{"token", b}, {"logprob", lp.logprob}, {"bytes", bytes_json(b)}, {"top_logprobs", alts}});
  }
  return {{"content", content}};
}

}  // namespace

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
  if (endpoint == Endpoint::Completions) {
    for (const Prompt& p : request.prompts) {
      prompts.push_back(p.is_tokens ? p.tokens : tok.encode(p.text, /*add_special=*/true, /*parse_special=*/true));
    }
  } else {
    try {
      prompts.push_back(chat_->tokens(request.messages, request.add_generation_prompt, request.chat_template_kwargs));
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

  std::shared_ptr<RequestState> st;
  try {
    st = start(request, prompts, max_tokens);
  } catch (const ApiError& e) {
    return send_error(res, e);
  }
  if (request.stream) return stream(st, res);

  {
    std::unique_lock<std::mutex> lock(st->mutex);
    st->cv.wait(lock, [&] { return st->all_finished(); });
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

ojson ApiServer::full_response(const RequestState& st) const {
  const Tokenizer& tok = engine_.tokenizer();
  const bool chat = st.endpoint == Endpoint::ChatCompletions;
  ojson choices = ojson::array();
  int64_t completion = 0;
  for (size_t i = 0; i < st.seqs.size(); ++i) {
    const SequenceOut& s = *st.seqs[i];
    completion += s.completion_tokens;
    ojson c;
    c["index"] = i;
    if (chat) {
      c["message"] = {{"role", "assistant"}, {"content", s.text}};
      c["logprobs"] = st.logprobs >= 0 ? chat_logprobs(s.logprobs, tok) : ojson(nullptr);
    } else {
      c["text"] = s.text;
      c["logprobs"] = st.logprobs >= 0 ? completion_logprobs(s.logprobs, tok) : ojson(nullptr);
    }
    c["finish_reason"] = finish_reason_name(s.reason);
    choices.push_back(std::move(c));
  }
  ojson out;
  out["id"] = st.id;
  out["object"] = chat ? "chat.completion" : "text_completion";
  out["created"] = st.created;
  out["model"] = model_name_;
  out["choices"] = std::move(choices);
  out["usage"] = usage_json(st.prompt_tokens, completion);
  return out;
}

void ApiServer::stream(const std::shared_ptr<RequestState>& st, httplib::Response& res) {
  struct Cursor {
    bool started = false;
  };
  auto cursor = std::make_shared<Cursor>();
  const bool chat = st->endpoint == Endpoint::ChatCompletions;
  auto chunk = [this, st, chat](ojson choices) {
    ojson c;
    c["id"] = st->id;
    c["object"] = chat ? "chat.completion.chunk" : "text_completion";
    c["created"] = st->created;
    c["model"] = model_name_;
    c["choices"] = std::move(choices);
    if (st->include_usage) c["usage"] = nullptr;
    return "data: " + dump(c) + "\n\n";
  };
  res.status = 200;
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [this, st, cursor, chat, chunk](size_t, httplib::DataSink& sink) -> bool {
        const Tokenizer& tok = engine_.tokenizer();
        auto write = [&](const std::string& data) { return sink.write(data.data(), data.size()); };
        if (!cursor->started) {
          cursor->started = true;
          if (chat) {
            for (size_t i = 0; i < st->seqs.size(); ++i) {
              ojson choice = {{"index", i},
                              {"delta", {{"role", "assistant"}, {"content", ""}}},
                              {"logprobs", nullptr},
                              {"finish_reason", nullptr}};
              if (!write(chunk(ojson::array({choice})))) return false;
            }
          }
        }
        struct Taken {
          std::string text;
          std::vector<TokenLogprob> logprobs;
          bool finish = false;
          FinishReason reason = FinishReason::Stop;
          std::string error;
        };
        std::vector<Taken> taken(st->seqs.size());
        bool all_done = true;
        {
          std::unique_lock<std::mutex> lock(st->mutex);
          auto news = [&] {
            for (const auto& s : st->seqs) {
              if (!s->text.empty() || !s->logprobs.empty() || (s->finished && !s->finish_reported)) return true;
            }
            return false;
          };
          st->cv.wait_for(lock, std::chrono::milliseconds(250), news);
          for (size_t i = 0; i < st->seqs.size(); ++i) {
            SequenceOut& s = *st->seqs[i];
            taken[i].text.swap(s.text);
            taken[i].logprobs.swap(s.logprobs);
            if (s.finished && !s.finish_reported) {
              s.finish_reported = true;
              taken[i].finish = true;
              taken[i].reason = s.reason;
              taken[i].error = s.error;
            }
            if (!s.finish_reported) all_done = false;
          }
        }
        for (size_t i = 0; i < taken.size(); ++i) {
          Taken& t = taken[i];
          const bool failed = t.finish && (t.reason == FinishReason::Error || t.reason == FinishReason::Cancelled);
          if (t.text.empty() && t.logprobs.empty() && !t.finish) continue;
          if (!t.text.empty() || !t.logprobs.empty() || (t.finish && !failed)) {
            ojson choice;
            choice["index"] = i;
            if (chat) {
              choice["delta"] = t.text.empty() ? ojson::object() : ojson{{"content", t.text}};
              choice["logprobs"] = st->logprobs >= 0 ? chat_logprobs(t.logprobs, tok) : ojson(nullptr);
            } else {
              choice["text"] = t.text;
              choice["logprobs"] = st->logprobs >= 0 ? completion_logprobs(t.logprobs, tok) : ojson(nullptr);
            }
            choice["finish_reason"] = t.finish && !failed ? ojson(finish_reason_name(t.reason)) : ojson(nullptr);
            if (!write(chunk(ojson::array({choice})))) return false;
          }
          if (failed) {
            const ApiError e = t.reason == FinishReason::Error ? server_error(500, "Generation failed: " + t.error)
                                                               : shutting_down();
            if (!write("data: " + dump(e.to_json()) + "\n\n")) return false;
          }
        }
        if (all_done) {
          if (st->include_usage) {
            int64_t completion = 0;
            {
              std::lock_guard<std::mutex> lock(st->mutex);
              for (const auto& s : st->seqs) completion += s->completion_tokens;
            }
            ojson c;
            c["id"] = st->id;
            c["object"] = chat ? "chat.completion.chunk" : "text_completion";
            c["created"] = st->created;
            c["model"] = model_name_;
            c["choices"] = ojson::array();
            c["usage"] = usage_json(st->prompt_tokens, completion);
            if (!write("data: " + dump(c) + "\n\n")) return false;
          }
          if (!write("data: [DONE]\n\n")) return false;
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
      ids = chat_->tokens(r.messages, r.add_generation_prompt, ojson::object());
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

void ApiServer::cancel(RequestState& st) {
  if (st.abandoned.exchange(true)) return;
  std::vector<std::pair<size_t, uint64_t>> ids;  // replica, id
  {
    std::lock_guard<std::mutex> lock(st.mutex);
    for (const auto& s : st.seqs) {
      if (s->finished) continue;
      metrics_.count_cancelled();
      if (s->id != 0) ids.push_back({s->replica, s->id});
    }
  }
  // A sequence in the middle of a step ends at its next token instead (its
  // token callback sees `abandoned`); either way its blocks are freed.
  for (const auto& [replica, id] : ids) {
    replicas_[replica]->scheduler->cancel(id);
    wake_scheduler(replica);
  }
}

}  // namespace tpinfer::server
