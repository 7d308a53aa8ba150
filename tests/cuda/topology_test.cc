// place_ranks on made-up topologies (a pure function: runs without a GPU).
#include "comm/cuda/topology.h"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "core/error.h"

namespace tpinfer::cuda {
namespace {

// n devices, every pair `other`; pairs inside each island NVLink with `lanes`.
Topology islands(int n, const std::vector<std::vector<int>>& groups, LinkKind other, int lanes = 4) {
  Topology t;
  t.n_devices = n;
  for (int i = 0; i < n; ++i) t.names.push_back("fake" + std::to_string(i));
  t.link.assign(static_cast<size_t>(n * n), other);
  t.nvlinks.assign(static_cast<size_t>(n * n), 0);
  for (int i = 0; i < n; ++i) t.link[static_cast<size_t>(i * n + i)] = LinkKind::Same;
  for (const auto& g : groups) {
    for (int a : g) {
      for (int b : g) {
        if (a == b) continue;
        t.link[static_cast<size_t>(a * n + b)] = LinkKind::NVLink;
        t.nvlinks[static_cast<size_t>(a * n + b)] = lanes;
      }
    }
  }
  return t;
}

std::set<int> group_of(const std::vector<int>& placement, int stage, int tp) {
  return std::set<int>(placement.begin() + stage * tp, placement.begin() + (stage + 1) * tp);
}

TEST(PlaceRanks, TwoNvlinkIslandsOfFourGiveOneIslandPerTpGroup) {
  const Topology t = islands(8, {{0, 1, 2, 3}, {4, 5, 6, 7}}, LinkKind::PeerPCIe);
  const std::vector<int> p = place_ranks(t, 4, 2);
  ASSERT_EQ(p.size(), 8u);
  EXPECT_EQ(group_of(p, 0, 4), (std::set<int>{0, 1, 2, 3}));
  EXPECT_EQ(group_of(p, 1, 4), (std::set<int>{4, 5, 6, 7}));
}

TEST(PlaceRanks, InterleavedIslandsAreFoundByLinksNotIndices) {
  const Topology t = islands(8, {{0, 2, 4, 6}, {1, 3, 5, 7}}, LinkKind::Host);
  const std::vector<int> p = place_ranks(t, 4, 2);
  EXPECT_EQ(group_of(p, 0, 4), (std::set<int>{0, 2, 4, 6}));
  EXPECT_EQ(group_of(p, 1, 4), (std::set<int>{1, 3, 5, 7}));
  // tp = 2: every pair inside an island.
  const std::vector<int> q = place_ranks(t, 2, 4);
  for (int s = 0; s < 4; ++s) {
    EXPECT_EQ(t.at(q[static_cast<size_t>(2 * s)], q[static_cast<size_t>(2 * s + 1)]), LinkKind::NVLink) << "stage " << s;
  }
}

TEST(PlaceRanks, PrefersPeerPcieOverHostAndMoreLanes) {
  // 4 GPUs over PCIe; 2-3 peer-capable, the rest through the host.
  Topology t = islands(4, {}, LinkKind::Host);
  t.link[2 * 4 + 3] = t.link[3 * 4 + 2] = LinkKind::PeerPCIe;
  EXPECT_EQ(group_of(place_ranks(t, 2, 1), 0, 2), (std::set<int>{2, 3}));
  // NVLink pairs 0-1 (2 lanes) and 2-3 (8 lanes): the 8-lane pair first.
  Topology u = islands(4, {{0, 1}}, LinkKind::PeerPCIe, 2);
  u.link[2 * 4 + 3] = u.link[3 * 4 + 2] = LinkKind::NVLink;
  u.nvlinks[2 * 4 + 3] = u.nvlinks[3 * 4 + 2] = 8;
  const std::vector<int> p = place_ranks(u, 2, 2);
  EXPECT_EQ(group_of(p, 0, 2), (std::set<int>{2, 3}));
  EXPECT_EQ(group_of(p, 1, 2), (std::set<int>{0, 1}));
}

TEST(PlaceRanks, PcieOnlyBoxTakesDevicesInOrder) {
  const Topology t = islands(4, {}, LinkKind::PeerPCIe);
  EXPECT_EQ(place_ranks(t, 2, 1), (std::vector<int>{0, 1}));
  EXPECT_EQ(place_ranks(t, 2, 2), (std::vector<int>{0, 1, 2, 3}));
  EXPECT_EQ(place_ranks(t, 1, 1), (std::vector<int>{0}));
}

TEST(PlaceRanks, TooManyRanksThrowsNamingTheCounts) {
  const Topology t = islands(8, {{0, 1, 2, 3}, {4, 5, 6, 7}}, LinkKind::PeerPCIe);
  try {
    place_ranks(t, 4, 3);
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("tp 4"), std::string::npos) << what;
    EXPECT_NE(what.find("pp 3"), std::string::npos) << what;
    EXPECT_NE(what.find("8 found"), std::string::npos) << what;
  }
  EXPECT_THROW(place_ranks(Topology{}, 1, 1), ConfigError);
  EXPECT_THROW(place_ranks(t, 0, 1), ConfigError);
}

TEST(Topology, DescribeShowsLinksAndLanes) {
  const Topology t = islands(2, {{0, 1}}, LinkKind::Host, 12);
  const std::string d = t.describe();
  EXPECT_NE(d.find("GPU0: fake0"), std::string::npos) << d;
  EXPECT_NE(d.find("NV12"), std::string::npos) << d;
  EXPECT_EQ(std::string(link_name(LinkKind::PeerPCIe)), "pcie-peer");
}

}  // namespace
}  // namespace tpinfer::cuda
