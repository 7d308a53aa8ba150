// How the GPUs of this machine are linked, and where to put the ranks.
// Links come from the CUDA runtime (peer access and its performance rank) and,
// when the driver's NVML library is present (loaded at run time, not linked),
// the NVLink count between each pair. A tensor-parallel group exchanges
// activations twice per layer, so its ranks go where the links are fastest;
// pipeline stages, which send once per micro-batch, take the slower links.
#pragma once

#include <string>
#include <vector>

namespace tpinfer::cuda {

enum class LinkKind { Same, NVLink, PeerPCIe, Host };  // best first
const char* link_name(LinkKind kind);

struct Topology {
  int n_devices = 0;
  std::vector<std::string> names;
  // [i * n_devices + j]: how device i reaches device j.
  std::vector<LinkKind> link;
  std::vector<int> nvlinks;  // NVLink lanes between i and j (0 without NVML)
  LinkKind at(int i, int j) const { return link[static_cast<size_t>(i * n_devices + j)]; }
  // A table for users: one row per device, one column per peer.
  std::string describe() const;
};

// This machine's GPUs (n_devices == 0 without a GPU; never throws for that).
Topology detect_topology();

// Devices for world ranks stage x tp + tp_rank: each TP group on the devices
// with the best links among them (NVLink before PCIe peer before host), groups
// of a pipeline in order. Needs tp x pp <= n_devices (else throws ConfigError).
// A pure function of the topology, unit-tested on made-up ones.
std::vector<int> place_ranks(const Topology& topo, int tp, int pp);

}  // namespace tpinfer::cuda
