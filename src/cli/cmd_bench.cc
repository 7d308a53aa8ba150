// tpinfer bench: llama-bench-style prompt-processing and generation speed per
// layout (every tensor-parallel size x every pipeline depth asked for), with
// the share of time in collectives, the pipeline bubble, the bytes per token
// of each parallel dimension, and the achieved memory bandwidth against this
// machine's measured read bandwidth.
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <thread>

#include "backend/cpu/memory_bandwidth.h"
#include "cli/common.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "engine/benchmark.h"

namespace tpinfer::cli {
namespace {

struct BenchOptions {
  ModelOptions model;
  std::string tps = "1";
  std::string pps = "1";
  std::string threads;  // per layout, or one value for all
  int n_prompt = 512;
  int n_gen = 128;
  int reps = 3;
  bool json = false;
  std::string plot;
  SpeculativeCliOptions speculative;
  std::string spec_prompt;
  std::string spec_prompt_file;
};

// The speculative test's default prompt: a passage, then its beginning again,
// so that a model which has read it continues by quoting it (the task where
// guesses copied from earlier text pay).
constexpr const char* kQuotingPrompt =
    "In the beginning God created the heaven and the earth. And the earth was without form, and void; and darkness "
    "was upon the face of the deep. And the Spirit of God moved upon the face of the waters. And God said, Let there "
    "be light: and there was light.\nIn the beginning God created the heaven";

struct Row {
  int tp, pp, threads;
  BenchResult prompt, tg;
  uint64_t weight_bytes;
  std::optional<SpeculativeBenchResult> spec;
};

void write_svg(const std::string& path, const std::vector<Row>& rows) {
  const double w = 640, h = 400, left = 70, right = 70, top = 40, bottom = 60;
  double max_tps = 1;
  for (const Row& r : rows) max_tps = std::max({max_tps, r.tg.median_tps, r.prompt.median_tps});
  const auto x_of = [&](size_t i) {
    return rows.size() == 1 ? left + (w - left - right) / 2
                            : left + (w - left - right) * static_cast<double>(i) / static_cast<double>(rows.size() - 1);
  };
  const auto y_tps = [&](double v) { return top + (h - top - bottom) * (1 - v / max_tps); };
  const auto y_share = [&](double v) { return top + (h - top - bottom) * (1 - v); };
  std::ostringstream s;
  s << "<svg xmlns='http://www.w3.org/2000/svg' width='" << w << "' height='" << h << "' font-family='sans-serif' font-size='12'>\n";
  s << "<rect width='100%' height='100%' fill='white'/>\n";
  s << "<text x='" << w / 2 << "' y='20' text-anchor='middle' font-size='14'>tokens/s and communication share by layout</text>\n";
  s << "<line x1='" << left << "' y1='" << h - bottom << "' x2='" << w - right << "' y2='" << h - bottom << "' stroke='black'/>\n";
  s << "<line x1='" << left << "' y1='" << top << "' x2='" << left << "' y2='" << h - bottom << "' stroke='black'/>\n";
  s << "<line x1='" << w - right << "' y1='" << top << "' x2='" << w - right << "' y2='" << h - bottom << "' stroke='black'/>\n";
  for (int k = 0; k <= 4; ++k) {
    const double v = max_tps * k / 4;
    s << "<text x='" << left - 6 << "' y='" << y_tps(v) + 4 << "' text-anchor='end'>" << static_cast<int>(v) << "</text>\n";
    s << "<text x='" << w - right + 6 << "' y='" << y_share(k / 4.0) + 4 << "'>" << 25 * k << "%</text>\n";
  }
  s << "<text x='15' y='" << h / 2 << "' transform='rotate(-90 15 " << h / 2 << ")' text-anchor='middle'>tokens/s</text>\n";
  s << "<text x='" << w - 15 << "' y='" << h / 2 << "' transform='rotate(90 " << w - 15 << " " << h / 2
    << ")' text-anchor='middle'>time in collectives (decode)</text>\n";
  auto polyline = [&](const char* color, const std::function<double(const Row&)>& y, bool dashed) {
    s << "<polyline fill='none' stroke='" << color << "' stroke-width='2'" << (dashed ? " stroke-dasharray='6,4'" : "") << " points='";
    for (size_t i = 0; i < rows.size(); ++i) s << x_of(i) << "," << y(rows[i]) << " ";
    s << "'/>\n";
    for (size_t i = 0; i < rows.size(); ++i) s << "<circle cx='" << x_of(i) << "' cy='" << y(rows[i]) << "' r='3' fill='" << color << "'/>\n";
  };
  polyline("#1f77b4", [&](const Row& r) { return y_tps(r.tg.median_tps); }, false);
  polyline("#2ca02c", [&](const Row& r) { return y_tps(r.prompt.median_tps); }, false);
  polyline("#d62728", [&](const Row& r) { return y_share(r.tg.median_collective_share); }, true);
  for (size_t i = 0; i < rows.size(); ++i) {
    s << "<text x='" << x_of(i) << "' y='" << h - bottom + 18 << "' text-anchor='middle'>tp " << rows[i].tp
      << (rows[i].pp > 1 ? " pp " + std::to_string(rows[i].pp) : std::string()) << "</text>\n";
  }
  s << "<text x='" << left << "' y='" << h - 12 << "' fill='#1f77b4'>decode tok/s</text>";
  s << "<text x='" << left + 120 << "' y='" << h - 12 << "' fill='#2ca02c'>prefill tok/s</text>";
  s << "<text x='" << left + 240 << "' y='" << h - 12 << "' fill='#d62728'>collective share (decode)</text>\n";
  s << "</svg>\n";
  std::ofstream f(path);
  f << s.str();
  if (!f) throw Error(cat(path, ": cannot write"));
}

std::string pct_list(const std::vector<double>& v) {
  std::string s;
  for (double x : v) {
    char buf[16];
    std::snprintf(buf, sizeof(buf), "%s%.0f%%", s.empty() ? "" : " ", 100 * x);
    s += buf;
  }
  return s;
}

void run(BenchOptions& o) {
  const std::vector<int> tps = parse_int_list(o.tps, "-tp");
  const std::vector<int> pps = parse_int_list(o.pps, "-pp");
  std::vector<std::pair<int, int>> layouts;
  for (int pp : pps) {
    for (int tp : tps) layouts.push_back({tp, pp});
  }
  std::vector<int> threads;
  if (!o.threads.empty()) threads = parse_int_list(o.threads, "--threads-per-rank");
  if (threads.size() > 1 && threads.size() != layouts.size()) {
    throw ConfigError(cat("--threads-per-rank has ", threads.size(), " values for ", layouts.size(),
                          " layouts (tp sizes x pp depths, tp varying fastest)"));
  }
  if (!o.model.pipeline_split.empty() && pps.size() != 1) {
    throw ConfigError("--pipeline-split needs a single pipeline depth (-pp N)");
  }
  const Speculation spec_method = parse_speculation(o.speculative.method);
  std::string spec_text = o.spec_prompt.empty() ? kQuotingPrompt : o.spec_prompt;
  if (!o.spec_prompt_file.empty()) {
    std::ifstream f(o.spec_prompt_file, std::ios::binary);
    if (!f) throw ConfigError(cat("--spec-prompt-file: cannot read '", o.spec_prompt_file, "'"));
    spec_text.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  }
  const int cores = available_cpus();  // the cores this process was given
  std::vector<Row> rows;
  int max_threads = 1;
  for (size_t i = 0; i < layouts.size(); ++i) {
    const auto [tp, pp] = layouts[i];
    ModelOptions m = o.model;
    m.tp = tp;
    m.pp = pp;
    m.threads_per_rank = threads.empty() ? default_threads_per_rank(tp * pp) : threads[threads.size() == 1 ? 0 : i];
    // The speculative test's prompt is text of unknown length: room for 4096 tokens of it.
    if (m.ctx_size == 0) {
      m.ctx_size = std::max(o.n_prompt, spec_method == Speculation::None ? 0 : 4096) + o.n_gen + 16 +
                   kMaxSpeculativeTokens;
    }
    const std::unique_ptr<Engine> engine_ptr = open_engine(m);
    if (!engine_ptr) continue;  // an mpi worker
    Engine& engine = *engine_ptr;
    Row r{tp, pp, m.threads_per_rank, {}, {}, 0, std::nullopt};
    for (const RankReport& rep : engine.rank_reports()) r.weight_bytes += rep.weight_bytes;
    if (o.n_prompt > 0) r.prompt = bench_prompt(engine, o.n_prompt, o.reps);
    if (o.n_gen > 0) r.tg = bench_generate(engine, o.n_gen, o.reps);
    if (spec_method != Speculation::None) {
      const std::unique_ptr<Engine> draft = open_draft(o.speculative, m, engine);
      const std::vector<int32_t> prompt = engine.tokenizer().encode(spec_text, /*add_special=*/true, false);
      r.spec = bench_speculative(engine, prompt, std::max(o.n_gen, 2), o.reps,
                                 speculative_options(o.speculative, draft.get()));
    }
    max_threads = std::max(max_threads, tp * pp * m.threads_per_rank);
    rows.push_back(r);
    if (!o.json) std::fprintf(stderr, "tp %d pp %d done\n", tp, pp);
  }
  if (rows.empty()) return;  // an mpi worker
  const double machine_bw = cpu::measure_read_bandwidth(std::min(max_threads, cores));
  auto result_json = [](const BenchResult& b) {
    return nlohmann::ordered_json{{"tokens", b.tokens},
                                  {"tokens_per_second", b.median_tps},
                                  {"min", b.min_tps},
                                  {"max", b.max_tps},
                                  {"stddev", b.stddev_tps},
                                  {"collective_share", b.median_collective_share},
                                  {"wait_share", b.measures_wait ? nlohmann::ordered_json(b.median_wait_share)
                                                                 : nlohmann::ordered_json()},
                                  {"link_share", b.median_link_share},
                                  {"critical_comm_share", b.median_critical_comm_share},
                                  {"rank_comm_share", b.rank_comm_share},
                                  {"rank_wait_share", b.rank_wait_share},
                                  {"comm_bytes_per_token", b.comm_bytes_per_token},
                                  {"all_reduces_per_token", b.all_reduces_per_token},
                                  {"pp_bytes_per_token", b.pp_bytes_per_token},
                                  {"bubble_share", b.median_bubble_share},
                                  {"stage_busy_share", b.stage_busy_share}};
  };
  nlohmann::ordered_json out = {{"model", o.model.model},
                                {"machine_read_bandwidth", machine_bw},
                                {"expert_parallel", o.model.expert_parallel},
                                {"sampling_gather", o.model.sampling_gather},
                                {"runs", nlohmann::ordered_json::array()}};
  auto spec_json = [&](const SpeculativeBenchResult& b) {
    return nlohmann::ordered_json{{"method", o.speculative.method},
                                  {"num_speculative_tokens", o.speculative.k},
                                  {"tokens", b.tokens},
                                  {"tokens_per_second_off", b.median_off_tps},
                                  {"tokens_per_second_on", b.median_on_tps},
                                  {"speedup", b.median_off_tps > 0 ? b.median_on_tps / b.median_off_tps : 0.0},
                                  {"acceptance_rate", b.acceptance_rate},
                                  {"tokens_per_forward", b.tokens_per_forward},
                                  {"decode_forwards_off", b.decode_forwards_off},
                                  {"decode_forwards_on", b.decode_forwards_on},
                                  {"same_output", b.same_output},
                                  {"samples_off", b.off_tps},
                                  {"samples_on", b.on_tps}};
  };
  for (const Row& r : rows) {
    const double achieved = static_cast<double>(r.weight_bytes) * r.tg.median_tps;
    // "pp" / "tg" are llama-bench's tests (prompt processing, text generation);
    // the pipeline depth is pipeline_parallel_size.
    out["runs"].push_back({{"tp", r.tp},
                           {"pipeline_parallel_size", r.pp},
                           {"threads_per_rank", r.threads},
                           {"weight_bytes", r.weight_bytes},
                           {"pp", result_json(r.prompt)},
                           {"tg", result_json(r.tg)},
                           {"achieved_bandwidth", achieved},
                           {"bandwidth_fraction", achieved / machine_bw}});
    if (r.spec) out["runs"].back()["speculative"] = spec_json(*r.spec);
  }
  if (!o.plot.empty()) write_svg(o.plot, rows);
  if (o.json) {
    std::cout << out.dump(2) << std::endl;
    return;
  }
  std::printf("model: %s%s | machine read bandwidth: %.1f GB/s\n\n", o.model.model.c_str(),
              o.model.expert_parallel ? " (expert parallel)" : "", machine_bw / 1e9);
  std::printf("| tp | stages | threads/rank | test | tokens/s | ± stddev | tp comm share | waiting | link | "
              "critical path | tp bytes/token | all-reduces/token | pp bytes/token | bubble | stage busy | GB/s | of "
              "machine |\n");
  std::printf("|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|\n");
  auto line = [&](const Row& r, const char* test, int n, const BenchResult& b, const std::string& bandwidth) {
    char wait[32] = "n/a", link[32] = "n/a";
    if (b.measures_wait) {
      std::snprintf(wait, sizeof(wait), "%.1f%%", 100 * b.median_wait_share);
      std::snprintf(link, sizeof(link), "%.1f%%", 100 * b.median_link_share);
    }
    std::printf(
        "| %d | %d | %d | %s%d | %.2f | %.2f | %.1f%% | %s | %s | %.1f%% | %.0f | %.2f | %.0f | %.0f%% | %s | %s |\n",
        r.tp, r.pp, r.threads, test, n, b.median_tps, b.stddev_tps, 100 * b.median_collective_share, wait, link,
        100 * b.median_critical_comm_share, b.comm_bytes_per_token, b.all_reduces_per_token, b.pp_bytes_per_token,
        100 * b.median_bubble_share, pct_list(b.stage_busy_share).c_str(), bandwidth.c_str());
  };
  for (const Row& r : rows) {
    const double achieved = static_cast<double>(r.weight_bytes) * r.tg.median_tps;
    if (o.n_prompt > 0) line(r, "pp", o.n_prompt, r.prompt, " | ");
    if (o.n_gen > 0) {
      char bw[64];
      std::snprintf(bw, sizeof(bw), "%.1f | %.0f%%", achieved / 1e9, 100 * achieved / machine_bw);
      line(r, "tg", o.n_gen, r.tg, bw);
    }
  }
  if (spec_method == Speculation::None) return;
  // Speculative decoding: greedy generation from the same prompt, off and on.
  std::printf("\nspeculative decoding (%s, k %d; greedy, %d tokens after a %s prompt):\n\n", o.speculative.method.c_str(),
              o.speculative.k, std::max(o.n_gen, 2), o.spec_prompt.empty() && o.spec_prompt_file.empty() ? "quoting" : "given");
  std::printf("| tp | stages | tok/s off | tok/s on | speedup | accepted | tokens/forward | same output |\n");
  std::printf("|---:|---:|---:|---:|---:|---:|---:|---|\n");
  for (const Row& r : rows) {
    const SpeculativeBenchResult& b = *r.spec;
    std::printf("| %d | %d | %.2f | %.2f | %.2fx | %.0f%% | %.2f | %s |\n", r.tp, r.pp, b.median_off_tps,
                b.median_on_tps, b.median_off_tps > 0 ? b.median_on_tps / b.median_off_tps : 0.0,
                100 * b.acceptance_rate, b.tokens_per_forward, b.same_output ? "yes" : "NO");
  }
}

}  // namespace

void register_bench(CLI::App& app) {
  auto o = std::make_shared<BenchOptions>();
  CLI::App* cmd = app.add_subcommand("bench", "Prompt and generation speed per tensor x pipeline parallel layout");
  cmd->add_option("-m,--model", o->model.model, "Model: a .gguf file or a Hugging Face folder")->required();
  cmd->add_option("-t,--tp,--tensor-parallel-size", o->tps, "Comma-separated tensor-parallel sizes, e.g. 1,2,4");
  cmd->add_option("--pp,--pipeline-parallel-size", o->pps,
                  "Comma-separated pipeline depths, e.g. 1,2; every tp size runs at every depth");
  cmd->add_option("--pipeline-split", o->model.pipeline_split, "Layers per stage (one depth only), e.g. 3,5");
  cmd->add_option("--micro-batches", o->model.micro_batches, "Micro-batches of the prompt (default: one per stage)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--threads-per-rank", o->threads,
                  "Threads per rank: one value, or one per layout (default: cores / (tp x pp); under mpirun, "
                  "cores / ranks on this host)");
  cmd->add_option("--tensor-split", o->model.tensor_split, "Weights per rank for an uneven split");
  cmd->add_option("--comm-timeout", o->model.comm_timeout, "Seconds before a stalled collective is an error");
  cmd->add_option("--kv-cache-dtype", o->model.kv_type, "KV cache type: f32, f16 (default), bf16, q8_0");
  cmd->add_option("-p,--n-prompt", o->n_prompt, "Prompt tokens (0: skip)")->check(CLI::NonNegativeNumber);
  cmd->add_option("-n,--n-gen", o->n_gen, "Generated tokens (0: skip)")->check(CLI::NonNegativeNumber);
  cmd->add_option("-r,--repetitions", o->reps, "Repetitions (median reported)")->check(CLI::PositiveNumber);
  cmd->add_flag("--no-pin", o->model.no_pin, "Do not pin rank threads to cores");
  cmd->add_option("--comm", o->model.comm, "Communication back end: auto, local, mpi");
  cmd->add_option("--comm-compression", o->model.compression, "All-reduce payload: none, bf16, fp8, int8");
  cmd->add_flag("--enable-expert-parallel", o->model.expert_parallel,
                "MoE models: whole experts on ranks instead of every expert split over them");
  add_device_options(*cmd, o->model);
  add_speculative_options(*cmd, o->speculative);
  cmd->add_option("--spec-prompt", o->spec_prompt,
                  "Prompt of the speculative test (default: a passage and its beginning again, a quoting task)");
  cmd->add_option("--spec-prompt-file", o->spec_prompt_file, "File holding the prompt of the speculative test");
  cmd->add_flag("--json", o->json, "Print JSON");
  cmd->add_option("--plot", o->plot, "Write an SVG plot of tokens/s and comm share per layout");
  cmd->callback([o] { run(*o); });
}

}  // namespace tpinfer::cli
