// GPU topology (topology.h). Links come from the CUDA runtime: peer access
// between each pair (cudaDeviceCanAccessPeer). NVLink lanes come from NVML,
// loaded with dlopen at run time (libnvidia-ml.so.1 ships with the driver; its
// header is not needed: the few functions and the one struct used are declared
// below with nvml.h's ABI). A pair is NVLink when NVML shows an active link of
// one to the other, or both have active links to NVSwitches (remote ends that
// are not GPUs of this process: an NVSwitch box, whose GPUs all reach each
// other over NVLink); lanes are then the direct lanes, or the smaller of the two
// switch lane counts. Without NVML, a peer pair whose P2P native atomics are
// supported is taken as NVLink (PCIe peer access does not offer them on the
// GPUs of interest), with 0 lanes shown.
#include "comm/cuda/topology.h"

#include <dlfcn.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <sstream>

#include "backend/cuda/runtime.h"
#include "core/enum_names.h"
#include "core/error.h"

namespace tpinfer::cuda {

constexpr EnumNames<LinkKind, 4> kLinkKinds{{"same", "nvlink", "pcie-peer", "host"}};

const char* link_name(LinkKind kind) { return kLinkKinds[kind]; }

std::string Topology::describe() const {
  if (n_devices == 0) return "no CUDA device\n";
  std::ostringstream out;
  for (int i = 0; i < n_devices; ++i) {
    out << "GPU" << i << ": " << (static_cast<size_t>(i) < names.size() ? names[static_cast<size_t>(i)] : "") << "\n";
  }
  auto cell = [&](int i, int j) -> std::string {
    switch (at(i, j)) {
      case LinkKind::Same:
        return "X";
      case LinkKind::NVLink: {
        const size_t k = static_cast<size_t>(i * n_devices + j);
        const int lanes = k < nvlinks.size() ? nvlinks[k] : 0;
        return lanes > 0 ? cat("NV", lanes) : std::string("NV");
      }
      case LinkKind::PeerPCIe:
        return "PCIe";
      case LinkKind::Host:
        return "host";
    }
    return "?";
  };
  char buf[32];
  out << "      ";
  for (int j = 0; j < n_devices; ++j) {
    std::snprintf(buf, sizeof buf, "%-7s", cat("GPU", j).c_str());
    out << buf;
  }
  out << "\n";
  for (int i = 0; i < n_devices; ++i) {
    std::snprintf(buf, sizeof buf, "%-6s", cat("GPU", i).c_str());
    out << buf;
    for (int j = 0; j < n_devices; ++j) {
      std::snprintf(buf, sizeof buf, "%-7s", cell(i, j).c_str());
      out << buf;
    }
    out << "\n";
  }
  out << "X = same device, NV<n> = NVLink (n lanes; NV: lanes unknown), PCIe = peer access over PCIe, "
         "host = through host memory\n";
  return out.str();
}

namespace {

// ---- NVML, declared with nvml.h's ABI ----
using nvmlReturn_t = int;  // NVML_SUCCESS == 0
using nvmlDevice_t = struct nvmlDevice_st*;
using nvmlEnableState_t = int;  // NVML_FEATURE_ENABLED == 1
struct nvmlPciInfo_t {
  char busIdLegacy[16];  // NVML_DEVICE_PCI_BUS_ID_BUFFER_V2_SIZE
  unsigned int domain;
  unsigned int bus;
  unsigned int device;
  unsigned int pciDeviceId;
  unsigned int pciSubSystemId;
  char busId[32];  // NVML_DEVICE_PCI_BUS_ID_BUFFER_SIZE
};
constexpr unsigned kNvmlMaxLinks = 18;  // NVML_NVLINK_MAX_LINKS

struct Nvml {
  void* lib = nullptr;
  nvmlReturn_t (*init)() = nullptr;
  nvmlReturn_t (*shutdown)() = nullptr;
  nvmlReturn_t (*by_pci)(const char*, nvmlDevice_t*) = nullptr;
  nvmlReturn_t (*link_state)(nvmlDevice_t, unsigned, nvmlEnableState_t*) = nullptr;
  nvmlReturn_t (*remote_pci)(nvmlDevice_t, unsigned, nvmlPciInfo_t*) = nullptr;
  bool ready = false;

