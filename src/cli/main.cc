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
  tpinfer::cli::register_tokenize(app);
  tpinfer::cli::register_serve(app);
  tpinfer::cli::register_bench(app);
  tpinfer::cli::register_plan(app);
  // `-tp N` (vLLM's and llama.cpp's spelling) is a multi-letter short option,
  // which CLI11 does not allow: spell it as its long alias before parsing.
  std::vector<std::string> args;
  for (int i = argc - 1; i >= 1; --i) {
    const std::string a = argv[i];
    args.push_back(a == "-tp" ? "--tp" : a.rfind("-tp=", 0) == 0 ? "--tp=" + a.substr(4) : a);
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
