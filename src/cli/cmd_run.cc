// tpinfer run: generate text from a prompt, streamed to stdout, with a stats
// line on stderr (or one JSON object with --json).
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <optional>

#include "cli/common.h"
#include "core/error.h"
#include "engine/comm_summary.h"
#include "engine/generator.h"
#include "engine/grammar_constraint.h"
#include "structured/json_schema.h"
#include "tokenizer/chat_prompt.h"

namespace tpinfer::cli {
namespace {

struct RunOptions {
  ModelOptions model;
  std::string prompt;
  int n = 128;
  SamplingParams sampling;
  bool json = false;
  bool special = false;
  bool ignore_eos = false;
  bool chat = false;
  std::string system;
  std::string chat_template_file;
  SpeculativeCliOptions speculative;
  std::string json_schema_file;
  std::string grammar_file;
  bool json_object = false;
};

std::string read_text(const std::string& path, const char* flag) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw ConfigError(cat(flag, ": cannot read '", path, "'"));
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// The grammar of --json-schema / --json-object / --grammar (null without one).
std::shared_ptr<CompiledGrammar> output_grammar(const RunOptions& o, const Engine& engine) {
  const int given = (o.json_schema_file.empty() ? 0 : 1) + (o.grammar_file.empty() ? 0 : 1) + (o.json_object ? 1 : 0);
  if (given == 0) return nullptr;
  if (given > 1) throw ConfigError("give one of --json-schema, --json-object and --grammar");
  Grammar g = !o.grammar_file.empty() ? Grammar::parse_gbnf(read_text(o.grammar_file, "--grammar"))
              : !o.json_schema_file.empty()
                  ? compile_json_schema(std::string_view(read_text(o.json_schema_file, "--json-schema")))
                  : compile_json_object();
  return CompiledGrammar::create(std::move(g), grammar_vocabulary(engine.tokenizer(), engine.config().vocab));
}

nlohmann::ordered_json comm_json(const CommSummary& c) {
  nlohmann::ordered_json j;
  j["collective_seconds"] = c.total.seconds;
  j["collective_share"] = c.share;
  // Of it, waiting for the last rank to arrive (comm/communicator.h); the rest is link time.
  j["wait_seconds"] = c.total.wait_seconds;
  j["bytes_per_token"] = c.bytes_per_token;
  j["all_reduces_per_token"] = c.all_reduces_per_token;
  nlohmann::ordered_json kinds;
  for (const CollectiveSummary& k : c.by_collective) {
    kinds[k.name] = {{"calls", k.calls}, {"bytes", k.bytes}, {"seconds", k.seconds}, {"wait_seconds", k.wait_seconds}};
  }
  j["by_collective"] = kinds;
  return j;
}

// Time per stage, the bubble and the traffic of each parallel dimension.
nlohmann::ordered_json parallel_json(const ParallelStats& p, int64_t tokens, double seconds) {
  nlohmann::ordered_json stages = nlohmann::ordered_json::array();
  for (size_t s = 0; s < p.stage_busy_seconds.size(); ++s) {
    stages.push_back({{"stage", s},
                      {"busy_seconds", p.stage_busy_seconds[s]},
                      {"busy_share", seconds > 0 ? p.stage_busy_seconds[s] / seconds : 0.0}});
  }
  const CommSummary tp = summarize_comm(p.tp, seconds, tokens);
  const CommSummary pp = summarize_comm(p.pp, seconds, tokens);
  return {{"stages", stages},
          {"pipeline_seconds", p.pipeline_seconds},
          {"micro_batches", p.micro_batches},
          {"bubble_share", p.bubble_share()},
          {"tp_bytes_per_token", tp.bytes_per_token},
          {"tp_seconds", tp.total.seconds},
          {"pp_bytes_per_token", pp.bytes_per_token},
          {"pp_seconds", pp.total.seconds}};
}

void run(RunOptions& o) {
  const std::unique_ptr<Engine> engine_ptr = open_engine(o.model);
  if (!engine_ptr) return;  // an mpi worker: the driver printed the results
  Engine& engine = *engine_ptr;
  const Tokenizer& tok = engine.tokenizer();
  std::vector<int32_t> prompt;
  if (o.chat) {
    std::string source;
    if (!o.chat_template_file.empty()) {
      std::ifstream f(o.chat_template_file, std::ios::binary);
      if (!f) throw Error(cat(o.chat_template_file, ": cannot open"));
      source.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
    }
    const auto tmpl = chat_template_for(tok, source);
    OrderedJson messages = OrderedJson::array();
    if (!o.system.empty()) messages.push_back({{"role", "system"}, {"content", o.system}});
    messages.push_back({{"role", "user"}, {"content", o.prompt}});
    prompt = chat_prompt_tokens(tok, render_chat(*tmpl, tok, messages));
  } else {
    prompt = tok.encode(o.prompt, /*add_special=*/true, o.special);
  }
  GenerateOptions gen;
  gen.max_tokens = o.n;
  gen.stop_at_eog = !o.ignore_eos;
  const std::unique_ptr<Engine> draft = open_draft(o.speculative, o.model, engine);
  gen.speculative = speculative_options(o.speculative, draft.get());
  const std::shared_ptr<CompiledGrammar> grammar = output_grammar(o, engine);
  std::optional<GrammarConstraint> constraint;
  if (grammar) {
    constraint.emplace(grammar);
    gen.constraint = &*constraint;
  }
  GenerationStats stats;
  StreamDecoder stream(tok);
  std::string text;
  const std::vector<int32_t> tokens = generate(
      engine, prompt, o.sampling, gen,
      [&](int32_t t) {
        const std::string piece = stream.push(t);
        text += piece;
        if (!o.json) {
          std::fwrite(piece.data(), 1, piece.size(), stdout);
          std::fflush(stdout);
        }
        return true;
      },
      &stats);
  const std::string rest = stream.finish();
  text += rest;

  const double pp_tps =
      stats.prefill_seconds > 0 ? static_cast<double>(stats.prompt_tokens) / stats.prefill_seconds : 0;
  // The first generated token comes from the prefill; decode steps made the rest.
  const int64_t decode_steps = std::max<int64_t>(0, stats.generated_tokens - 1);
  const double tg_tps = stats.decode_seconds > 0 ? static_cast<double>(decode_steps) / stats.decode_seconds : 0;
  uint64_t total_weights = 0;
  nlohmann::ordered_json ranks = nlohmann::ordered_json::array();
  for (size_t r = 0; r < engine.rank_reports().size(); ++r) {
    const RankReport& rep = engine.rank_reports()[r];
    total_weights += rep.weight_bytes;
    ranks.push_back({{"rank", r},
                     {"stage", rep.stage},
                     {"layers", {rep.layers.begin, rep.layers.end}},
                     {"device", rep.device},
                     {"weight_bytes", rep.weight_bytes},
                     {"kv_cache_bytes", rep.kv_bytes},
                     {"q_heads", {rep.shard.q_heads.begin, rep.shard.q_heads.end}},
                     {"kv_heads", {rep.shard.kv_heads.begin, rep.shard.kv_heads.end}},
                     {"ffn", {rep.shard.ffn.begin, rep.shard.ffn.end}},
                     {"vocab", {rep.shard.vocab.begin, rep.shard.vocab.end}},
                     {"experts", {rep.shard.experts.begin, rep.shard.experts.end}}});
  }
  // Decode's critical_share: the least collective time over the ranks (the
  // rank that computes longest waits least) is what communication added.
  const CommSummary decode_comm =
      summarize_comm(stats.decode_comm, stats.decode_seconds, decode_steps, stats.decode_ranks);
  const CommSummary prefill_comm = summarize_comm(stats.prefill_comm, stats.prefill_seconds, stats.prompt_tokens);
  nlohmann::ordered_json rank_seconds = nlohmann::ordered_json::array();
  for (double seconds : decode_comm.rank_seconds) rank_seconds.push_back(seconds);
  nlohmann::ordered_json st = {
      {"load_seconds", engine.load_seconds()},
      {"prompt_tokens", stats.prompt_tokens},
      {"generated_tokens", stats.generated_tokens},
      {"prompt_seconds", stats.prefill_seconds},
      {"prompt_tokens_per_second", pp_tps},
      {"decode_seconds", stats.decode_seconds},
      {"generated_tokens_per_second", tg_tps},
      {"tensor_parallel_size", engine.tp()},
      {"pipeline_parallel_size", engine.pp()},
      {"micro_batches", engine.micro_batches()},
      {"comm_backend", name(engine.comm_backend())},
      {"device", name(engine.device())},
      {"device_comm_backend", name(engine.device_comm())},
      {"comm_compression", o.model.compression},
      {"sampling_gather", o.model.sampling_gather},
      {"weight_bytes_total", total_weights},
      {"ranks", ranks},
      {"decode_comm", comm_json(decode_comm)},
      {"decode_critical_comm_share", decode_comm.critical_share},
      {"decode_rank_collective_seconds", rank_seconds},
      {"prefill_comm", comm_json(prefill_comm)},
      {"decode_parallel", parallel_json(stats.decode_parallel, decode_steps, stats.decode_seconds)},
      {"prefill_parallel", parallel_json(stats.prefill_parallel, stats.prompt_tokens, stats.prefill_seconds)},
  };
  if (gen.constraint) st["constraint_seconds"] = stats.constraint_seconds;
  if (gen.speculative.method != Speculation::None) {
    st["speculative"] = name(gen.speculative.method);
    st["num_speculative_tokens"] = gen.speculative.k;
    st["decode_forwards"] = stats.decode_forwards;
    st["proposed_tokens"] = stats.proposed_tokens;
    st["accepted_tokens"] = stats.accepted_tokens;
    st["acceptance_rate"] = stats.acceptance_rate();
    st["tokens_per_forward"] = stats.tokens_per_forward();
  }
  // MoE: tokens routed to each expert over the prompt and the generation,
  // [layer][expert], on the driver.
  const std::vector<std::vector<uint64_t>> load = engine.expert_load();
  if (!load.empty()) {
    st["expert_parallel"] = engine.plan().expert_parallel();
    st["expert_load"] = load;
  }
  if (o.json) {
    nlohmann::ordered_json j = {{"prompt_tokens", prompt}, {"tokens", tokens}, {"text", text}, {"stats", st}};
    std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << std::endl;
    return;
  }
  std::fwrite(rest.data(), 1, rest.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
  std::string per_rank;
  for (size_t r = 0; r < engine.rank_reports().size(); ++r) {
    per_rank += (r ? ", " : "") + format_bytes(engine.rank_reports()[r].weight_bytes);
  }
  std::string layout = cat("tp ", engine.tp());
  if (engine.pp() > 1) layout += cat(" x pp ", engine.pp());
  if (engine.device() != DeviceKind::Cpu) {
    std::string devices;
    for (size_t r = 0; r < engine.rank_reports().size(); ++r) {
      const RankReport& rep = engine.rank_reports()[r];
      devices += cat(r ? ", " : "", "rank ", r, " ", rep.device, " kv ", format_bytes(rep.kv_bytes));
    }
    std::fprintf(stderr, "device %s (comm %s): %s\n", name(engine.device()), name(engine.device_comm()),
                 devices.c_str());
  }
  std::fprintf(stderr,
               "load %.2f s | prompt %lld tokens, %.1f tok/s | generated %lld tokens, %.1f tok/s | %s, weights "
               "per rank: %s | comm: %.1f%% of decode time (%.1f%% waiting for a rank, %.1f%% on the critical "
               "path), %.0f bytes/token, %.1f all-reduces/token\n",
               engine.load_seconds(), static_cast<long long>(stats.prompt_tokens), pp_tps,
               static_cast<long long>(stats.generated_tokens), tg_tps, layout.c_str(), per_rank.c_str(),
               100.0 * decode_comm.share, 100.0 * decode_comm.wait_share, 100.0 * decode_comm.critical_share,
               decode_comm.bytes_per_token, decode_comm.all_reduces_per_token);
  if (engine.pp() > 1) {
    // The pipeline: how busy each stage was, the bubble, what crossed between stages.
    auto line = [&](const char* phase, const nlohmann::ordered_json& p) {
      std::string busy;
      for (const auto& s : p["stages"])
        busy += cat(busy.empty() ? "" : ", ", static_cast<int>(100 * s["busy_share"].get<double>() + 0.5), "%");
      std::fprintf(stderr,
                   "pipeline %s: stage busy %s | bubble %.0f%% | %llu micro-batches | pp %.0f bytes/token, tp %.0f "
                   "bytes/token\n",
                   phase, busy.c_str(), 100 * p["bubble_share"].get<double>(),
                   static_cast<unsigned long long>(p["micro_batches"].get<uint64_t>()),
                   p["pp_bytes_per_token"].get<double>(), p["tp_bytes_per_token"].get<double>());
    };
    line("prefill", st["prefill_parallel"]);
    line("decode", st["decode_parallel"]);
  }
  if (gen.speculative.method != Speculation::None) {
    std::fprintf(stderr,
                 "speculative %s, k %d: %lld of %lld guesses accepted (%.0f%%), %.2f tokens per target forward (%lld "
                 "forwards)\n",
                 name(gen.speculative.method), gen.speculative.k, static_cast<long long>(stats.accepted_tokens),
                 static_cast<long long>(stats.proposed_tokens), 100.0 * stats.acceptance_rate(),
                 stats.tokens_per_forward(), static_cast<long long>(stats.decode_forwards));
  }
  if (!load.empty()) std::fprintf(stderr, "%s\n", expert_load_line(load).c_str());
}

}  // namespace

void register_run(CLI::App& app) {
  auto o = std::make_shared<RunOptions>();
  CLI::App* cmd = app.add_subcommand("run", "Generate text from a prompt");
  add_model_options(*cmd, o->model);
  cmd->add_option("-p,--prompt", o->prompt, "Prompt text")->required();
  cmd->add_option("-n,--n-predict,--max-tokens", o->n, "Tokens to generate")->check(CLI::NonNegativeNumber);
  cmd->add_option("--temperature,--temp", o->sampling.temperature, "Sampling temperature (0: greedy)");
  cmd->add_option("--top-k", o->sampling.top_k, "Top-k (0: off)");
  cmd->add_option("--top-p", o->sampling.top_p, "Top-p (1: off)");
  cmd->add_option("--min-p", o->sampling.min_p, "Min-p (0: off)");
  cmd->add_option("--repeat-penalty", o->sampling.repeat_penalty, "Repetition penalty (1: off)");
  cmd->add_option("--repeat-last-n", o->sampling.repeat_last_n, "Tokens the repetition penalty looks back");
  cmd->add_option("--seed", o->sampling.seed, "Random seed");
  add_speculative_options(*cmd, o->speculative);
  cmd->add_option("--json-schema", o->json_schema_file,
                  "Constrain the output to JSON valid under the JSON Schema in FILE (structured outputs)");
  cmd->add_flag("--json-object", o->json_object, "Constrain the output to a JSON object");
  cmd->add_option("--grammar", o->grammar_file, "Constrain the output to the GBNF grammar in FILE (root rule 'root')");
  cmd->add_flag("--json", o->json, "Print one JSON object with tokens, text and stats");
  cmd->add_flag("--special", o->special, "Recognise special tokens written in the prompt");
  cmd->add_flag("--ignore-eos", o->ignore_eos, "Keep generating after an end-of-generation token");
  cmd->add_flag("--chat", o->chat,
                "Send the prompt as a user message through the model's chat template (ChatML if none)");
  cmd->add_option("--system", o->system, "System message for --chat");
  cmd->add_option("--chat-template", o->chat_template_file, "Jinja chat template file to use with --chat");
  cmd->callback([o] { run(*o); });
}

}  // namespace tpinfer::cli
