// A constraint on what a sequence may generate (structured outputs: a
// grammar or a JSON schema, engine/grammar_constraint.h). Before each token is
// drawn, mask() sets the logits of the tokens that cannot come next to -inf;
// the token drawn is then given to accept(). The sampler sees only the masked
// logits, so penalties, temperature, top-k/p and logprobs all apply to the
// distribution the constraint leaves.
//
// One object per sequence (it holds the sequence's state), used from the
// thread that samples it. Constrained sequences are not speculated on: a
// guess would need the constraint's state after every earlier guess.
#pragma once

#include <cstdint>
#include <span>

namespace tpinfer {

class TokenConstraint {
 public:
  virtual ~TokenConstraint() = default;
  // Sets to -inf every logit whose token cannot come next. False when no
  // token can (the constraint is at a dead end): the sequence ends.
  virtual bool mask(std::span<float> logits) = 0;
  // Advances past `token` (one that mask() allowed).
  virtual void accept(int32_t token) = 0;
  // The output is complete and nothing but an end of generation may follow:
  // the sequence ends here, even if it would not stop at an end token.
  virtual bool finished() const = 0;
};

}  // namespace tpinfer
