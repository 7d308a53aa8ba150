// Token masks for structured outputs over Llama 3's 128256-token vocabulary
// (llama-bpe): the time per generated token of fill_mask + accept_token while
// a JSON document of an order schema is decoded token by token (the tokens the
// real tokenizer gives that document).
//
//   Cold:       a fresh CompiledGrammar per pass (every state and mask new).
//   WarmSame:   the grammar already decoded this document once.
//   WarmOther:  a fresh grammar that decoded another document of the schema
//               (other values, other lengths) before: what a server sees
//               when a schema comes back with new content.
// Also the one-off costs: the vocabulary trie, and schema -> grammar.
//
// The shared models folder is ../shared/models next to the source tree, or
// $TPINFER_SHARED_DIR/models.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>
#include <memory>

#include "formats/gguf.h"
#include "shared_models.h"
#include "structured/grammar_matcher.h"
#include "structured/json_schema.h"
#include "tokenizer/tokenizer.h"

namespace tpinfer {
namespace {

using bench::models_dir;

constexpr const char* kSchema = R"({
  "type": "object",
  "properties": {
    "order_id": {"type": "string", "format": "uuid"},
    "created": {"type": "string", "format": "date-time"},
    "status": {"enum": ["pending", "paid", "shipped", "cancelled"]},
    "customer": {"type": "object", "properties": {
      "name": {"type": "string"},
      "email": {"type": "string", "format": "email"},
      "phone": {"type": ["string", "null"]}},
      "required": ["name", "email", "phone"], "additionalProperties": false},
    "items": {"type": "array", "minItems": 1, "maxItems": 20, "items": {"$ref": "#/$defs/item"}},
    "shipping": {"type": "object", "properties": {
      "street": {"type": "string"}, "city": {"type": "string"},
      "zip": {"type": "string", "pattern": "^[0-9]{5}$"},
      "country": {"type": "string", "minLength": 2, "maxLength": 2}},
      "required": ["street", "city", "zip", "country"], "additionalProperties": false},
    "notes": {"type": "string", "maxLength": 200},
    "gift": {"type": "boolean"}
  },
  "required": ["order_id", "created", "status", "customer", "items", "shipping", "gift"],
  "additionalProperties": false,
  "$defs": {"item": {"type": "object", "properties": {
    "sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{4}$"},
    "name": {"type": "string"},
    "quantity": {"type": "integer", "minimum": 1, "maximum": 100},
    "unit_price": {"type": "number", "minimum": 0}},
    "required": ["sku", "name", "quantity", "unit_price"], "additionalProperties": false}}
})";

// Two documents of the schema, pretty-printed the way models write them.
constexpr const char* kDocA = R"({
  "order_id": "3f2b8c1e-9d4a-4e7b-a1c2-5d6e7f8a9b0c",
  "created": "2024-11-05T14:32:10Z",
  "status": "paid",
  "customer": {
    "name": "Margaret Hamilton",
    "email": "margaret.hamilton@example.com",
    "phone": "+1 617 555 0142"
  },
  "items": [
    {
      "sku": "BKS-0042",
      "name": "The Mythical Man-Month, anniversary edition",
      "quantity": 2,
      "unit_price": 34.95
    },
    {
      "sku": "PEN-1209",
      "name": "Mechanical pencil, 0.5 mm, with spare leads",
      "quantity": 10,
      "unit_price": 3.5
    },
    {
      "sku": "NTB-7781",
      "name": "Dotted notebook A5",
      "quantity": 3,
      "unit_price": 12
    }
  ],
  "shipping": {
    "street": "1 Memorial Drive",
    "city": "Cambridge",
    "zip": "02139",
    "country": "US"
  },
  "notes": "Please leave the parcel at the front desk if nobody answers the door.",
  "gift": false
})";
constexpr const char* kDocB = R"({
  "order_id": "a0b1c2d3-e4f5-4a6b-8c7d-9e0f1a2b3c4d",
  "created": "2025-02-17T08:05:59+01:00",
  "status": "shipped",
  "customer": {
    "name": "Grace Hopper",
    "email": "g.hopper@navy.example.org",
    "phone": null
  },
  "items": [
    {
      "sku": "CBL-0007",
      "name": "Nanosecond wire, 30 cm",
      "quantity": 100,
      "unit_price": 0.25
    }
  ],
  "shipping": {
    "street": "Naval Data Automation Command, Building 166",
    "city": "Washington",
    "zip": "20374",
    "country": "US"
  },
  "gift": true
})";

struct Setup {
  std::unique_ptr<Tokenizer> tok;
  std::vector<std::string> token_bytes;
  std::vector<int32_t> eog;
  std::shared_ptr<const TokenVocabulary> vocab;
  std::vector<int32_t> doc_a, doc_b;
};