  Nvml() {
    lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) return;
    init = reinterpret_cast<decltype(init)>(dlsym(lib, "nvmlInit_v2"));
    shutdown = reinterpret_cast<decltype(shutdown)>(dlsym(lib, "nvmlShutdown"));
    by_pci = reinterpret_cast<decltype(by_pci)>(dlsym(lib, "nvmlDeviceGetHandleByPciBusId_v2"));
    link_state = reinterpret_cast<decltype(link_state)>(dlsym(lib, "nvmlDeviceGetNvLinkState"));
    remote_pci = reinterpret_cast<decltype(remote_pci)>(dlsym(lib, "nvmlDeviceGetNvLinkRemotePciInfo_v2"));
    ready = init && shutdown && by_pci && link_state && remote_pci && init() == 0;
  }
  ~Nvml() {
    if (ready) shutdown();
    if (lib) dlclose(lib);
  }
  Nvml(const Nvml&) = delete;
  Nvml& operator=(const Nvml&) = delete;
};

struct PciAddress {
  unsigned domain = 0, bus = 0, device = 0;
  bool operator==(const PciAddress&) const = default;
};

// Fills nvlinks (direct lanes) and returns each device's lanes to NVSwitches
// (remote ends that are none of our GPUs); false without NVML.
bool nvml_links(Topology& t, std::vector<int>& switch_lanes) {
  Nvml nvml;
  if (!nvml.ready) return false;
  const int n = t.n_devices;
  std::vector<PciAddress> pci(static_cast<size_t>(n));
  std::vector<nvmlDevice_t> handles(static_cast<size_t>(n), nullptr);
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) return false;
    pci[static_cast<size_t>(i)] = {static_cast<unsigned>(prop.pciDomainID), static_cast<unsigned>(prop.pciBusID),
                                   static_cast<unsigned>(prop.pciDeviceID)};
    char bus_id[32] = {};
    if (cudaDeviceGetPCIBusId(bus_id, sizeof bus_id, i) != cudaSuccess) return false;
    if (nvml.by_pci(bus_id, &handles[static_cast<size_t>(i)]) != 0) return false;
  }
  for (int i = 0; i < n; ++i) {
    for (unsigned l = 0; l < kNvmlMaxLinks; ++l) {
      nvmlEnableState_t active = 0;
      if (nvml.link_state(handles[static_cast<size_t>(i)], l, &active) != 0 || active != 1) continue;
      nvmlPciInfo_t remote{};
      if (nvml.remote_pci(handles[static_cast<size_t>(i)], l, &remote) != 0) continue;
      const PciAddress r{remote.domain, remote.bus, remote.device};
      const auto it = std::find(pci.begin(), pci.end(), r);
      if (it == pci.end()) {
        switch_lanes[static_cast<size_t>(i)] += 1;
      } else {
        const int j = static_cast<int>(it - pci.begin());
        if (j != i) t.nvlinks[static_cast<size_t>(i * n + j)] += 1;
      }
    }
  }
  return true;
}

}  // namespace

Topology detect_topology() {
  Topology t;
  const int n = device_count();
  if (n == 0) return t;
  t.n_devices = n;
  const size_t nn = static_cast<size_t>(n) * static_cast<size_t>(n);
  t.link.assign(nn, LinkKind::Host);
  t.nvlinks.assign(nn, 0);
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp prop{};
    t.names.push_back(cudaGetDeviceProperties(&prop, i) == cudaSuccess ? std::string(prop.name) : "?");
  }
  std::vector<int> switch_lanes(static_cast<size_t>(n), 0);
  const bool have_nvml = nvml_links(t, switch_lanes);
  if (!have_nvml) std::fill(t.nvlinks.begin(), t.nvlinks.end(), 0);
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < n; ++j) {
      const size_t k = static_cast<size_t>(i * n + j);
      if (i == j) {
        t.link[k] = LinkKind::Same;
        continue;
      }
      int peer = 0;
      if (cudaDeviceCanAccessPeer(&peer, i, j) != cudaSuccess) {
        cudaGetLastError();
        peer = 0;
      }
      if (have_nvml) {
        if (t.nvlinks[k] == 0 && switch_lanes[static_cast<size_t>(i)] > 0 && switch_lanes[static_cast<size_t>(j)] > 0) {
          t.nvlinks[k] = std::min(switch_lanes[static_cast<size_t>(i)], switch_lanes[static_cast<size_t>(j)]);
        }
        t.link[k] = t.nvlinks[k] > 0 ? LinkKind::NVLink : (peer ? LinkKind::PeerPCIe : LinkKind::Host);
      } else if (peer) {
        int atomics = 0;
        if (cudaDeviceGetP2PAttribute(&atomics, cudaDevP2PAttrNativeAtomicSupported, i, j) != cudaSuccess) {
          cudaGetLastError();
          atomics = 0;
        }
        t.link[k] = atomics ? LinkKind::NVLink : LinkKind::PeerPCIe;
      }
    }
  }
  return t;
}

