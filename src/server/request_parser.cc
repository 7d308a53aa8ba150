#include "server/request_parser.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <sstream>

#include "engine/speculative.h"

namespace tpinfer::server {

using json = nlohmann::json;

nlohmann::ordered_json ApiError::to_json() const {
  nlohmann::ordered_json e;
  e["message"] = message;
  e["type"] = type;
  e["param"] = param.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(param);
  e["code"] = code.empty() ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(code);
  return {{"error", e}};
}

ApiError ApiError::invalid(std::string message, std::string param, std::string code) {
  ApiError e;
  e.status = 400;
  e.message = std::move(message);
  e.param = std::move(param);
  e.code = std::move(code);
  return e;
}

ApiError ApiError::model_not_found(const std::string& model) {
  ApiError e;
  e.status = 404;
  e.message = "The model `" + model + "` does not exist.";
  e.param = "model";
  e.code = "model_not_found";
  return e;
}

namespace {

// Parsing throws ApiError internally; the public functions turn it into a value.
[[noreturn]] void fail(const std::string& message, const std::string& param, const std::string& code = "") {
  throw ApiError::invalid(message, param, code);
}

std::string format_number(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

json parse_body(std::string_view body) {
  // The callback bounds the nesting depth before a deep body can cost stack or
  // time anywhere downstream (copies and dumps of nlohmann values recurse).
  const json::parser_callback_t limit_depth = [](int depth, json::parse_event_t, json&) {
    if (depth > kMaxJsonDepth) {
      fail("The JSON body nests deeper than " + std::to_string(kMaxJsonDepth) + " levels.", "");
    }
    return true;
  };
  json root;
  try {
    root = json::parse(body.begin(), body.end(), limit_depth);
  } catch (const json::exception& e) {
    fail(std::string("We could not parse the JSON body of your request: ") + e.what() +
             ". The API expects a JSON object as the request body.",
         "");
  }
  if (!root.is_object()) fail("The request body must be a JSON object.", "");
  return root;
}

const char* type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::object:
      return "an object";
    case json::value_t::array:
      return "an array";
    case json::value_t::string:
      return "a string";
    case json::value_t::boolean:
      return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
      return "an integer";
    case json::value_t::number_float:
      return "a number";
    default:
      return "an unsupported value";
  }
}

// An integer, from a JSON integer or a float with no fraction. Empty when `v` is
// not one or does not fit in int64.
std::optional<int64_t> as_int64(const json& v) {
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
    return static_cast<int64_t>(u);
  }
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (!std::isfinite(d) || d != std::floor(d) || d < -9.2e18 || d > 9.2e18) return std::nullopt;
    return static_cast<int64_t>(d);
  }
  return std::nullopt;
}

// Typed, range-checked access to the fields of one JSON object. `prefix` names
// the object in messages ("stream_options.").
class Fields {
 public:
  Fields(const json& obj, std::string prefix = "") : obj_(obj), prefix_(std::move(prefix)) {}

  // The field, or null when absent or JSON null.
  const json* get(const char* name) const {
    const auto it = obj_.find(name);
    if (it == obj_.end() || it->is_null()) return nullptr;
    return &*it;
  }
  std::string param(const char* name) const { return prefix_ + name; }

  std::optional<bool> boolean(const char* name) const {
    const json* v = get(name);
    if (!v) return std::nullopt;
    if (!v->is_boolean()) fail(quote(name) + " must be a boolean, got " + type_name(*v) + ".", param(name));
    return v->get<bool>();
  }

  std::optional<int64_t> integer(const char* name, int64_t lo, int64_t hi) const {
    const json* v = get(name);
    if (!v) return std::nullopt;
    const std::optional<int64_t> i = as_int64(*v);
    if (!i) fail(quote(name) + " must be an integer, got " + type_name(*v) + ".", param(name));
    if (*i < lo || *i > hi) {
      fail(quote(name) + " must be between " + std::to_string(lo) + " and " + std::to_string(hi) + ", got " +
               std::to_string(*i) + ".",
           param(name));
    }
    return i;
  }

  // A number in [lo, hi] (or (lo, hi] with open_lo).
  std::optional<double> number(const char* name, double lo, double hi, bool open_lo = false) const {
    const json* v = get(name);
    if (!v) return std::nullopt;
    if (!v->is_number()) fail(quote(name) + " must be a number, got " + type_name(*v) + ".", param(name));
    const double d = v->get<double>();
    if (!std::isfinite(d) || (open_lo ? d <= lo : d < lo) || d > hi) {
      fail(quote(name) + " must be " + (open_lo ? "greater than " : "at least ") + format_number(lo) + " and at most " +
               format_number(hi) + ", got " + format_number(d) + ".",
           param(name));
    }
    return d;
  }

