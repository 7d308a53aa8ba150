// tpinfer tokenize / detokenize: the model's tokenizer on the command line. Only
// the tokenizer is loaded, so a vocabulary-only GGUF works as well as a model.
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/common.h"
#include "core/error.h"
#include "tokenizer/tokenizer.h"

namespace tpinfer::cli {
namespace {

struct TokenizeOptions {
  std::string model;
  std::vector<std::string> texts;
  bool json = false;
  bool no_bos = false;
  bool special = false;
};

// One line per text: the ids, space separated, or with --json one object.
void tokenize(const TokenizeOptions& o) {
  const auto tok = Tokenizer::open(o.model);
  for (const std::string& text : o.texts) {
    const std::vector<int32_t> ids = tok->encode(text, !o.no_bos, o.special);
    if (o.json) {
      nlohmann::ordered_json pieces = nlohmann::ordered_json::array();
      for (int32_t id : ids) pieces.push_back(tok->token_text(id));
      std::cout << nlohmann::ordered_json{{"tokens", ids}, {"pieces", pieces}}.dump(
                       -1, ' ', false, nlohmann::json::error_handler_t::replace)
                << '\n';
      continue;
    }
    std::string line;
    for (int32_t id : ids) {
      if (!line.empty()) line += ' ';
      line += std::to_string(id);
    }
    std::cout << line << '\n';
  }
  std::cout.flush();
}

struct DetokenizeOptions {
  std::string model;
  std::vector<int32_t> ids;
  bool json = false;
};

void detokenize(const DetokenizeOptions& o) {
  const auto tok = Tokenizer::open(o.model);
  for (int32_t id : o.ids) {
    if (id < 0 || id >= tok->vocab_size())
      throw Error(cat("token id ", id, " outside the vocabulary of ", tok->vocab_size()));
  }
  const std::string text = tok->decode(o.ids);
  if (o.json) {
    std::cout << nlohmann::ordered_json{{"text", text}}.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
              << std::endl;
    return;
  }
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fputc('\n', stdout);
}

}  // namespace

void register_tokenize(CLI::App& app) {
  auto t = std::make_shared<TokenizeOptions>();
  CLI::App* cmd = app.add_subcommand("tokenize", "Token ids of a text");
  cmd->add_option("-m,--model", t->model, "Model or vocabulary file")->required();
  cmd->add_option("text", t->texts, "Texts to tokenize, each on its own output line (after --, texts may start with -)")
      ->required();
  cmd->add_flag("--json", t->json, "Print JSON with ids and pieces");
  cmd->add_flag("--no-bos", t->no_bos, "Do not add BOS/EOS the model asks for");
  cmd->add_flag("--special", t->special, "Recognise special tokens in the text");
  cmd->callback([t] { tokenize(*t); });

  auto d = std::make_shared<DetokenizeOptions>();
  CLI::App* dcmd = app.add_subcommand("detokenize", "Text of token ids");
  dcmd->add_option("-m,--model", d->model, "Model or vocabulary file")->required();
  dcmd->add_option("ids", d->ids, "Token ids")->required();
  dcmd->add_flag("--json", d->json, "Print JSON");
  dcmd->callback([d] { detokenize(*d); });
}

}  // namespace tpinfer::cli