namespace {

// Orders link kinds best first (the enum's order) and breaks ties by lanes.
struct GroupScore {
  int worst_kind = 0;  // static_cast<int>(LinkKind) of the worst pair; smaller is better
  int min_lanes = 0;   // fewest lanes over the NVLink pairs; larger is better
  int total_lanes = 0;
  bool better_than(const GroupScore& o) const {
    if (worst_kind != o.worst_kind) return worst_kind < o.worst_kind;
    if (min_lanes != o.min_lanes) return min_lanes > o.min_lanes;
    return total_lanes > o.total_lanes;
  }
};

int lanes(const Topology& t, int i, int j) {
  const size_t k = static_cast<size_t>(i * t.n_devices + j);
  return k < t.nvlinks.size() ? t.nvlinks[k] : 0;
}

GroupScore score(const Topology& t, const std::vector<int>& group) {
  GroupScore s;
  s.min_lanes = 1 << 30;
  for (size_t a = 0; a < group.size(); ++a) {
    for (size_t b = a + 1; b < group.size(); ++b) {
      s.worst_kind = std::max(s.worst_kind, static_cast<int>(t.at(group[a], group[b])));
      const int l = std::min(lanes(t, group[a], group[b]), lanes(t, group[b], group[a]));
      s.min_lanes = std::min(s.min_lanes, l);
      s.total_lanes += l;
    }
  }
  if (group.size() < 2) s.min_lanes = 0;
  return s;
}

}  // namespace

std::vector<int> place_ranks(const Topology& topo, int tp, int pp) {
  if (tp < 1 || pp < 1) throw ConfigError(cat("place_ranks: tp = ", tp, " and pp = ", pp, " must be at least 1"));
  const int n = topo.n_devices;
  if (static_cast<long long>(tp) * pp > n) {
    throw ConfigError(cat("tp ", tp, " x pp ", pp, " = ", static_cast<long long>(tp) * pp, " ranks need as many GPUs; ",
                          n, " found"));
  }
  if (topo.link.size() != static_cast<size_t>(n) * static_cast<size_t>(n)) {
    throw ConfigError(cat("place_ranks: a topology of ", n, " devices with ", topo.link.size(), " links"));
  }
  std::vector<bool> used(static_cast<size_t>(n), false);
  std::vector<int> placement;
  placement.reserve(static_cast<size_t>(tp) * static_cast<size_t>(pp));
  for (int stage = 0; stage < pp; ++stage) {
    // Greedy: from every free seed, grow a group by the free device whose worst
    // link to the group so far is best; keep the best group (ties: lowest seed).
    std::vector<int> best;
    GroupScore best_score;
    for (int seed = 0; seed < n; ++seed) {
      if (used[static_cast<size_t>(seed)]) continue;
      std::vector<int> group{seed};
      while (static_cast<int>(group.size()) < tp) {
        int pick = -1;
        GroupScore pick_score;
        for (int d = 0; d < n; ++d) {
          if (used[static_cast<size_t>(d)] || std::find(group.begin(), group.end(), d) != group.end()) continue;
          std::vector<int> candidate = group;
          candidate.push_back(d);
          const GroupScore s = score(topo, candidate);
          if (pick < 0 || s.better_than(pick_score)) {
            pick = d;
            pick_score = s;
          }
        }
        group.push_back(pick);  // tp x pp <= n leaves enough free devices
      }
      const GroupScore s = score(topo, group);
      if (best.empty() || s.better_than(best_score)) {
        best = group;
        best_score = s;
      }
    }
    std::sort(best.begin(), best.end());
    for (int d : best) {
      used[static_cast<size_t>(d)] = true;
      placement.push_back(d);
    }
  }
  return placement;
}

}  // namespace tpinfer::cuda
