// Live packet capture (POST /v1/capture): the filter the workers apply, the bounded
// per-worker channels they copy matching packets into, and the control-side runner that
// drains them into a pcap. The CaptureTap is shared: the runner writes it only while the
// capture is off and every worker has passed a quiescent state; workers read it once per
// loop iteration (one load while off) and never block on it.
#pragma once

#include <rte_ring.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "lb/drop_reason.h"
#include "src/capture_filter.h"
#include "src/pcap_writer.h"

struct rte_rcu_qsbr;

namespace l4lb {

struct CaptureRecord {
  uint64_t tsc = 0;       // the worker's loop timestamp
  uint32_t wire_len = 0;  // the packet's full length
  uint16_t len = 0;       // bytes in data
  uint8_t reason = 0;     // DropReason, or kDropReasonCount when captured on receipt
  uint8_t data[kCaptureSnapMax];
};

// One worker's pair of single-producer/single-consumer rings: the runner hands empty
// records over `free`, the worker returns them filled over `full`.
struct CaptureChannel {
  rte_ring* free = nullptr;
  rte_ring* full = nullptr;
  CaptureRecord* records = nullptr;
};

class CaptureTap {
 public:
  // Creates one channel per worker on its NUMA socket; throws std::runtime_error.
  explicit CaptureTap(const std::vector<int>& worker_sockets);
  ~CaptureTap();
  CaptureTap(const CaptureTap&) = delete;
  CaptureTap& operator=(const CaptureTap&) = delete;
  // The tap of workers that have none: never on.
  static CaptureTap& none();

  // Bit 0: on; the rest: a generation, so a worker notices every new capture.
  std::atomic<uint64_t> state{0};
  CaptureFilter filter;
  std::vector<CaptureChannel> channels;  // [worker]

 private:
  CaptureTap() = default;
};

struct CaptureSummary {
  uint64_t packets = 0;  // written to the pcap
  uint64_t dropped = 0;  // not captured: a worker's channel was full
  std::array<uint64_t, kDropReasonCount + 1> by_reason{};  // [kDropReasonCount]: on receipt
  bool stopped = false;                                    // ended by stop() rather than by a limit
  double seconds = 0;
};

// Runs one capture at a time on the calling (API) thread. Control path.
class CaptureRunner {
 public:
  // `dropped_total` sums the workers' capture_dropped counters.
  CaptureRunner(CaptureTap& tap, rte_rcu_qsbr* qsbr, std::function<uint64_t()> dropped_total);
  // Nothing when another capture is running. Blocks until a limit is reached or stop().
  std::optional<CaptureSummary> run(const CaptureFilter& filter, const CaptureLimits& limits,
                                    PcapWriter& out);
  // Ends the running capture early (DELETE /v1/capture, shutdown); false when none runs.
  bool stop();
  bool active() const { return busy_.load(); }

 private:
  void wait_for_workers();
  uint64_t drain(PcapWriter& out, uint64_t room, CaptureSummary& summary);

  CaptureTap& tap_;
  rte_rcu_qsbr* qsbr_;
  std::function<uint64_t()> dropped_total_;
  std::atomic<bool> busy_{false};
  std::atomic<bool> stop_{false};
  uint64_t generation_ = 0;
  uint64_t tsc_hz_ = 0;
  uint64_t start_tsc_ = 0;
  int64_t start_ns_ = 0;
};

}  // namespace l4lb