  std::optional<std::string> string(const char* name) const {
    const json* v = get(name);
    if (!v) return std::nullopt;
    if (!v->is_string()) fail(quote(name) + " must be a string, got " + type_name(*v) + ".", param(name));
    return v->get<std::string>();
  }

  const json* object(const char* name) const {
    const json* v = get(name);
    if (v && !v->is_object()) fail(quote(name) + " must be an object, got " + type_name(*v) + ".", param(name));
    return v;
  }

  std::string quote(const char* name) const { return "'" + prefix_ + name + "'"; }

 private:
  const json& obj_;
  std::string prefix_;
};

int32_t token_id(const json& v, const ParserLimits& limits, const std::string& param) {
  const std::optional<int64_t> id = as_int64(v);
  if (!id) fail("'" + param + "' must hold integer token ids, got " + type_name(v) + ".", param);
  const int64_t hi = limits.vocab_size > 0 ? limits.vocab_size : std::numeric_limits<int32_t>::max();
  if (*id < 0 || *id >= hi) {
    fail("Token id " + std::to_string(*id) + " is outside the vocabulary (0.." + std::to_string(hi - 1) + ").", param);
  }
  return static_cast<int32_t>(*id);
}

std::vector<int32_t> token_list(const json& arr, const ParserLimits& limits, const std::string& param) {
  std::vector<int32_t> ids;
  ids.reserve(arr.size());
  for (const json& v : arr) ids.push_back(token_id(v, limits, param));
  return ids;
}

// prompt: "text" | ["text", ...] | [id, ...] | [[id, ...], ...]
std::vector<Prompt> parse_prompts(const Fields& f, const ParserLimits& limits) {
  const json* p = f.get("prompt");
  if (!p) fail("'prompt' is required.", "prompt");
  std::vector<Prompt> out;
  auto add_text = [&](const json& s) {
    if (s.get_ref<const std::string&>().empty()) fail("'prompt' must not be empty.", "prompt");
    Prompt pr;
    pr.text = s.get<std::string>();
    out.push_back(std::move(pr));
  };
  auto add_tokens = [&](const json& arr) {
    if (arr.empty()) fail("'prompt' must not be empty.", "prompt");
    Prompt pr;
    pr.is_tokens = true;
    pr.tokens = token_list(arr, limits, "prompt");
    out.push_back(std::move(pr));
  };
  if (p->is_string()) {
    add_text(*p);
  } else if (p->is_array()) {
    if (p->empty()) fail("'prompt' must not be empty.", "prompt");
    const json& first = p->front();
    if (first.is_number()) {
      add_tokens(*p);
    } else {
      if (static_cast<int64_t>(p->size()) > limits.max_prompts) {
        fail("'prompt' holds " + std::to_string(p->size()) + " prompts; at most " + std::to_string(limits.max_prompts) +
                 " are allowed.",
             "prompt");
      }
      for (const json& item : *p) {
        if (item.is_string()) {
          add_text(item);
        } else if (item.is_array()) {
          add_tokens(item);
        } else {
          fail(
              "'prompt' must be a string, an array of strings, an array of token ids or an array of arrays of "
              "token ids.",
              "prompt");
        }
      }
    }
  } else {
    fail(std::string("'prompt' must be a string or an array, got ") + type_name(*p) + ".", "prompt");
  }
  return out;
}

