#include "planner/hardware.h"

#include <cctype>
#include <cmath>
#include <cstdio>
#include <string>

#include "core/error.h"

namespace tpinfer::planner {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Splits "2.5TB/s" into 2.5 and "tb/s" (lower case, spaces dropped).
bool split_number(std::string_view text, double* value, std::string* unit) {
  std::string s;
  for (char c : text) {
    if (!std::isspace(static_cast<unsigned char>(c))) s += c;
  }
  if (s.empty()) return false;
  size_t used = 0;
  try {
    *value = std::stod(s, &used);
  } catch (const std::exception&) {
    return false;
  }
  if (!std::isfinite(*value) || *value < 0) return false;
  *unit = lower(s.substr(used));
  return true;
}

}  // namespace

// Per-direction bandwidth a device sees on the link, and the per-message
// latency of one step of a collective on it.
const std::vector<LinkSpec>& link_table() {
  auto entry = [](std::string name, double bandwidth, double latency, std::string source) {
    LinkSpec l;
    l.name = std::move(name);
    l.bandwidth = bandwidth;
    l.latency = latency;
    l.source = std::move(source);
    return l;
  };
  static const std::vector<LinkSpec> table = {
      entry(
          "nvlink", 450e9, 2e-6,
          "NVLink 4 on H100 SXM: 900 GB/s per GPU both directions together (NVIDIA H100 datasheet), 450 GB/s each way; "
          "~2 us per step of an NCCL ring"),
      entry("nvswitch", 450e9, 3e-6,
            "NVSwitch (HGX/DGX H100): every GPU reaches every other at its full NVLink 4 rate, 450 GB/s each way "
            "(NVIDIA DGX H100 user guide); one more hop than direct NVLink"),
      entry("pcie4", 25e9, 10e-6,
            "PCIe 4.0 x16: 32 GB/s raw each way (PCI-SIG), ~25 GB/s effective after encoding and protocol; ~10 us "
            "per GPU-to-GPU message through the root complex"),
      entry("pcie5", 50e9, 10e-6, "PCIe 5.0 x16: 64 GB/s raw each way (PCI-SIG), ~50 GB/s effective"),
      entry("ib-200", 23e9, 5e-6,
            "InfiniBand HDR 200 Gb/s = 25 GB/s signalling (NVIDIA ConnectX-6 datasheet), ~23 GB/s achieved by "
            "RDMA; ~5 us per message through NCCL/MPI"),
      entry("eth-10g", 1.1e9, 50e-6, "10 GbE: 1.25 GB/s line rate, ~1.1 GB/s TCP goodput; ~50 us per message over TCP"),
      entry("eth-100g", 11e9, 20e-6,
            "100 GbE: 12.5 GB/s line rate, ~11 GB/s goodput with RoCE/TCP tuning; ~20 us per message"),
  };
  return table;
}

LinkSpec parse_link(std::string_view text) {
  const std::string t = lower(text);
  if (t.rfind("custom:", 0) == 0) {
    const std::string rest(text.substr(7));
    const size_t comma = rest.find(',');
    if (comma == std::string::npos) {
      throw ConfigError(cat("--link '", text, "': custom links are custom:BANDWIDTH,LATENCY, e.g. custom:12GB/s,5us"));
    }
    LinkSpec l;
    l.name = std::string(text);
    l.bandwidth = parse_rate(rest.substr(0, comma), "--link custom bandwidth");
    l.latency = parse_seconds(rest.substr(comma + 1), "--link custom latency");
    if (l.bandwidth <= 0) throw ConfigError(cat("--link '", text, "': bandwidth must be positive"));
    l.source = "given on the command line";
    return l;
  }
  std::string names;
  for (const LinkSpec& l : link_table()) {
    if (l.name == t) return l;
    names += (names.empty() ? "" : ", ") + l.name;
  }
  throw ConfigError(cat("--link '", text, "' is not a link type; valid: ", names, ", custom:BW,LATENCY"));
}

// Memory is what the driver can allocate (NVIDIA's "80GB" parts expose ~80 GiB);
// FLOP/s are dense BF16/FP16 tensor-core peaks without sparsity.
const std::vector<DeviceSpec>& device_table() {
  static const std::vector<DeviceSpec> table = {
      {"h100-sxm", uint64_t{80} << 30, 3.35e12, 989e12,
       "NVIDIA H100 SXM datasheet: 80 GB HBM3, 3.35 TB/s, 989 TFLOP/s BF16 dense"},
      {"h200", uint64_t{141} * 1000000000ull, 4.8e12, 989e12,
       "NVIDIA H200 SXM datasheet: 141 GB HBM3e, 4.8 TB/s, 989 TFLOP/s BF16 dense"},
      {"a100-80gb", uint64_t{80} << 30, 2.039e12, 312e12,
       "NVIDIA A100 80GB SXM datasheet: 2,039 GB/s, 312 TFLOP/s BF16 dense"},
      {"l40s", uint64_t{48} << 30, 864e9, 362e12,
       "NVIDIA L40S datasheet: 48 GB GDDR6, 864 GB/s, 362 TFLOP/s BF16 dense"},
      {"rtx4090", uint64_t{24} << 30, 1008e9, 165e12,
       "NVIDIA Ada whitepaper (RTX 4090): 24 GB GDDR6X, 1,008 GB/s, 165 TFLOP/s FP16 dense"},
  };
  return table;
}

