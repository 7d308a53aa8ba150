// What the planner knows about hardware: devices (memory, memory bandwidth,
// peak FLOP rate) and the links between them (bandwidth and per-message
// latency, the alpha-beta model: a message of m bytes takes latency + m / bw).
//
// The link table holds published figures (sources beside each entry in
// hardware.cc); `custom:BW,LATENCY` gives any other link, e.g.
// `custom:12GB/s,5us`. Parsers accept human units and throw ConfigError naming
// the flag and the accepted forms:
//   bytes      80GiB, 24GB, 512MiB, 1.5TiB, 1000000 (bytes)
//   rates      2.0TB/s, 900GB/s, 25GiB/s, 200Gb/s (bits), 1e12 (bytes/s)
//   FLOP/s     990T, 312TFLOPS, 1.5P, 500G, 1e12
//   durations  5us, 1.5ms, 2e-6 (seconds), 800ns
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tpinfer::planner {

// A point of a measured all-reduce cost curve (planner/probe.h).
struct LinkPoint {
  double bytes = 0;
  double seconds = 0;
};

struct LinkSpec {
  std::string name;
  double bandwidth = 0;  // bytes per second, per direction, per device
  double latency = 0;    // seconds per message (one step of a collective)
  std::string source;    // where the figure comes from
  // A probed link also keeps what it measured: all-reduce seconds by size over
  // curve_ranks ranks, ascending. Real links are not straight lines (a token
  // bucket passes bursts at wire speed, MPI switches protocol at its eager
  // limit), so collectives over that many ranks are read off the curve
  // (planner.h) and the alpha-beta terms only extrapolate past its ends.
  std::vector<LinkPoint> curve;
  int curve_ranks = 0;
  // The rate the curve's two largest sizes give (bytes per second per rank, as
  // `bandwidth`): what the link carries when kept busy. A shaped link passes a
  // small message at burst speed, so the curve says 20 us for 4 KiB on a 100
  // Mbit/s token bucket, but a step cannot move its bytes faster than this on
  // average. 0: unknown (table links are straight lines; no bound needed).
  double sustained_bandwidth = 0;
};

struct DeviceSpec {
  std::string name;
  uint64_t memory = 0;   // bytes per device
  double bandwidth = 0;  // memory bytes per second per device
  double flops = 0;      // peak dense FLOP/s per device at the weight precision
  std::string source;
};

// The link types of the table, in a stable order.
const std::vector<LinkSpec>& link_table();
// A name from the table, or custom:BW,LATENCY. Throws ConfigError listing the names.
LinkSpec parse_link(std::string_view text);

// Device presets (h100-sxm, h200, a100-80gb, l40s, rtx4090); "cpu" is handled
// by the caller (it is measured). Throws ConfigError listing the names.
const std::vector<DeviceSpec>& device_table();
std::optional<DeviceSpec> find_device(std::string_view name);

uint64_t parse_bytes(std::string_view text, std::string_view flag);
double parse_rate(std::string_view text, std::string_view flag);
double parse_flops(std::string_view text, std::string_view flag);
double parse_seconds(std::string_view text, std::string_view flag);

// "80.0 GiB", "2.00 TB/s", "450 GB/s", "3.0 us", "990 TFLOP/s".
std::string format_gib(double bytes);
std::string format_rate(double bytes_per_second);
std::string format_seconds(double seconds);
std::string format_flops(double flops);

}  // namespace tpinfer::planner
