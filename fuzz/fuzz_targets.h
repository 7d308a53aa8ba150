// The fuzz targets: one function per parser, taking arbitrary bytes. Each is
// what a libFuzzer harness in fuzz/ calls and what tests/fuzz/ feeds the
// regression inputs through, so a fixed finding stays fixed in the normal tests.
//
// Contract of every target:
// - Input the parser rejects must be rejected with a tpinfer::Error (FormatError,
//   ConfigError, TemplateError, ...): the target catches those and returns
//   {accepted = false, error = message}.
// - Any other exception (std::out_of_range, nlohmann::json::exception,
//   std::bad_alloc, ...) escapes: under libFuzzer that is a crash, in a unit
//   test a failure. So are crashes, sanitizer reports and leaks.
// - What the parser accepts must keep its promises; a broken one throws
//   InvariantViolation (not an Error, so it escapes too): tensor bytes inside the
//   file and of the size the shape implies, decode(encode(x)) == x where the
//   tokenizer contract says so, the stream decoder agreeing with decode().
//
// The targets write their input into files under `scratch` (a directory the
// caller owns, reused from one input to the next) because the parsers open
// paths. Header-only so that the unit tests need no build change to use them.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "backend/cpu/quant.h"
#include "core/error.h"
#include "core/utf8.h"
#include "formats/gguf.h"
#include "formats/model_source.h"
#include "formats/safetensors.h"
#include "server/request_parser.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace tpinfer::fuzz {

// A broken promise of an accepted input (see the contract above).
class InvariantViolation : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

inline void check(bool ok, const std::string& what) {
  if (!ok) throw InvariantViolation("fuzz invariant violated: " + what);
}

struct Result {
  bool accepted = false;
  std::string error;  // the Error's message when rejected
};

// Separates the files packed into one input of the multi-file targets.
inline constexpr std::string_view kPartSeparator = "\n@@@@\n";

inline std::vector<std::string_view> split_parts(std::string_view in, size_t max_parts) {
  std::vector<std::string_view> parts;
  while (parts.size() + 1 < max_parts) {
    const size_t at = in.find(kPartSeparator);
    if (at == std::string_view::npos) break;
    parts.push_back(in.substr(0, at));
    in.remove_prefix(at + kPartSeparator.size());
  }
  parts.push_back(in);
  return parts;
}

// A directory removed (with its contents) when this object goes away.
class ScratchDir {
 public:
  ScratchDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "tpinfer-fuzz-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed for " + tmpl);
    path_ = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(std::string_view name) const { return path_ + "/" + std::string(name); }

 private:
  std::string path_;
};

inline void write_file(const std::string& path, std::string_view bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!f.good()) throw std::runtime_error("cannot write " + path);
}

// Writes `bytes` to dir/name, or removes dir/name when `present` is false.
inline void put_file(const ScratchDir& dir, std::string_view name, std::string_view bytes, bool present) {
  const std::string path = dir.file(name);
  if (present) {
    write_file(path, bytes);
  } else {
    std::error_code ec;
    std::filesystem::remove(path, ec);
  }
}

inline std::string_view as_text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// A tensor that a reader handed out lies inside its file and holds exactly the
// bytes its type and shape imply.
inline void check_tensor(const TensorInfo& t, uint64_t file_size) {
  check(t.data != nullptr || t.nbytes == 0, "tensor '" + t.name + "' has no data pointer");
  check(t.offset <= file_size && t.nbytes <= file_size - t.offset, "tensor '" + t.name + "' runs past the file");
  uint64_t rows = 1;
  for (size_t i = 0; i + 1 < t.shape.size(); ++i) {
    check(t.shape[i] >= 0, "tensor '" + t.name + "' has a negative dimension");
    rows *= static_cast<uint64_t>(t.shape[i]);
  }
  const uint64_t cols = t.shape.empty() ? 1 : static_cast<uint64_t>(t.shape.back());
  check(row_bytes(t.type, cols) * rows == t.nbytes, "tensor '" + t.name + "' size differs from its shape");
}

// Reads every metadata value through the typed accessors (arrays recursively).
inline size_t touch_value(const GgufValue& v) {
  size_t n = 1;
  (void)v.as_int();
  (void)v.as_float();
  if (const std::string* s = v.as_string()) n += s->size();
  if (const GgufArray* a = v.as_array()) {
    for (const GgufValue& item : a->items) {
      check(item.type == a->elem, "array element type differs from the array's");
      n += touch_value(item);
    }
  }
  return n;
}

