#include "src/capture.h"

#include <rte_cycles.h>
#include <rte_malloc.h>
#include <rte_rcu_qsbr.h>

#include <stdexcept>
#include <thread>

namespace l4lb {

CaptureTap::CaptureTap(const std::vector<int>& worker_sockets) {
  for (size_t w = 0; w < worker_sockets.size(); ++w) {
    const int socket = worker_sockets[w];
    CaptureChannel c;
    const std::string id = std::to_string(w);
    c.free = rte_ring_create(("l4lb_capf_" + id).c_str(), kCaptureRecords, socket,
                             RING_F_SP_ENQ | RING_F_SC_DEQ | RING_F_EXACT_SZ);
    c.full = rte_ring_create(("l4lb_capu_" + id).c_str(), kCaptureRecords, socket,
                             RING_F_SP_ENQ | RING_F_SC_DEQ | RING_F_EXACT_SZ);
    c.records = static_cast<CaptureRecord*>(rte_malloc_socket(
        "l4lb_capture", sizeof(CaptureRecord) * kCaptureRecords, RTE_CACHE_LINE_SIZE, socket));
    channels.push_back(c);
    if (c.free == nullptr || c.full == nullptr || c.records == nullptr) {
      throw std::runtime_error("cannot allocate the capture ring of worker " + id);
    }
    for (uint32_t i = 0; i < kCaptureRecords; ++i) rte_ring_enqueue(c.free, &c.records[i]);
  }
}

CaptureTap::~CaptureTap() {
  for (auto& c : channels) {
    rte_ring_free(c.free);
    rte_ring_free(c.full);
    rte_free(c.records);
  }
}

CaptureTap& CaptureTap::none() {
  static CaptureTap off;
  return off;
}

CaptureRunner::CaptureRunner(CaptureTap& tap, rte_rcu_qsbr* qsbr,
                             std::function<uint64_t()> dropped_total)
    : tap_(tap), qsbr_(qsbr), dropped_total_(std::move(dropped_total)) {}

void CaptureRunner::wait_for_workers() {
  // Every worker reports quiescence at the end of each loop iteration, and reads the tap
  // at its start: past this, none still acts on the previous state.
  rte_rcu_qsbr_synchronize(qsbr_, RTE_QSBR_THRID_INVALID);
}

uint64_t CaptureRunner::drain(PcapWriter& out, uint64_t room, CaptureSummary& summary) {
  uint64_t taken = 0;
  void* batch[64];
  for (auto& c : tap_.channels) {
    unsigned n;
    while ((n = rte_ring_dequeue_burst(c.full, batch, 64, nullptr)) != 0) {
      for (unsigned i = 0; i < n; ++i) {
        const auto* r = static_cast<const CaptureRecord*>(batch[i]);
        if (taken < room) {
          const auto dt = static_cast<int64_t>(r->tsc - start_tsc_);
          const int64_t ns = start_ns_ + static_cast<int64_t>(static_cast<double>(dt) * 1e9 /
                                                              static_cast<double>(tsc_hz_));
          out.add(ns, r->data, r->len, r->wire_len);
          summary.by_reason[r->reason <= kDropReasonCount ? r->reason : kDropReasonCount]++;
          ++taken;
        }
      }
      rte_ring_enqueue_burst(c.free, batch, n, nullptr);  // the ring holds them all
    }
  }
  return taken;
}

std::optional<CaptureSummary> CaptureRunner::run(const CaptureFilter& filter,
                                                 const CaptureLimits& limits, PcapWriter& out) {
  if (busy_.exchange(true)) return std::nullopt;
  stop_.store(false);
  // Off since the last capture and every worker has seen that: nobody reads the filter.
  tap_.filter = filter;
  tsc_hz_ = rte_get_tsc_hz();
  start_tsc_ = rte_rdtsc();
  start_ns_ = std::chrono::duration_cast<std::chrono::nanoseconds>(
                  std::chrono::system_clock::now().time_since_epoch())
                  .count();
  const uint64_t dropped_before = dropped_total_();
  generation_ += 2;
  tap_.state.store(generation_ | 1, std::memory_order_release);

  CaptureSummary summary;
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + limits.duration;
  while (summary.packets < limits.count && !stop_.load() &&
         std::chrono::steady_clock::now() < deadline) {
    const uint64_t n = drain(out, limits.count - summary.packets, summary);
    summary.packets += n;
    if (n == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  tap_.state.store(generation_, std::memory_order_release);
  wait_for_workers();
  // What the workers copied before they saw the stop, up to the count; the rest go back.
  summary.packets += drain(out, limits.count - summary.packets, summary);
  summary.stopped = stop_.load();
  summary.dropped = dropped_total_() - dropped_before;
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  busy_.store(false);
  return summary;
}

bool CaptureRunner::stop() {
  if (!busy_.load()) return false;
  stop_.store(true);
  return true;
}

}  // namespace l4lb
