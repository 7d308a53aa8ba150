// Structured outputs on a model: a grammar (structured/) over the model's
// tokenizer, as the TokenConstraint the generator and scheduler apply
// (engine/constraint.h).
//
//   auto vocab = grammar_vocabulary(engine.tokenizer(), engine.config().vocab);  // once per model
//   auto grammar = CompiledGrammar::create(compile_json_schema(schema), vocab); // once per schema
//   GrammarConstraint c(grammar);                                              // one per sequence
#pragma once

#include <memory>
#include <span>

#include "engine/constraint.h"
#include "structured/grammar_matcher.h"
#include "tokenizer/tokenizer.h"

namespace tpinfer {

// The model's tokens as raw bytes for grammar masks: every token's decoded
// bytes; special and control tokens none (never allowed), except the
// end-of-generation ones, allowed when the grammar is complete. Ids past the
// tokenizer's vocabulary (a model's padded embedding) have no bytes.
// `literal_specials`: special tokens that stand for their text (a tool-call
// marker such as [TOOL_CALLS]), so a grammar's literal may be written as them.
std::shared_ptr<const TokenVocabulary> grammar_vocabulary(const Tokenizer& tok, int64_t model_vocab,
                                                          std::span<const int32_t> literal_specials = {});

class GrammarConstraint final : public TokenConstraint {
 public:
  explicit GrammarConstraint(std::shared_ptr<CompiledGrammar> grammar);
  bool mask(std::span<float> logits) override;
  void accept(int32_t token) override;
  // An end token was accepted, or the output is complete and no byte can follow.
  bool finished() const override;

 private:
  GrammarMatcher matcher_;
  TokenBitmask bits_;
  bool dead_ = false;
};

}  // namespace tpinfer