// Encodes and decodes a fixed text with a tokenizer that loaded, and checks the
// decoders agree.
inline void exercise_tokenizer(const Tokenizer& tok) {
  static constexpr std::string_view kText = "Hello world! In the beginning <s> 123 \xC3\xA9t\xC3\xA9 \xE4\xB8\xAD";
  const int32_t n = tok.vocab_size();
  check(n >= 0, "negative vocabulary size");
  for (const bool special : {false, true}) {
    const std::vector<int32_t> ids = tok.encode(kText, special, special);
    for (int32_t id : ids) check(id >= 0 && id < n, "encode gave an id outside the vocabulary");
    const std::string text = tok.decode(ids, false);
    StreamDecoder stream(tok, false);
    std::string streamed;
    for (int32_t id : ids) streamed += stream.push(id);
    streamed += stream.finish();
    check(streamed == utf8::sanitize(text), "stream decoder differs from decode()");
  }
  for (int32_t id : {0, n / 2, n - 1}) {
    if (id < 0 || id >= n) continue;
    (void)tok.token_bytes(id, false);
    (void)tok.token_text(id);
    (void)tok.token_type(id);
    (void)tok.is_eog(id);
  }
}

// (a) A GGUF file: open, read all metadata and tensor infos, dequantize the
// first row of the first tensor, and load the model config and tokenizer the
// file holds when it has them.
inline Result gguf(const ScratchDir& dir, const uint8_t* data, size_t size) {
  const std::string path = dir.file("input.gguf");
  write_file(path, as_text(data, size));
  Result r;
  try {
    const std::unique_ptr<GgufFile> g = GgufFile::open(path);
    check(g->file_size() == size, "file size");
    for (const auto& [key, value] : g->metadata()) {
      check(g->find(key) == &value, "metadata lookup of '" + key + "'");
      touch_value(value);
    }
    for (const TensorInfo& t : g->tensors()) {
      check(g->tensor(t.name) == &t, "tensor lookup of '" + t.name + "'");
      check_tensor(t, g->file_size());
    }
    if (!g->tensors().empty()) {
      const TensorInfo& t = g->tensors().front();
      const int64_t cols = t.cols();
      // An empty tensor may have no data pointer at all: nothing to dequantize.
      if (cols > 0 && cpu::quant_supported(t.type) && row_bytes(t.type, static_cast<uint64_t>(cols)) <= t.nbytes) {
        std::vector<float> row(static_cast<size_t>(cols));
        cpu::dequantize_row_ref(t.type, t.data, row.data(), cols);
      }
    }
    r.accepted = true;
    try {  // further layers on top of a valid file: errors here are rejections too
      exercise_tokenizer(*Tokenizer::from_gguf(*g));
    } catch (const Error& e) {
      r.error = e.what();
    }
    try {
      const std::unique_ptr<ModelSource> m = ModelSource::open(path);
      for (const TensorInfo& t : m->tensors()) check_tensor(t, g->file_size());
    } catch (const Error& e) {
      r.error = e.what();
    }
  } catch (const Error& e) {
    r.accepted = false;
    r.error = e.what();
  }
  return r;
}

// (b) A safetensors file.
inline Result safetensors(const ScratchDir& dir, const uint8_t* data, size_t size) {
  const std::string path = dir.file("input.safetensors");
  write_file(path, as_text(data, size));
  Result r;
  try {
    const std::unique_ptr<SafetensorsFile> f = SafetensorsFile::open(path);
    for (const TensorInfo& t : f->tensors()) {
      check(f->tensor(t.name) == &t, "tensor lookup of '" + t.name + "'");
      check_tensor(t, size);
    }
    r.accepted = true;
  } catch (const Error& e) {
    r.error = e.what();
  }
  return r;
}

// (c) A Hugging Face folder: the input is config.json, model.safetensors.index.json,
// tokenizer_config.json and model.safetensors separated by kPartSeparator; an
// empty part leaves its file out.
inline Result hf_folder(const ScratchDir& dir, const uint8_t* data, size_t size) {
  static constexpr std::string_view kNames[] = {"config.json", "model.safetensors.index.json",
                                                "tokenizer_config.json", "model.safetensors"};
  const std::vector<std::string_view> parts = split_parts(as_text(data, size), 4);
  for (size_t i = 0; i < 4; ++i) {
    const bool present = i < parts.size() && !parts[i].empty();
    put_file(dir, kNames[i], present ? parts[i] : std::string_view(), present);
  }
  put_file(dir, "tokenizer.json", {}, false);
  Result r;
  try {
    const std::unique_ptr<ModelSource> m = ModelSource::open(dir.path());
    for (const TensorInfo& t : m->tensors()) {
      check(m->find(t.name) == &t, "tensor lookup of '" + t.name + "'");
      check(t.nbytes <= size, "tensor '" + t.name + "' larger than the input");
    }
    r.accepted = true;
  } catch (const Error& e) {
    r.error = e.what();
  }
  return r;
}

