// tpinfer perplexity: perplexity of a text file in windows of --ctx tokens,
// computed as llama.cpp's llama-perplexity does (see engine/generator.h).
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/common.h"
#include "core/error.h"
#include "engine/comm_summary.h"
#include "engine/generator.h"

namespace tpinfer::cli {
namespace {

struct PerplexityOptions {
  ModelOptions model;
  std::string file;
  int ctx = 512;
  bool json = false;
};

void run(PerplexityOptions& o) {
  std::ifstream f(o.file, std::ios::binary);
  if (!f) throw Error(cat(o.file, ": cannot open"));
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string text = ss.str();
  if (o.model.ctx_size == 0) o.model.ctx_size = o.ctx;
  const std::unique_ptr<Engine> engine_ptr = open_engine(o.model);
  if (!engine_ptr) return;  // an mpi worker: the driver printed the results
  Engine& engine = *engine_ptr;
  const std::vector<int32_t> tokens = engine.tokenizer().encode(text, /*add_special=*/true, false);
  engine.reset_comm_stats();
  const PerplexityResult r = perplexity(engine, tokens, o.ctx, [&](int chunk, double ppl) {
    if (!o.json) std::fprintf(stderr, "[%d] %.4f\n", chunk + 1, ppl);
  });
  const CommSummary comm = summarize_comm(engine.comm_stats(), r.seconds);
  if (o.json) {
    nlohmann::ordered_json j = {{"perplexity", r.perplexity},
                                {"nll_mean", r.nll_mean},
                                {"ctx", o.ctx},
                                {"chunks", r.chunks},
                                {"tokens", tokens.size()},
                                {"scored_tokens", r.scored_tokens},
                                {"seconds", r.seconds},
                                {"tensor_parallel_size", engine.tp()},
                                {"pipeline_parallel_size", engine.pp()},
                                {"comm_compression", o.model.compression},
                                {"collective_share", comm.share},
                                {"comm_bytes", comm.total.bytes}};
    std::cout << j.dump() << std::endl;
    return;
  }
  std::printf("%.4f\n", r.perplexity);
  std::fprintf(stderr, "perplexity %.4f over %lld tokens (%d chunks of %d, %lld scored) in %.1f s, tp %d, pp %d\n",
               r.perplexity, static_cast<long long>(tokens.size()), r.chunks, o.ctx,
               static_cast<long long>(r.scored_tokens), r.seconds, engine.tp(), engine.pp());
}

}  // namespace

void register_perplexity(CLI::App& app) {
  auto o = std::make_shared<PerplexityOptions>();
  CLI::App* cmd = app.add_subcommand("perplexity", "Perplexity of a text file");
  add_model_options(*cmd, o->model);
  cmd->add_option("-f,--file", o->file, "Text file")->required();
  cmd->add_option("--ctx", o->ctx, "Window size in tokens")->check(CLI::Range(2, 1 << 20));
  cmd->add_flag("--json", o->json, "Print JSON");
  cmd->callback([o] { run(*o); });
}

}  // namespace tpinfer::cli