// messages: [{role, content: string | [{type: "text", text}] | null, ...}]
nlohmann::ordered_json parse_messages(const json* messages, const ParserLimits& limits) {
  if (!messages) fail("'messages' is required.", "messages");
  if (!messages->is_array())
    fail(std::string("'messages' must be an array, got ") + type_name(*messages) + ".", "messages");
  if (messages->empty()) fail("'messages' must hold at least one message.", "messages");
  if (messages->size() > limits.max_messages) {
    fail("'messages' holds " + std::to_string(messages->size()) + " messages; at most " +
             std::to_string(limits.max_messages) + " are allowed.",
         "messages");
  }
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  for (size_t i = 0; i < messages->size(); ++i) {
    const json& m = (*messages)[i];
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) fail("'" + where + "' must be an object, got " + std::string(type_name(m)) + ".", where);
    const Fields mf(m, where + ".");
    const std::optional<std::string> role = mf.string("role");
    if (!role || role->empty()) fail("'" + where + ".role' is required.", where + ".role");
    nlohmann::ordered_json content;  // null stays null (an assistant turn with only tool calls)
    const json* c = mf.get("content");
    if (!c) {
      if (*role != "assistant") fail("'" + where + ".content' is required.", where + ".content");
    } else if (c->is_string()) {
      content = c->get<std::string>();
    } else if (c->is_array()) {
      std::string joined;
      for (size_t j = 0; j < c->size(); ++j) {
        const json& part = (*c)[j];
        const std::string pw = where + ".content[" + std::to_string(j) + "]";
        if (!part.is_object()) fail("'" + pw + "' must be an object.", pw);
        const Fields pf(part, pw + ".");
        const std::optional<std::string> type = pf.string("type");
        if (!type) fail("'" + pw + ".type' is required.", pw + ".type");
        if (*type != "text") {
          fail("'" + pw + ".type' is '" + *type + "'; this server supports only text content.", pw + ".type");
        }
        const std::optional<std::string> text = pf.string("text");
        if (!text) fail("'" + pw + ".text' is required.", pw + ".text");
        if (j > 0) joined += "\n";
        joined += *text;
      }
      content = joined;
    } else {
      fail("'" + where + ".content' must be a string or an array of content parts, got " + type_name(*c) + ".",
           where + ".content");
    }
    nlohmann::ordered_json msg = nlohmann::ordered_json::object();
    for (auto it = m.begin(); it != m.end(); ++it) msg[it.key()] = it.value();
    msg["role"] = *role;
    msg["content"] = content;
    out.push_back(std::move(msg));
  }
  return out;
}

std::vector<std::string> parse_stop(const Fields& f, const ParserLimits& limits) {
  const json* s = f.get("stop");
  std::vector<std::string> out;
  if (!s) return out;
  auto add = [&](const json& v) {
    if (!v.is_string()) fail("'stop' must be a string or an array of strings.", "stop");
    const std::string& str = v.get_ref<const std::string&>();
    if (str.empty()) fail("'stop' sequences must not be empty.", "stop");
    if (str.size() > limits.max_stop_bytes) {
      fail("'stop' sequences may be at most " + std::to_string(limits.max_stop_bytes) + " bytes long.", "stop");
    }
    out.push_back(str);
  };
  if (s->is_string()) {
    add(*s);
  } else if (s->is_array()) {
    if (static_cast<int64_t>(s->size()) > limits.max_stop) {
      fail("'stop' may hold at most " + std::to_string(limits.max_stop) + " sequences, got " +
               std::to_string(s->size()) + ".",
           "stop");
    }
    for (const json& v : *s) add(v);
  } else {
    fail(std::string("'stop' must be a string or an array of strings, got ") + type_name(*s) + ".", "stop");
  }
  return out;
}