// (d) tokenizer.json (first part) and tokenizer_config.json (optional second
// part) in a folder, loaded with Tokenizer::from_hf_dir.
inline Result hf_tokenizer(const ScratchDir& dir, const uint8_t* data, size_t size) {
  const std::vector<std::string_view> parts = split_parts(as_text(data, size), 2);
  put_file(dir, "tokenizer.json", parts[0], true);
  put_file(dir, "tokenizer_config.json", parts.size() > 1 ? parts[1] : std::string_view(), parts.size() > 1);
  Result r;
  try {
    exercise_tokenizer(*Tokenizer::from_hf_dir(dir.path()));
    r.accepted = true;
  } catch (const Error& e) {
    r.error = e.what();
  }
  return r;
}

// s with every U+2581 turned into a space: what a SentencePiece round trip gives.
inline std::string spm_round_trip_text(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s.substr(i, 3) == "\xE2\x96\x81") {
      out += ' ';
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

// (e) A loaded tokenizer on arbitrary text: encode with and without specials,
// decode, stream-decode; for valid UTF-8 the round trip of the tokenizer
// contract (`spm`: SentencePiece, which gives U+2581 back as ' '; else
// byte-level BPE, which gives the bytes back, the bytes with no token dropped).
// The input is also read as little-endian token ids for the decoders.
inline Result tokenizer_text(const Tokenizer& tok, bool spm, const uint8_t* data, size_t size) {
  const std::string_view text = as_text(data, size);
  Result r;
  try {
    const std::vector<int32_t> ids = tok.encode(text, false, false);
    const std::string back = tok.decode(ids, false);
    if (utf8::is_valid(text)) {
      check(back == (spm ? spm_round_trip_text(text) : std::string(text)), "decode(encode(x)) != x");
    }
    exercise_tokenizer(tok);
    const std::vector<int32_t> with_special = tok.encode(text, true, true);
    StreamDecoder stream(tok, true);
    std::string streamed;
    for (int32_t id : with_special) streamed += stream.push(id);
    streamed += stream.finish();
    check(streamed == utf8::sanitize(tok.decode(with_special, true)), "stream decoder differs from decode()");
    std::vector<int32_t> raw;
    for (size_t i = 0; i + 4 <= size && raw.size() < 256; i += 4) {
      int32_t id = 0;
      for (size_t b = 0; b < 4; ++b) id |= static_cast<int32_t>(static_cast<uint32_t>(data[i + b]) << (8 * b));
      raw.push_back(id % (tok.vocab_size() + 1));  // mostly valid ids, some one past the end
    }
    try {
      (void)tok.decode(raw, (size & 1) != 0);
    } catch (const Error&) {  // ids outside the vocabulary
    }
    r.accepted = true;
  } catch (const Error& e) {
    r.error = e.what();
  }
  return r;
}

inline ChatTemplateOptions fuzz_template_options() {
  ChatTemplateOptions o;
  // Keep one render to a fraction of a second under the sanitizers; the memory
  // limits stay the production defaults (what a hostile template could reach).
  o.limits.max_steps = 2'000'000;
  o.limits.max_loop_iterations = 100'000;
  o.strftime_now = [](const std::string&) { return std::string("26 Jul 2024"); };
  return o;
}

inline OrderedJson fixed_messages() {
  return OrderedJson::parse(R"([
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Hi <|im_start|> \u00e9\u4e2d"},
    {"role": "assistant", "content": "Hello.", "tool_calls": [{"type": "function",
      "function": {"name": "f", "arguments": {"x": 1}}}]},
    {"role": "tool", "content": "{\"y\": 2}", "tool_call_id": "0"},
    {"role": "user", "content": ""}
  ])");
}

inline OrderedJson fixed_extra() {
  return OrderedJson::parse(R"({"bos_token": "<s>", "eos_token": "</s>", "enable_thinking": false,
    "tools": [{"type": "function", "function": {"name": "f", "description": "d",
      "parameters": {"type": "object", "properties": {"x": {"type": "integer"}}}}}]})");
}

// (f1) Arbitrary template text, a fixed conversation.
inline Result chat_template_source(const uint8_t* data, size_t size) {
  Result r;
  try {
    const ChatTemplate t(std::string(as_text(data, size)), fuzz_template_options());
    static const OrderedJson messages = fixed_messages();
    static const OrderedJson extra = fixed_extra();
    try {
      (void)t.render(messages, true, extra);
    } catch (const TemplateError& e) {
      r.error = e.what();
    }
    (void)t.render(OrderedJson::array(), false, OrderedJson::object());
    r.accepted = true;
  } catch (const Error& e) {
    r.error = e.what();
  }
  return r;
}

