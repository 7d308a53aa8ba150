// The bundled bible GGUF cut short at 50 offsets, through the real binary:
// each must give a clean error and exit code 1. The library test
// (GgufHostile.TruncatedBibleAtFiftyOffsets) checks the message of the reader;
// this one checks what a user sees: `run` and `inspect` exit with 1 (not a
// signal, not an abort), print "error: " and the file's name on stderr, and
// stream nothing to stdout.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <vector>

#include "formats/gguf_cuts.h"
#include "test_util.h"

namespace tpinfer {
namespace {

using testing::TempDir;

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

TEST(CliMalformed, TruncatedBibleAtFiftyOffsets) {
  const std::string src = testing::source_dir() + "/models/bible-q8_0.gguf";
  const std::string whole = read_file(src);
  ASSERT_GT(whole.size(), 1000000u) << src;
  const testing::GgufCuts c = testing::gguf_truncation_offsets(src);  // the library test's offsets
  const std::vector<uint64_t>& cuts = c.cuts;
  ASSERT_GT(c.first_data, 1000u);
  ASSERT_EQ(cuts.size(), 50u);
  ASSERT_EQ(std::set<uint64_t>(cuts.begin(), cuts.end()).size(), 50u);

  TempDir dir;
  const std::string out_file = dir.file("stdout.txt");
  for (const uint64_t cut : cuts) {
    ASSERT_LT(cut, whole.size());
    const std::string path = dir.file("cut-" + std::to_string(cut) + ".gguf");
    std::ofstream(path, std::ios::binary).write(whole.data(), static_cast<std::streamsize>(cut));
    for (const std::string& cmd : {"run -m " + path + " -p hi -n 1", "inspect -m " + path}) {
      // stderr comes back through the pipe, stdout goes to a file.
      std::string err;
      const int code = testing::run_command("{ " + testing::binary() + " " + cmd + " 2>&1 >" + out_file + "; }", &err);
      EXPECT_EQ(code, 1) << "cut at " << cut << ": " << cmd << " (above 128: killed by signal " << code - 128 << ")\n"
                         << err;
      EXPECT_NE(err.find("error: "), std::string::npos) << "cut at " << cut << ": " << cmd << "\n" << err;
      EXPECT_NE(err.find(path), std::string::npos) << "cut at " << cut << ": the message must name the file\n" << err;
      EXPECT_EQ(err.find("Sanitizer"), std::string::npos) << err;
      EXPECT_EQ(err.find("terminate called"), std::string::npos) << err;
      EXPECT_EQ(read_file(out_file), "") << "cut at " << cut << ": " << cmd;
    }
    std::filesystem::remove(path);
  }
}

}  // namespace
}  // namespace tpinfer
