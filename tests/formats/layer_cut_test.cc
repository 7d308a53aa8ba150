// tpinfer cut (formats/layer_cut.h): the first layers of the bible model with
// everything global, byte for byte, and a block count the loaders read.
#include "formats/layer_cut.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "core/error.h"
#include "formats/gguf.h"
#include "formats/model_source.h"
#include "test_util.h"

namespace tpinfer {
namespace {

std::string bible(const std::string& name) { return testing::shared_dir() + "/models/bible/" + name; }

TEST(LayerCut, KeepsTheFirstLayersAndEverythingGlobal) {
  testing::TempDir dir;
  const std::string cut = dir.file("cut.gguf");
  cut_gguf_layers(bible("bible-q8_0.gguf"), 3, cut);
  const auto full = GgufFile::open(bible("bible-q8_0.gguf"));
  const auto part = GgufFile::open(cut);
  EXPECT_EQ(part->get_int("llama.block_count"), 3);
  EXPECT_EQ(part->find("llama.block_count")->type, full->find("llama.block_count")->type);
  EXPECT_EQ(part->metadata().size(), full->metadata().size());
  EXPECT_EQ(part->get_string("tokenizer.ggml.model"), full->get_string("tokenizer.ggml.model"));
  size_t kept = 0;
  for (const TensorInfo& t : full->tensors()) {
    const bool deep = t.name.starts_with("blk.") && std::stoi(t.name.substr(4)) >= 3;
    const TensorInfo* c = part->tensor(t.name);
    if (deep) {
      EXPECT_EQ(c, nullptr) << t.name;
      continue;
    }
    ASSERT_NE(c, nullptr) << t.name;
    EXPECT_EQ(c->type, t.type) << t.name;
    EXPECT_EQ(c->shape, t.shape) << t.name;
    ASSERT_EQ(c->nbytes, t.nbytes) << t.name;
    EXPECT_TRUE(std::equal(c->data, c->data + c->nbytes, t.data)) << t.name;
    ++kept;
  }
  EXPECT_EQ(part->tensors().size(), kept);
  const auto src = ModelSource::open(cut);
  EXPECT_EQ(src->config().n_layers, 3);
  EXPECT_EQ(src->config().vocab, ModelSource::open(bible("bible-q8_0.gguf"))->config().vocab);
}

TEST(LayerCut, LayersOutsideTheModelNameTheRange) {
  testing::TempDir dir;
  for (const int layers : {0, 9}) {
    try {
      cut_gguf_layers(bible("bible-q8_0.gguf"), layers, dir.file("x.gguf"));
      ADD_FAILURE() << layers << " layers passed";
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("the model has 8 layers; valid: 1 to 8"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace tpinfer
