// tpinfer cut: a draft model cut from a GGUF model (formats/layer_cut.h).
#include <cstdio>
#include <memory>
#include <string>

#include "cli/common.h"
#include "formats/layer_cut.h"

namespace tpinfer::cli {
namespace {

struct CutOptions {
  std::string model;
  int layers = 0;
  std::string out;
};

}  // namespace

void register_cut(CLI::App& app) {
  auto o = std::make_shared<CutOptions>();
  CLI::App* cmd = app.add_subcommand(
      "cut", "Write a model's first layers, with its embedding, final norm and lm_head, as a draft model (GGUF)");
  cmd->add_option("-m,--model", o->model, "The model: a .gguf file")->required();
  cmd->add_option("--layers", o->layers, "Layers to keep, from the first")->required();
  cmd->add_option("-o,--out", o->out, "Output .gguf file")->required();
  cmd->callback([o] {
    cut_gguf_layers(o->model, o->layers, o->out);
    std::printf("wrote %s (%d layers of %s)\n", o->out.c_str(), o->layers, o->model.c_str());
  });
}

}  // namespace tpinfer::cli
