// tpinfer: tensor-parallel LLM inference. Each subcommand lives in cmd_*.cc;
// this file only dispatches and turns errors into messages and exit codes
// (1 for any error the user can act on).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>
#include <vector>

#include "cli/common.h"
#include "core/error.h"

int main(int argc, char** argv) {
  CLI::App app{"tpinfer: tensor-parallel LLM inference"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "tpinfer 0.1.0");
  tpinfer::cli::register_run(app);
  tpinfer::cli::register_perplexity(app);
  tpinfer::cli::register_inspect(app);
  tpinfer::cli::register_synth(app);
  tpinfer::cli::register_cut(app);
  tpinfer::cli::register_tokenize(app);
  tpinfer::cli::register_serve(app);
  tpinfer::cli::register_bench(app);
  tpinfer::cli::register_plan(app);
  tpinfer::cli::register_devices(app);
  // `-tp N`, `-pp N`, `-dp N` (vLLM's and llama.cpp's spellings) are
  // multi-letter short options, which CLI11 does not allow: spell them as
  // their long aliases before parsing.
  std::vector<std::string> args;
  for (int i = argc - 1; i >= 1; --i) {
    std::string a = argv[i];
    for (const char* flag : {"-tp", "-pp", "-dp"}) {
      const std::string f = flag;
      if (a == f || a.rfind(f + "=", 0) == 0) a = "-" + a;
    }
    args.push_back(a);
  }
  try {
    app.parse(args);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
