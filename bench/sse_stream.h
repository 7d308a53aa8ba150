// One streamed OpenAI-API request for the load generators (loadgen, chatbench):
// POSTs a JSON body, splits the server-sent events, and hands each data event
// but [DONE] to the caller as JSON. An error event, a failed request, a status
// other than 200 or a stream without [DONE] is the returned error text ("" when
// the request went well).
#pragma once

#include <httplib.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <string>

namespace tpinfer::bench {

inline std::string post_stream(httplib::Client& client, const std::string& path, const nlohmann::json& body,
                               const std::string& api_key, const std::function<void(const nlohmann::json&)>& on_event) {
  httplib::Request req;
  req.method = "POST";
  req.path = path;
  req.body = body.dump();
  req.set_header("Content-Type", "application/json");
  if (!api_key.empty()) req.set_header("Authorization", "Bearer " + api_key);
  std::string buffer, error;
  int status = 0;
  bool done = false;
  req.response_handler = [&](const httplib::Response& res) {
    status = res.status;
    return true;
  };
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    buffer.append(data, n);
    for (size_t at; (at = buffer.find("\n\n")) != std::string::npos;) {
      const std::string event = buffer.substr(0, at);
      buffer.erase(0, at + 2);
      if (event.rfind("data: ", 0) != 0) continue;
      const std::string payload = event.substr(6);
      if (payload == "[DONE]") {
        done = true;
        continue;
      }
      const nlohmann::json e = nlohmann::json::parse(payload, nullptr, false);
      if (e.is_discarded()) continue;
      if (e.contains("error")) error = e["error"].value("message", "error event");
      on_event(e);
    }
    return true;
  };
  auto res = client.send(req);
  if (!res) return "HTTP error: " + httplib::to_string(res.error());
  if (status != 200) return "HTTP status " + std::to_string(status) + ": " + res->body.substr(0, 200);
  if (!done) return "the stream ended without [DONE]";
  return error;
}

}  // namespace tpinfer::bench
