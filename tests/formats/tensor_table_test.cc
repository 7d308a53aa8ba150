// The tensor table against real files and against what walks it: every
// tensor it declares for a config is in the model synth writes for that config,
// in both formats, and in the trained Bible model's files, with the table's
// shape, and every tensor they hold is declared; ShardPlan splits each tensor
// as its row says; the planner's model shapes are the table's tensors.
#include "formats/tensor_table.h"

#include <gtest/gtest.h>

#include <map>
#include <set>

#include "core/error.h"
#include "engine/engine.h"
#include "formats/gguf.h"
#include "formats/model_source.h"
#include "model/synth.h"
#include "parallel/shard_plan.h"
#include "planner/model_shape.h"
#include "test_util.h"

namespace tpinfer {
namespace {

using testing::TempDir;

// Small specs covering every architecture and every presence condition of
// the table: tied embeddings, Q/K/V biases, Q/K norms, experts, the shared
// expert and its gate, the Llama 3.1 rope_freqs tensor.
std::vector<std::pair<std::string, SynthSpec>> specs() {
  std::vector<std::pair<std::string, SynthSpec>> out;
  for (const std::string& preset : synth_preset_names()) out.emplace_back(preset, *synth_preset(preset));
  for (Arch arch : {Arch::Llama, Arch::Mistral, Arch::Qwen2, Arch::Qwen3}) {
    for (bool tied : {false, true}) {
      SynthSpec s;
      s.arch = arch;
      s.tied_embeddings = tied;
      s.rope_llama3 = arch == Arch::Llama && !tied;
      s.qkv_bias = arch == Arch::Mistral && tied;
      out.emplace_back(cat(arch_name(arch), tied ? " tied" : ""), s);
    }
  }
  for (auto& [name, s] : out) {
    s.layers = 2;
    s.hidden = 64;
    s.heads = 4;
    s.kv_heads = 2;
    s.ffn = 64;
    s.vocab = 300;
    if (s.shared_expert_ffn > 0) s.shared_expert_ffn = 96;
  }
  // Dense multi-head attention: a KV head per query head.
  SynthSpec mha = out.back().second;
  mha.arch = Arch::Llama;
  mha.kv_heads = mha.heads;
  mha.qkv_bias = false;
  mha.rope_llama3 = false;
  out.emplace_back("llama mha", mha);
  return out;
}

TEST(TensorTable, MatchesWhatSynthWritesForEveryArchitecture) {
  TempDir dir;
  for (const auto& [label, spec] : specs()) {
    for (const char* file : {"m.gguf", "hf"}) {
      SCOPED_TRACE(cat(label, " ", file));
      const std::string path = dir.file(cat(label, file));
      write_synth_model(spec, path);
      const auto src = ModelSource::open(path);
      const ModelConfig& c = src->config();
      std::map<std::string, std::vector<int64_t>> declared;
      for (const ModelTensor& t : model_tensors(c)) {
        const std::string name = t.name();
        EXPECT_TRUE(declared.emplace(name, tensor_shape(*t.decl, c)).second) << name << " declared twice";
        const TensorInfo* info = src->find(name);
        if (!t.decl->presence.required) {
          // Only GGUF carries rope_freqs; the folder has it in config.json.
          EXPECT_EQ(info != nullptr, spec.rope_llama3 && std::string(file) == "m.gguf") << name;
          continue;
        }
        ASSERT_NE(info, nullptr) << name << " declared but not written";
        EXPECT_EQ(info->shape, tensor_shape(*t.decl, c)) << name;
      }
      for (const TensorInfo& t : src->tensors()) {
        EXPECT_TRUE(declared.count(t.name)) << t.name << " written but not declared";
        std::string why;
        EXPECT_NE(find_model_tensor(c, t.name, &why), nullptr) << t.name << ": " << why;
      }
    }
  }
}

// The trained model as llama.cpp's converter wrote it (GGUF, q8_0 and bf16)
// and as PyTorch saved it (the bf16 folder): the table declares exactly its
// tensors, with their shapes.
TEST(TensorTable, MatchesTheBibleModelFiles) {
  const std::string dir = testing::shared_dir() + "/models/bible";
  for (const char* file : {"bible-q8_0.gguf", "bible-bf16.gguf", "bible-bf16"}) {
    SCOPED_TRACE(file);
    const auto src = ModelSource::open(dir + "/" + file);
    const ModelConfig& c = src->config();
    std::map<std::string, std::vector<int64_t>> declared;
    for (const ModelTensor& t : model_tensors(c)) {
      if (t.decl->presence.required) declared.emplace(t.name(), tensor_shape(*t.decl, c));
    }
    EXPECT_EQ(declared.size(), 75u);  // 8 layers of 9, the embedding, the final norm, the lm_head
    // The file's own names for a GGUF file, the canonical ones for the folder.
    std::map<std::string, std::vector<int64_t>> held;
    if (src->gguf() != nullptr) {
      const auto gguf = GgufFile::open(dir + "/" + file);
      for (const TensorInfo& t : gguf->tensors()) held.emplace(t.name, t.shape);
    } else {
      for (const TensorInfo& t : src->tensors()) held.emplace(t.name, t.shape);
    }
    EXPECT_EQ(held, declared);
    EXPECT_EQ(tensor_shape(tensor_decl(TensorId::AttnK), c),
              (std::vector<int64_t>{int64_t{c.n_kv_heads} * c.head_dim, c.hidden}));
    // The block constraints of the row-parallel matrices, as the engine reads them.
    const ShardConstraints sc = shard_constraints(*src);
    const int64_t block = std::string(file) == "bible-q8_0.gguf" ? 32 : 1;
    EXPECT_EQ(sc.attn_output_block, block);
    EXPECT_EQ(sc.ffn_down_block, block);
    EXPECT_EQ(sc.shared_down_block, 1);
  }
}

TEST(TensorTable, NamesRoundTrip) {
  for (const TensorDecl& d : tensor_table(Arch::Llama)) {
    EXPECT_EQ(&tensor_decl(d.id), &d);
    const std::string name = tensor_name(d.id, 3, 5);
    int layer = -2, expert = -2;
    EXPECT_EQ(find_tensor_decl(Arch::Qwen2Moe, name, &layer, &expert), &d) << name;
    EXPECT_EQ(layer, d.scope == TensorScope::Global ? -1 : 3) << name;
    EXPECT_EQ(expert, d.scope == TensorScope::Expert ? 5 : -1) << name;
  }
  EXPECT_EQ(tensor_name(TensorId::AttnQ, 3), "blk.3.attn_q.weight");
  EXPECT_EQ(tensor_name(TensorId::FfnDownExp, 1, 7), "blk.1.ffn_down.7.weight");
  EXPECT_EQ(tensor_name(TensorId::FfnDownExp, 1, 7), expert_tensor_name(1, "ffn_down", 7));
  for (const char* bad : {"blk.0.attn_rot_embd.weight", "blk.01.attn_q.weight", "blk.0.ffn_gate_exps.weight",
                          "blk.x.attn_q.weight", "attn_q.weight", "blk.0.ffn_gate.weight.0", "token_embd"}) {
    EXPECT_EQ(find_tensor_decl(Arch::Llama, bad), nullptr) << bad;
  }
}

// Row-parallel matrices are exactly the tensors whose block size constrains the
// split, one kind per unit.
TEST(TensorTable, RowParallelTensorsConstrainTheirUnit) {
  ModelConfig c;
  c.n_layers = 1;
  c.n_experts = 2;
  c.shared_expert_ffn = 8;
  ShardConstraints sc;
  for (const ModelTensor& t : model_tensors(c)) sc.add(*t.decl, t.decl->split == SplitKind::Cols ? 32 : 256);
  EXPECT_EQ(sc.attn_output_block, 32);
  EXPECT_EQ(sc.ffn_down_block, 32);
  EXPECT_EQ(sc.shared_down_block, 32);
  std::set<TensorId> cols;
  for (const TensorDecl& d : tensor_table(Arch::Llama)) {
    if (d.split == SplitKind::Cols) cols.insert(d.id);
  }
  EXPECT_EQ(cols, (std::set<TensorId>{TensorId::AttnOutput, TensorId::FfnDownExp, TensorId::FfnDownShexp,
                                      TensorId::FfnDown}));
}

// ShardPlan::slice splits every tensor a model has as its row says (routed
// experts included, tensor-parallel), and the ranks' row or column ranges of a
// split tensor cover it.
TEST(TensorTable, ShardPlanSplitsAsTheRowsSay) {
  TempDir dir;
  for (const auto& [label, spec] : specs()) {
    SCOPED_TRACE(label);
    const std::string path = dir.file(cat(label, ".gguf"));
    write_synth_model(spec, path);
    const ModelConfig c = ModelSource::open(path)->config();
    ParallelConfig p;
    p.tp = 2;
    const ShardPlan plan = ShardPlan::build(c, p);
    for (const ModelTensor& t : model_tensors(c)) {
      const std::vector<int64_t> shape = tensor_shape(*t.decl, c);
      int64_t covered = 0;
      for (int r = 0; r < p.tp; ++r) {
        const TensorSlice sl = plan.slice(t.name(), r);
        ASSERT_EQ(sl.kind, t.decl->split) << t.name();
        if (sl.kind != SplitKind::Replicated) covered += sl.range.size();
      }
      // KV heads may be replicated on both ranks; every other split is a partition.
      const int64_t extent = t.decl->split == SplitKind::Cols ? shape.back() : shape.front();
      if (t.decl->split != SplitKind::Replicated && t.decl->unit != SplitUnit::KvHeads) {
        EXPECT_EQ(covered, extent) << t.name();
      }
    }
  }
}

// The planner's model shapes are the table's tensors for their config: every
// required tensor once, a layer's routed experts as expert 0 with `copies` =
// the number of experts, each with the table's shape; and from a file, the
// block constraints are the engine's.
TEST(TensorTable, PlannerShapesAreTheTable) {
  auto expect_table = [](const planner::ModelShape& s) {
    const ModelConfig& c = s.config;
    std::vector<std::string> want, got;
    for (const ModelTensor& t : model_tensors(c)) {
      if (t.decl->presence.required && t.expert <= 0) want.push_back(t.name());
    }
    for (const planner::PlanTensor& t : s.tensors) {
      got.push_back(t.name);
      int layer = -2, expert = -2;
      const TensorDecl* d = find_tensor_decl(c.arch, t.name, &layer, &expert);
      ASSERT_NE(d, nullptr) << t.name;
      EXPECT_EQ(t.shape, tensor_shape(*d, c)) << t.name;
      EXPECT_EQ(t.layer, layer) << t.name;
      EXPECT_EQ(t.expert, d->scope == TensorScope::Expert) << t.name;
      EXPECT_EQ(t.copies, t.expert ? c.n_experts : 1) << t.name;
    }
    EXPECT_EQ(got, want);
  };
  for (const std::string& name : planner::named_shape_names()) {
    SCOPED_TRACE(name);
    expect_table(*planner::named_shape(name));
  }
  TempDir dir;
  for (auto [label, spec] : specs()) {
    SCOPED_TRACE(label);
    spec.dtype = DType::Q8_0;
    const std::string path = dir.file(cat(label, ".gguf"));
    write_synth_model(spec, path);
    const auto src = ModelSource::open(path);
    const planner::ModelShape shape = planner::shape_from_source(*src);
    expect_table(shape);
    const ShardConstraints a = planner::shape_constraints(shape), b = shard_constraints(*src);
    EXPECT_EQ(a.attn_output_block, b.attn_output_block);
    EXPECT_EQ(a.ffn_down_block, b.ffn_down_block);
    EXPECT_EQ(a.shared_down_block, b.shared_down_block);
    EXPECT_EQ(b.attn_output_block, 32);
  }
}

}  // namespace
}  // namespace tpinfer