const Setup* setup() {
  static std::unique_ptr<Setup> s = []() -> std::unique_ptr<Setup> {
    auto out = std::make_unique<Setup>();
    try {
      out->tok = Tokenizer::from_gguf(*GgufFile::open(models_dir() + "/vocab/ggml-vocab-llama-bpe.gguf"));
    } catch (const std::exception&) {
      return nullptr;
    }
    const Tokenizer& t = *out->tok;
    for (int32_t id = 0; id < t.vocab_size(); ++id) {
      out->token_bytes.push_back(t.is_special(id) ? std::string() : t.token_bytes(id));
      if (t.is_eog(id)) out->eog.push_back(id);
    }
    out->vocab = TokenVocabulary::build(out->token_bytes, out->eog);
    out->doc_a = t.encode(kDocA, false, false);
    out->doc_b = t.encode(kDocB, false, false);
    out->doc_a.push_back(out->eog.front());
    out->doc_b.push_back(out->eog.front());
    return out;
  }();
  return s.get();
}

// Decodes `doc` with a fresh matcher: a mask before every token, as a sampler
// would, then the token.
void decode(const std::shared_ptr<CompiledGrammar>& g, const std::vector<int32_t>& doc, TokenBitmask& mask) {
  GrammarMatcher m(g);
  for (const int32_t id : doc) {
    m.fill_mask(mask);
    if (!mask.test(static_cast<size_t>(id)) || !m.accept_token(id)) throw Error(cat("token ", id, " refused"));
  }
  if (!m.is_terminated()) throw Error("document did not end the grammar");
}

void masks(benchmark::State& state, int mode) {
  const Setup* s = setup();
  if (s == nullptr) {
    state.SkipWithError("ggml-vocab-llama-bpe.gguf not found");
    return;
  }
  const Grammar grammar = compile_json_schema(std::string_view(kSchema));
  // Cold and WarmOther decode document B, WarmSame document A.
  const std::vector<int32_t>& doc = mode == 1 ? s->doc_a : s->doc_b;
  TokenBitmask mask;
  std::shared_ptr<CompiledGrammar> g;
  if (mode == 1) {
    g = CompiledGrammar::create(grammar, s->vocab);
    decode(g, s->doc_a, mask);
  }
  for (auto _ : state) {
    if (mode != 1) {  // a fresh grammar every pass, warmed on A for WarmOther
      state.PauseTiming();
      g = CompiledGrammar::create(grammar, s->vocab);
      if (mode == 2) decode(g, s->doc_a, mask);
      state.ResumeTiming();
    }
    decode(g, doc, mask);
  }
  state.counters["tokens"] = static_cast<double>(doc.size());
  state.counters["per_token"] = benchmark::Counter(
      static_cast<double>(doc.size()), benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
  const CompiledGrammar::Stats st = g->stats();
  state.counters["states"] = static_cast<double>(st.states);
  state.counters["cached_masks"] = static_cast<double>(st.cached_masks);
}

void vocabulary_trie(benchmark::State& state) {
  const Setup* s = setup();
  if (s == nullptr) {
    state.SkipWithError("ggml-vocab-llama-bpe.gguf not found");
    return;
  }
  for (auto _ : state) benchmark::DoNotOptimize(TokenVocabulary::build(s->token_bytes, s->eog));
  state.counters["trie_nodes"] = static_cast<double>(s->vocab->trie().byte.size());
}

void schema_compile(benchmark::State& state) {
  const Setup* s = setup();
  if (s == nullptr) {
    state.SkipWithError("ggml-vocab-llama-bpe.gguf not found");
    return;
  }
  for (auto _ : state) {
    benchmark::DoNotOptimize(CompiledGrammar::create(compile_json_schema(std::string_view(kSchema)), s->vocab));
  }
}

// The worst case for one mask: inside a string with a maxLength every
// character position is a new state, and nearly every token is allowed
// there, so each mask walks the whole trie with new transitions.
void string_position_mask(benchmark::State& state) {
  const Setup* s = setup();
  if (s == nullptr) {
    state.SkipWithError("ggml-vocab-llama-bpe.gguf not found");
    return;
  }
  const auto g = CompiledGrammar::create(
      compile_json_schema(std::string_view(R"({"type":"string","maxLength":100000})")), s->vocab);
  GrammarMatcher m(g);
  m.accept_bytes("\"");
  TokenBitmask mask;
  size_t allowed = 0;
  for (auto _ : state) {
    m.accept_bytes("a");
    m.fill_mask(mask);
    allowed = mask.count();
  }
  state.counters["allowed"] = static_cast<double>(allowed);
}

BENCHMARK_CAPTURE(masks, Cold, 0)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(masks, WarmSame, 1)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(masks, WarmOther, 2)->Unit(benchmark::kMillisecond);
BENCHMARK(vocabulary_trie)->Unit(benchmark::kMillisecond);
BENCHMARK(schema_compile)->Unit(benchmark::kMillisecond);
BENCHMARK(string_position_mask)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace tpinfer