void parse_common(const Fields& f, GenerationRequest& r, const ParserLimits& limits) {
  if (auto m = f.string("model")) r.model = *m;
  r.n = static_cast<int>(f.integer("n", 1, limits.max_n).value_or(1));
  r.stream = f.boolean("stream").value_or(false);
  if (const json* so = f.object("stream_options")) {
    if (!r.stream) {
      fail("The 'stream_options' parameter is only allowed when 'stream' is enabled.", "stream_options");
    }
    r.include_usage = Fields(*so, "stream_options.").boolean("include_usage").value_or(false);
  }
  r.stop = parse_stop(f, limits);
  r.temperature = f.number("temperature", 0, 2).value_or(1.0);
  r.top_p = f.number("top_p", 0, 1, /*open_lo=*/true).value_or(1.0);
  r.top_k = static_cast<int>(f.integer("top_k", -1, 1 << 30).value_or(0));
  if (r.top_k < 0) r.top_k = 0;
  r.min_p = f.number("min_p", 0, 1).value_or(0.0);
  r.repetition_penalty = f.number("repetition_penalty", 0, 10, /*open_lo=*/true).value_or(1.0);
  r.presence_penalty = f.number("presence_penalty", -2, 2).value_or(0.0);
  r.frequency_penalty = f.number("frequency_penalty", -2, 2).value_or(0.0);
  r.seed = f.integer("seed", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max());
  r.ignore_eos = f.boolean("ignore_eos").value_or(false);
  r.num_speculative_tokens =
      static_cast<int>(f.integer("num_speculative_tokens", 0, kMaxSpeculativeTokens).value_or(-1));
  r.skip_special_tokens = f.boolean("skip_special_tokens").value_or(true);
  if (auto u = f.string("user")) r.user = *u;

  if (const json* lb = f.object("logit_bias"); lb && !lb->empty()) {
    fail("'logit_bias' is not supported by this server.", "logit_bias");
  }
  if (const json* tools = f.get("tools")) {
    if (!tools->is_array()) fail("'tools' must be an array.", "tools");
    if (!tools->empty()) fail("'tools' (function calling) is not supported by this server.", "tools");
  }
  if (const json* rf = f.object("response_format")) {
    const Fields format(*rf, "response_format.");
    const std::string type = format.string("type").value_or("text");
    if (type == "json_object") {
      r.output.kind = OutputFormat::Kind::JsonObject;
    } else if (type == "json_schema") {
      const json* js = format.object("json_schema");
      if (!js) fail("'response_format.json_schema' is required when the type is 'json_schema'.", "response_format");
      const Fields schema(*js, "response_format.json_schema.");
      if (!schema.string("name")) fail("'response_format.json_schema.name' is required.", "response_format");
      r.output.strict = schema.boolean("strict").value_or(false);
      // The schema itself is taken from the body again, keys in order
      // (parse_generation_request); here only its presence and type.
      r.output.kind = schema.object("schema") ? OutputFormat::Kind::JsonSchema : OutputFormat::Kind::JsonObject;
    } else if (type != "text") {
      fail("'response_format.type' must be 'text', 'json_object' or 'json_schema', got '" + type + "'.",
           "response_format");
    }
  }
  if (auto grammar = f.string("grammar")) {
    if (r.output.kind != OutputFormat::Kind::Text) {
      fail("Give either 'grammar' or a 'response_format' other than text, not both.", "grammar");
    }
    if (grammar->empty()) fail("'grammar' is empty.", "grammar");
    r.output.kind = OutputFormat::Kind::Grammar;
    r.output.grammar = *grammar;
  }
}

template <typename T>
std::variant<T, ApiError> guarded(const std::function<T()>& body) {
  try {
    return body();
  } catch (const ApiError& e) {
    return e;
  } catch (const std::exception& e) {
    // A bug, not the client's fault; still a value, never an escape.
    ApiError err;
    err.status = 500;
    err.type = "server_error";
    err.message = std::string("internal error while parsing the request: ") + e.what();
    return err;
  }
}

}  // namespace

GenerationParse parse_generation_request(Endpoint endpoint, std::string_view body, const ParserLimits& limits) {
  return guarded<GenerationRequest>([&] {
    const json root = parse_body(body);
    const Fields f(root);
    GenerationRequest r;
    r.endpoint = endpoint;
    parse_common(f, r, limits);
    if (r.output.kind == OutputFormat::Kind::JsonSchema) {
      // A json object sorts its keys; the schema's properties come out in the
      // order the request gives them, so it is read again, in order.
      r.output.schema = nlohmann::ordered_json::parse(body)["response_format"]["json_schema"]["schema"];
    }

    std::optional<int64_t> max_tokens;
    if (endpoint == Endpoint::Completions) {
      r.prompts = parse_prompts(f, limits);
      max_tokens = f.integer("max_tokens", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max());
      if (auto lp = f.integer("logprobs", 0, limits.max_logprobs)) r.logprobs = static_cast<int>(*lp);
      if (f.boolean("echo").value_or(false)) fail("'echo' is not supported by this server.", "echo");
      if (auto best_of = f.integer("best_of", 1, limits.max_n); best_of && *best_of != r.n && *best_of != 1) {
        fail("'best_of' other than n is not supported by this server.", "best_of");
      }
      if (auto suffix = f.string("suffix"); suffix && !suffix->empty()) {
        fail("'suffix' is not supported by this server.", "suffix");
      }
    } else {
      r.messages = parse_messages(f.get("messages"), limits);
      r.add_generation_prompt = f.boolean("add_generation_prompt").value_or(true);
      if (const json* kw = f.object("chat_template_kwargs")) r.chat_template_kwargs = *kw;
      // max_completion_tokens replaces the deprecated max_tokens; it wins when both are given.
      max_tokens =
          f.integer("max_completion_tokens", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max());
      if (!max_tokens) {
        max_tokens = f.integer("max_tokens", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max());
      }
      const bool logprobs = f.boolean("logprobs").value_or(false);
      const std::optional<int64_t> top = f.integer("top_logprobs", 0, limits.max_logprobs);
      if (top && !logprobs) fail("'top_logprobs' requires 'logprobs' to be true.", "top_logprobs");
      if (logprobs) r.logprobs = static_cast<int>(top.value_or(0));
    }
    if (max_tokens) {
      const char* name = endpoint == Endpoint::ChatCompletions && f.get("max_completion_tokens")
                             ? "max_completion_tokens"
                             : "max_tokens";
      if (*max_tokens < 1)
        fail("'" + std::string(name) + "' must be at least 1, got " + std::to_string(*max_tokens) + ".", name);
      if (*max_tokens > limits.max_model_len) {
        fail("'" + std::string(name) + "' is " + std::to_string(*max_tokens) +
                 ", more than this model's maximum context length of " + std::to_string(limits.max_model_len) +
                 " tokens.",
             name);
      }
      r.max_tokens = max_tokens;
    }
    const int64_t sequences = static_cast<int64_t>(std::max<size_t>(r.prompts.size(), 1)) * r.n;
    if (sequences > limits.max_sequences) {
      fail("The request asks for " + std::to_string(sequences) + " sequences (prompts x n); at most " +
               std::to_string(limits.max_sequences) + " are allowed.",
           "n");
    }
    return r;
  });
}

