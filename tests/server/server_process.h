// Test helpers for the HTTP server: a `tpinfer serve` child process on a free
// port of 127.0.0.1 (RAII: killed and reaped however the test ends), and small
// HTTP helpers over httplib::Client (JSON posts, server-sent-event streams).
#pragma once

#include <gtest/gtest.h>
#include <fcntl.h>
#include <httplib.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "test_util.h"

extern char** environ;

namespace tpinfer::testing {

inline std::string bible_model() { return std::string(TPINFER_SOURCE_DIR) + "/models/bible-q8_0.gguf"; }

inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// `tpinfer serve --host 127.0.0.1 --port 0 --no-pin ARGS...`, its output in a
// log file. The constructor returns once /health answers 200 (or fails the test).
class ServerProcess {
 public:
  explicit ServerProcess(const std::vector<std::string>& args, double start_timeout_s = 180) {
    log_path_ = dir_.file("server.log");
    std::vector<std::string> argv = {binary(), "serve", "--host", "127.0.0.1", "--port", "0", "--no-pin"};
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    const int rc = posix_spawn(&pid_, argv[0].c_str(), &actions, nullptr, cargv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) {
      pid_ = -1;
      ADD_FAILURE() << "cannot start " << argv[0] << ": " << std::strerror(rc);
      return;
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(start_timeout_s);
    while (std::chrono::steady_clock::now() < deadline) {
      if (!running()) {
        ADD_FAILURE() << "the server exited early (status " << status_ << "):\n" << log();
        return;
      }
      const std::string text = log();
      const size_t at = text.find("listening on http://127.0.0.1:");
      if (at != std::string::npos) {
        const size_t p = at + std::string("listening on http://127.0.0.1:").size();
        const size_t end = text.find('\n', p);
        if (end != std::string::npos) {
          port_ = std::stoi(text.substr(p, end - p));
          httplib::Client c("127.0.0.1", port_);
          c.set_connection_timeout(2);
          auto res = c.Get("/health");
          if (res && res->status == 200) return;
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ADD_FAILURE() << "the server did not become healthy in " << start_timeout_s << " s:\n" << log();
  }

  ~ServerProcess() {
    if (pid_ > 0 && running()) {
      kill(pid_, SIGKILL);
      int st = 0;
      waitpid(pid_, &st, 0);
    }
  }
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  bool ok() const { return pid_ > 0 && port_ > 0; }
  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  std::string log() const { return read_text(log_path_); }

  std::unique_ptr<httplib::Client> client(int read_timeout_s = 300) const {
    auto c = std::make_unique<httplib::Client>("127.0.0.1", port_);
    c->set_read_timeout(read_timeout_s, 0);
    c->set_write_timeout(60, 0);
    c->set_connection_timeout(10, 0);
    return c;
  }

  // Sends `sig` and waits up to `timeout_s` for the exit; returns the exit code
  // (128 + signal when killed by one; -1 on timeout).
  int signal_and_wait(int sig, double timeout_s) {
    if (pid_ <= 0) return -1;
    kill(pid_, sig);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    while (std::chrono::steady_clock::now() < deadline) {
      if (!running()) return exit_code();
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return -1;
  }

 private:
  bool running() {
    if (exited_) return false;
    int st = 0;
    const pid_t r = waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
      exited_ = true;
      status_ = st;
      return false;
    }
    return true;
  }
  int exit_code() const {
    if (WIFEXITED(status_)) return WEXITSTATUS(status_);
    if (WIFSIGNALED(status_)) return 128 + WTERMSIG(status_);
    return -1;
  }

  TempDir dir_;
  std::string log_path_;
  pid_t pid_ = -1;
  int port_ = 0;
  bool exited_ = false;
  int status_ = 0;
};

struct HttpResult {
  int status = -1;  // -1: no response
  nlohmann::json body;
  std::string raw;
};

inline HttpResult post_json(httplib::Client& c, const std::string& path, const std::string& body,
                            const httplib::Headers& headers = {}) {
  HttpResult r;
  auto res = c.Post(path.c_str(), headers, body, "application/json");
  if (!res) return r;
  r.status = res->status;
  r.raw = res->body;
  r.body = nlohmann::json::parse(res->body, nullptr, /*allow_exceptions=*/false);
  return r;
}

inline HttpResult post_json(httplib::Client& c, const std::string& path, const nlohmann::json& body,
                            const httplib::Headers& headers = {}) {
  return post_json(c, path, body.dump(), headers);
}

inline HttpResult get(httplib::Client& c, const std::string& path, const httplib::Headers& headers = {}) {
  HttpResult r;
  auto res = c.Get(path.c_str(), headers);
  if (!res) return r;
  r.status = res->status;
  r.raw = res->body;
  r.body = nlohmann::json::parse(res->body, nullptr, /*allow_exceptions=*/false);
  return r;
}

// A streamed request: the events' JSON payloads in order, whether "[DONE]" came,
// and the HTTP status. on_event may return false to hang up mid-stream.
struct StreamResult {
  int status = -1;
  std::string content_type;
  std::vector<nlohmann::json> events;
  bool done = false;
  bool hung_up = false;
  std::string raw;
  std::string error;  // httplib's error, when the exchange failed
};

inline StreamResult post_stream(httplib::Client& c, const std::string& path, const nlohmann::json& body,
                                const std::function<bool(const nlohmann::json&)>& on_event = {}) {
  StreamResult out;
  std::string buffer;
  httplib::Request req;
  req.method = "POST";
  req.path = path;
  req.body = body.dump();
  req.set_header("Content-Type", "application/json");
  req.response_handler = [&](const httplib::Response& res) {
    out.status = res.status;
    out.content_type = res.get_header_value("Content-Type");
    return true;
  };
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    out.raw.append(data, n);
    buffer.append(data, n);
    for (size_t at; (at = buffer.find("\n\n")) != std::string::npos;) {
      const std::string event = buffer.substr(0, at);
      buffer.erase(0, at + 2);
      if (event.rfind("data: ", 0) != 0) continue;
      const std::string payload = event.substr(6);
      if (payload == "[DONE]") {
        out.done = true;
        continue;
      }
      out.events.push_back(nlohmann::json::parse(payload, nullptr, false));
      if (on_event && !on_event(out.events.back())) {
        out.hung_up = true;
        return false;
      }
    }
    return true;
  };
  auto res = c.send(req);
  if (res && out.status < 0) out.status = res->status;
  if (res.error() != httplib::Error::Success) out.error = httplib::to_string(res.error());
  return out;
}

// The text of a streamed completion or chat completion, per choice index.
inline std::vector<std::string> stream_texts(const StreamResult& s, size_t choices = 1) {
  std::vector<std::string> texts(choices);
  for (const auto& e : s.events) {
    if (!e.contains("choices")) continue;
    for (const auto& c : e["choices"]) {
      const size_t i = c["index"].get<size_t>();
      if (i >= texts.size()) texts.resize(i + 1);
      if (c.contains("text")) texts[i] += c["text"].get<std::string>();
      if (c.contains("delta") && c["delta"].contains("content")) texts[i] += c["delta"]["content"].get<std::string>();
    }
  }
  return texts;
}

// The value of an unlabelled metric (or one whose labels are given exactly,
// e.g. `name{collective="all_reduce"}`), -1 when absent.
inline double metric_value(const std::string& metrics, const std::string& name) {
  std::istringstream in(metrics);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
  }
  return -1;
}

// /metrics once the scheduler is idle (no sequence running or waiting): its
// gauges are updated at the end of the step in which a request finished,
// which may come just after the response went out.
inline std::string idle_metrics(httplib::Client& c, double timeout_s = 30) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  std::string m;
  do {
    auto res = c.Get("/metrics");
    m = res ? res->body : "";
    if (metric_value(m, "tpinfer_num_requests_running") == 0 && metric_value(m, "tpinfer_num_requests_waiting") == 0) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  } while (std::chrono::steady_clock::now() < deadline);
  return m;
}

}  // namespace tpinfer::testing
