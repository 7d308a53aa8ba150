// Runs tests/server/openai_client_test.sh: the official `openai` npm package
// against tpinfer serve. Skipped, with the reason, where node or npm is missing
// or the npm registry cannot be reached.
#include <gtest/gtest.h>

#include "server/server_process.h"

namespace tpinfer {
namespace {

TEST(OpenAiClient, OfficialNodePackageStreamsChatAndCompletes) {
  std::string out;
  if (testing::run_command("command -v node && command -v npm", &out) != 0) {
    GTEST_SKIP() << "node or npm not found: the official openai client test needs them";
  }
  const int code = testing::run_command("bash " + testing::source_dir() + "/tests/server/openai_client_test.sh " +
                                            testing::binary() + " " + testing::bible_model(),
                                        &out);
  if (code == 77) GTEST_SKIP() << out;
  EXPECT_EQ(code, 0) << out;
  if (code == 0) std::printf("%s", out.c_str());
}

// Tool calls (tests/server/openai_tools_test.sh): for each format (hermes,
// llama3_json, mistral), forced calls whole and streamed, "required" with
// parallel calls off, and the call's result sent back, through the official
// client.
TEST(OpenAiClient, ToolCallsInEveryFormatWholeAndStreamed) {
  std::string out;
  if (testing::run_command("command -v node && command -v npm", &out) != 0) {
    GTEST_SKIP() << "node or npm not found: the official openai client test needs them";
  }
  const int code =
      testing::run_command("bash " + testing::source_dir() + "/tests/server/openai_tools_test.sh " + testing::binary() +
                               " " + testing::bible_model() + " " + testing::shared_dir() + "/models/templates",
                           &out);
  if (code == 77) GTEST_SKIP() << out;
  EXPECT_EQ(code, 0) << out;
  if (code == 0) std::printf("%s", out.c_str());
}

}  // namespace
}  // namespace tpinfer