// (f2) Real templates, arbitrary JSON: the input is the messages array, or an
// object {"messages": [...], "add_generation_prompt": bool, ...extra context}.
inline Result chat_template_messages(const std::vector<ChatTemplate>& templates, const uint8_t* data, size_t size) {
  Result r;
  OrderedJson in = OrderedJson::parse(as_text(data, size), nullptr, /*allow_exceptions=*/false);
  if (in.is_discarded()) return r;
  OrderedJson messages = in, extra = OrderedJson::object();
  bool add_generation_prompt = true;
  if (in.is_object()) {
    messages = in.contains("messages") ? in["messages"] : OrderedJson::array();
    if (in.contains("add_generation_prompt") && in["add_generation_prompt"].is_boolean()) {
      add_generation_prompt = in["add_generation_prompt"].get<bool>();
    }
    extra = in;
    extra.erase("messages");
  }
  for (const ChatTemplate& t : templates) {
    try {
      (void)t.render(messages, add_generation_prompt, extra);
      r.accepted = true;
    } catch (const Error& e) {
      r.error = e.what();
    }
  }
  return r;
}

// The real templates chat_template_messages renders with, from the shared models.
inline std::vector<ChatTemplate> real_templates(const std::string& templates_dir) {
  std::vector<ChatTemplate> out;
  for (const char* name : {"chatml.jinja", "Qwen-Qwen2.5-7B-Instruct.jinja", "meta-llama-Llama-3.1-8B-Instruct.jinja",
                           "mistralai-Mistral-Nemo-Instruct-2407.jinja", "Qwen-Qwen3-0.6B.jinja"}) {
    std::ifstream f(templates_dir + "/" + name, std::ios::binary);
    std::string src((std::istreambuf_iterator<char>(f)), {});
    if (src.empty()) throw std::runtime_error("cannot read template " + templates_dir + "/" + name);
    out.emplace_back(std::move(src), fuzz_template_options());
  }
  return out;
}

// (g) The server's request parser: the body of /v1/completions,
// /v1/chat/completions, /tokenize and /detokenize. Every input gives a request
// or an ApiError (a 4xx with a message); an accepted request keeps the limits.
// accepted: some endpoint took the body.
inline Result request(const uint8_t* data, size_t size) {
  const std::string_view body = as_text(data, size);
  server::ParserLimits limits;
  limits.vocab_size = 32000;
  Result r;
  auto error = [&](const server::ApiError& e) {
    check(e.status >= 400 && e.status < 500 && !e.message.empty(), "ApiError without a 4xx status and a message");
    // The message may quote invalid UTF-8 from the body: the server dumps with
    // error_handler_t::replace (api_server.cc), so does this.
    (void)e.to_json().dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    r.error = e.message;
  };
  for (const server::Endpoint ep : {server::Endpoint::Completions, server::Endpoint::ChatCompletions}) {
    const server::GenerationParse p = server::parse_generation_request(ep, body, limits);
    if (const auto* e = std::get_if<server::ApiError>(&p)) {
      error(*e);
      continue;
    }
    const auto& q = std::get<server::GenerationRequest>(p);
    r.accepted = true;
    check(q.n >= 1 && q.n <= limits.max_n, "n out of range");
    check(q.stop.size() <= static_cast<size_t>(limits.max_stop), "too many stop sequences");
    check(!q.max_tokens || *q.max_tokens <= limits.max_model_len, "max_tokens over the model length");
    check(q.logprobs >= -1 && q.logprobs <= limits.max_logprobs, "logprobs out of range");
    if (ep == server::Endpoint::Completions) {
      check(!q.prompts.empty() && q.prompts.size() <= static_cast<size_t>(limits.max_prompts), "prompt count");
      check(q.prompts.size() * static_cast<size_t>(q.n) <= static_cast<size_t>(limits.max_sequences),
            "prompts x n over the limit");
      for (const server::Prompt& pr : q.prompts) {
        for (int32_t id : pr.tokens) check(id >= 0 && id < limits.vocab_size, "prompt token outside the vocabulary");
      }
    } else {
      check(q.messages.is_array() && q.messages.size() <= limits.max_messages, "messages not a bounded array");
    }
    (void)server::check_prompt_length(q, static_cast<int64_t>(size), limits.max_model_len);
  }
  const server::TokenizeParse t = server::parse_tokenize_request(body, limits);
  if (const auto* e = std::get_if<server::ApiError>(&t)) {
    error(*e);
  } else {
    r.accepted = true;
  }
  const server::DetokenizeParse d = server::parse_detokenize_request(body, limits);
  if (const auto* e = std::get_if<server::ApiError>(&d)) {
    error(*e);
  } else {
    r.accepted = true;
    for (int32_t id : std::get<server::DetokenizeRequest>(d).tokens) {
      check(id >= 0 && id < limits.vocab_size, "detokenize id outside the vocabulary");
    }
  }
  return r;
}

}  // namespace tpinfer::fuzz
