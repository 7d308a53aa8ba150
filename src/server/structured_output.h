// Structured outputs for the server: a request's OutputFormat (response_format
// json_object / json_schema, or a GBNF grammar) compiled against the model's
// vocabulary, once per distinct format: compiled grammars (with their cached
// token masks, structured/grammar_matcher.h) are kept, most recently used
// first, so a format that many requests share has its masks warm. Each
// sequence then gets its own GrammarConstraint over the shared grammar.
#pragma once

#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "engine/grammar_constraint.h"
#include "server/request_parser.h"
#include "server/tool_calls.h"

namespace tpinfer::server {

class StructuredOutputs {
 public:
  // `literal_specials`: special tokens a grammar's literal may be written as
  // (the tool-call format's markers, engine/grammar_constraint.h).
  StructuredOutputs(const Tokenizer& tok, int64_t model_vocab, std::vector<int32_t> literal_specials = {},
                    size_t capacity = 64)
      : tok_(tok), model_vocab_(model_vocab), literal_specials_(std::move(literal_specials)), capacity_(capacity) {}

  // The grammar of `format` (null for text). Throws ApiError (400) when the
  // schema uses a keyword that cannot be honoured (the message names it) or
  // the grammar does not parse. Any thread.
  std::shared_ptr<CompiledGrammar> compile(const OutputFormat& format);
  // The grammar of a forced tool call (server/tool_calls.h): the format's
  // literals around one or more calls of the call schema. Throws ApiError
  // (400, param tools) when a tool's parameters cannot be honoured.
  std::shared_ptr<CompiledGrammar> compile(const ToolCallConstraint& calls);

 private:
  const Tokenizer& tok_;
  // GBNF text to grammar, through the cache; `param` names the request field in errors.
  std::shared_ptr<CompiledGrammar> compile_gbnf(const std::string& gbnf, const char* param, const char* what);

  int64_t model_vocab_;
  std::vector<int32_t> literal_specials_;
  size_t capacity_;
  std::mutex mutex_;
  std::shared_ptr<const TokenVocabulary> vocab_;  // built on first use
  std::list<std::pair<std::string, std::shared_ptr<CompiledGrammar>>> lru_;
  std::unordered_map<std::string, decltype(lru_)::iterator> index_;
};

}  // namespace tpinfer::server