std::optional<DeviceSpec> find_device(std::string_view name) {
  const std::string n = lower(name);
  for (const DeviceSpec& d : device_table()) {
    if (d.name == n) return d;
  }
  return std::nullopt;
}

uint64_t parse_bytes(std::string_view text, std::string_view flag) {
  double v = 0;
  std::string u;
  if (split_number(text, &v, &u)) {
    double mul = 0;
    if (u.empty() || u == "b")
      mul = 1;
    else if (u == "k" || u == "kb")
      mul = 1e3;
    else if (u == "m" || u == "mb")
      mul = 1e6;
    else if (u == "g" || u == "gb")
      mul = 1e9;
    else if (u == "t" || u == "tb")
      mul = 1e12;
    else if (u == "kib")
      mul = 1024.0;
    else if (u == "mib")
      mul = 1024.0 * 1024;
    else if (u == "gib")
      mul = 1024.0 * 1024 * 1024;
    else if (u == "tib")
      mul = 1024.0 * 1024 * 1024 * 1024;
    if (mul > 0) return static_cast<uint64_t>(std::llround(v * mul));
  }
  throw ConfigError(cat(flag, " '", text, "' is not a size; use e.g. 80GiB, 24GB, 512MiB"));
}

double parse_rate(std::string_view text, std::string_view flag) {
  double v = 0;
  std::string u;
  if (split_number(text, &v, &u)) {
    // A lower-case b is bits (200Gb/s), an upper-case B bytes (25GB/s).
    const size_t b_at = text.find_last_of("bB");
    const bool bits = b_at != std::string_view::npos && text[b_at] == 'b';
    std::string base = u;
    if (base.size() >= 2 && base.substr(base.size() - 2) == "/s") base.resize(base.size() - 2);
    if (!base.empty() && base.back() == 'b') base.pop_back();
    double mul = 0;
    if (base.empty())
      mul = 1;
    else if (base == "k")
      mul = 1e3;
    else if (base == "m")
      mul = 1e6;
    else if (base == "g")
      mul = 1e9;
    else if (base == "t")
      mul = 1e12;
    else if (base == "ki")
      mul = 1024.0;
    else if (base == "mi")
      mul = 1024.0 * 1024;
    else if (base == "gi")
      mul = 1024.0 * 1024 * 1024;
    else if (base == "ti")
      mul = 1024.0 * 1024 * 1024 * 1024;
    if (mul > 0) return v * mul / (bits ? 8.0 : 1.0);
  }
  throw ConfigError(cat(flag, " '", text, "' is not a rate; use e.g. 2.0TB/s, 900GB/s, 200Gb/s (bits)"));
}

double parse_flops(std::string_view text, std::string_view flag) {
  double v = 0;
  std::string u;
  if (split_number(text, &v, &u)) {
    for (const char* suffix : {"flop/s", "flops"}) {
      const std::string s(suffix);
      if (u.size() >= s.size() && u.substr(u.size() - s.size()) == s) u.resize(u.size() - s.size());
    }
    double mul = 0;
    if (u.empty())
      mul = 1;
    else if (u == "g")
      mul = 1e9;
    else if (u == "t")
      mul = 1e12;
    else if (u == "p")
      mul = 1e15;
    if (mul > 0) return v * mul;
  }
  throw ConfigError(cat(flag, " '", text, "' is not a FLOP rate; use e.g. 990T, 312TFLOPS, 1.5P"));
}

double parse_seconds(std::string_view text, std::string_view flag) {
  double v = 0;
  std::string u;
  if (split_number(text, &v, &u)) {
    double mul = 0;
    if (u.empty() || u == "s")
      mul = 1;
    else if (u == "ms")
      mul = 1e-3;
    else if (u == "us")
      mul = 1e-6;
    else if (u == "ns")
      mul = 1e-9;
    if (mul > 0) return v * mul;
  }
  throw ConfigError(cat(flag, " '", text, "' is not a duration; use e.g. 5us, 1.5ms, 800ns"));
}

std::string format_gib(double bytes) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.1f GiB", bytes / (1024.0 * 1024 * 1024));
  return buf;
}

std::string format_rate(double bps) {
  char buf[64];
  if (bps >= 1e12)
    std::snprintf(buf, sizeof(buf), "%.2f TB/s", bps / 1e12);
  else if (bps >= 1e9)
    std::snprintf(buf, sizeof(buf), "%.1f GB/s", bps / 1e9);
  else
    std::snprintf(buf, sizeof(buf), "%.1f MB/s", bps / 1e6);
  return buf;
}

std::string format_seconds(double s) {
  char buf[64];
  if (s >= 1)
    std::snprintf(buf, sizeof(buf), "%.2f s", s);
  else if (s >= 1e-3)
    std::snprintf(buf, sizeof(buf), "%.2f ms", s * 1e3);
  else
    std::snprintf(buf, sizeof(buf), "%.1f us", s * 1e6);
  return buf;
}

std::string format_flops(double f) {
  char buf[64];
  if (f >= 1e12)
    std::snprintf(buf, sizeof(buf), "%.0f TFLOP/s", f / 1e12);
  else
    std::snprintf(buf, sizeof(buf), "%.1f GFLOP/s", f / 1e9);
  return buf;
}

}  // namespace tpinfer::planner