TokenizeParse parse_tokenize_request(std::string_view body, const ParserLimits& limits) {
  return guarded<TokenizeRequest>([&] {
    const json root = parse_body(body);
    const Fields f(root);
    TokenizeRequest r;
    if (auto m = f.string("model")) r.model = *m;
    if (f.get("messages")) {
      r.is_chat = true;
      r.messages = parse_messages(f.get("messages"), limits);
      r.add_generation_prompt = f.boolean("add_generation_prompt").value_or(true);
      f.boolean("add_special_tokens");  // type-checked; chat prompts get BOS as the chat endpoint does
    } else {
      const std::optional<std::string> prompt = f.string("prompt");
      if (!prompt) fail("'prompt' (or 'messages') is required.", "prompt");
      r.prompt = *prompt;
      r.add_special_tokens = f.boolean("add_special_tokens").value_or(true);
    }
    return r;
  });
}

DetokenizeParse parse_detokenize_request(std::string_view body, const ParserLimits& limits) {
  return guarded<DetokenizeRequest>([&] {
    const json root = parse_body(body);
    const Fields f(root);
    DetokenizeRequest r;
    if (auto m = f.string("model")) r.model = *m;
    const json* t = f.get("tokens");
    if (!t) fail("'tokens' is required.", "tokens");
    if (!t->is_array())
      fail(std::string("'tokens' must be an array of token ids, got ") + type_name(*t) + ".", "tokens");
    r.tokens = token_list(*t, limits, "tokens");
    return r;
  });
}

std::variant<int64_t, ApiError> check_prompt_length(const GenerationRequest& request, int64_t prompt_tokens,
                                                    int64_t max_model_len) {
  const char* param = request.endpoint == Endpoint::ChatCompletions ? "messages" : "prompt";
  if (prompt_tokens <= 0)
    return ApiError::invalid(
        std::string("The ") + (request.endpoint == Endpoint::ChatCompletions ? "messages render" : "prompt encodes") +
            " to no tokens.",
        param);
  if (request.max_tokens) {
    if (prompt_tokens + *request.max_tokens > max_model_len) {
      return ApiError::invalid(
          "This model's maximum context length is " + std::to_string(max_model_len) +
              " tokens. However, you requested " + std::to_string(prompt_tokens + *request.max_tokens) + " tokens (" +
              std::to_string(prompt_tokens) + " in the " + param + ", " + std::to_string(*request.max_tokens) +
              " in the completion). Please reduce the length of the " + param + " or completion.",
          param, "context_length_exceeded");
    }
    return *request.max_tokens;
  }
  if (prompt_tokens >= max_model_len) {
    return ApiError::invalid("This model's maximum context length is " + std::to_string(max_model_len) +
                                 " tokens. However, your " + param + " resulted in " + std::to_string(prompt_tokens) +
                                 " tokens, which leaves no room for the completion. Please reduce the length of "
                                 "the " +
                                 param + ".",
                             param, "context_length_exceeded");
  }
  const int64_t room = max_model_len - prompt_tokens;
  return request.endpoint == Endpoint::Completions ? std::min<int64_t>(16, room) : room;
}

}  // namespace tpinfer::server
