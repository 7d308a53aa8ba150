// The stage-to-stage message codec: what a stage encodes the next decodes to
// the same words, rows, forward times and expert loads, over fresh random
// contents; a header that does not match what must come is an error naming the
// sender, before any payload is received.
#include "engine/stage_message.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "core/error.h"

namespace tpinfer {
namespace {

TEST(StageMessage, WhatIsEncodedDecodesAlike) {
  std::mt19937 rng(std::random_device{}());
  std::uniform_int_distribution<int32_t> word(-1000, 1000);
  std::normal_distribution<float> value(0.0f, 3.0f);
  std::uniform_int_distribution<int64_t> nanos(1, int64_t{1} << 40);
  for (int trial = 0; trial < 20; ++trial) {
    const int64_t width = 1 + trial * 7;
    const int64_t rows = trial % 5;
    std::vector<int32_t> words(static_cast<size_t>(trial * 3 + 1));
    for (int32_t& w : words) w = word(rng);
    std::vector<float> data(static_cast<size_t>(rows * width));
    for (float& v : data) v = value(rng);
    std::vector<int64_t> busy(static_cast<size_t>(1 + trial % 3)), loads(static_cast<size_t>(trial % 4 * 8));
    for (int64_t& b : busy) b = nanos(rng);
    for (int64_t& l : loads) l = nanos(rng);

    StageMessage sent;
    sent.encode(StageCommand::Run, words, data.data(), rows, width, busy, loads);
    // The receiving side: header first, then a payload of the size it implies.
    StageMessage got;
    got.expect(sent.header(), StageCommand::Run, static_cast<int>(busy.size()), width, loads.size(), 3);
    ASSERT_EQ(got.payload_size(), sent.payload_size());
    std::copy_n(sent.payload(), sent.payload_size(), got.payload());

    std::vector<int32_t> words_out;
    std::vector<int64_t> busy_out, loads_out;
    got.words(words_out);
    got.nanos(busy_out);
    got.loads(loads_out);
    EXPECT_EQ(words_out, words);
    EXPECT_EQ(busy_out, busy);
    EXPECT_EQ(loads_out, loads);
    ASSERT_EQ(got.row_bytes(), data.size() * sizeof(float));
    EXPECT_EQ(std::vector<float>(got.rows(), got.rows() + data.size()), data);
    EXPECT_EQ(got.header().rows, rows);
  }
}

TEST(StageMessage, LogitsCarryNoWords) {
  const std::vector<float> logits = {0.5f, -1.25f, 3.0f, 7.5f, -2.0f, 0.125f};
  StageMessage sent;
  sent.encode(StageCommand::Logits, {}, logits.data(), 2, 3, {11, 22}, {});
  EXPECT_EQ(sent.header().words, 0);
  EXPECT_EQ(sent.payload_size(), logits.size() * sizeof(float) + 2 * sizeof(int64_t));
  StageMessage got;
  got.expect(sent.header(), StageCommand::Logits, 2, 3, 0, 1);
  std::copy_n(sent.payload(), sent.payload_size(), got.payload());
  EXPECT_EQ(std::vector<float>(got.rows(), got.rows() + logits.size()), logits);
}

TEST(StageMessage, MalformedHeaderNamesTheSender) {
  StageMessage sent;
  sent.encode(StageCommand::Run, {1, 2, 3}, nullptr, 0, 4, {5}, {});
  StageMessage got;
  auto error = [&](StageHeader h, StageCommand want, int stages) -> std::string {
    try {
      got.expect(h, want, stages, 4, 0, 6);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  // A logits message where a run must come, too few stages, negative counts.
  EXPECT_NE(error(sent.header(), StageCommand::Logits, 1).find("from rank 6"), std::string::npos);
  EXPECT_NE(error(sent.header(), StageCommand::Run, 2).find("from rank 6"), std::string::npos);
  StageHeader negative = sent.header();
  negative.rows = -1;
  EXPECT_NE(error(negative, StageCommand::Run, 1).find("malformed stage message"), std::string::npos);
  EXPECT_EQ(error(sent.header(), StageCommand::Run, 1), "");
}

}  // namespace
}  // namespace tpinfer
