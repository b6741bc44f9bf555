// One poll-mode worker: owns an RX/TX queue pair on every port, its flow table, its
// neighbour cache and its counters; reads configuration only through the published
// snapshot. Constructed by the control thread, run on its own pinned lcore.
#pragma once

#include <rte_ethdev.h>
#include <rte_ring.h>

#include <atomic>
#include <memory>
#include <vector>

#include "lb/expiry_pace.h"
#include "lb/flow_table.h"
#include "lb/frag_table.h"
#include "lb/parse.h"
#include "lb/token_bucket.h"
#include "src/capture.h"
#include "src/log_rate.h"
#include "lb/steering_plan.h"
#include "src/neighbor.h"
#include "src/port.h"
#include "src/snapshot.h"
#include "src/stats.h"
#include "src/trace.h"

namespace l4lb {

struct WorkerSettings {
  unsigned lcore = 0;
  uint16_t queue = 0;        // also this worker's index among the workers
  uint16_t workers = 1;      // how many workers share the flows
  unsigned rcu_id = 0;
  uint32_t flow_capacity = 1 << 20;
  FlowTimeouts timeouts;
  bool answer_vip_pings = true;
  uint32_t icmp_errors_per_s = 100;
  uint32_t frag_datagrams = 1024;  // dataplane.fragments
  uint32_t frag_held = 256;
  uint32_t frag_timeout_s = 5;
  uint32_t log_lines_per_second = 10;  // control.log.dataPathLinesPerSecond
};

class Worker {
 public:
  static constexpr uint16_t kBurst = 32;

  // handoff[from * workers + to]: single-producer/single-consumer rings between workers
  // (empty with one worker).
  Worker(const WorkerSettings& settings, const std::vector<PortInfo>& ports,
         const SnapshotPublisher& publisher, const std::atomic<bool>& stop,
         const std::vector<rte_ring*>& handoff);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // The lcore main loop; returns when `stop` is set, after flushing TX.
  int run() noexcept;
  static int launch(void* worker) { return static_cast<Worker*>(worker)->run(); }

  const WorkerCounters& counters() const { return counters_; }
  // Packet tracer (API thread): runs the worker's own forwarding code on the job's
  // synthetic packet in trace mode (no side effects) on the worker's lcore, and waits.
  // false if another trace is running on this worker or the worker does not answer.
  bool trace(TraceJob& job) noexcept;
  // GET /v1/flows (API thread): waits while the worker copies its live flow entries.
  bool list_flows(FlowListJob& job) noexcept;
  const std::vector<ServicePortCounters>& service_port_counters() const { return svc_counters_; }
  const std::vector<BackendCounters>& backend_counters() const { return backend_counters_; }
  uint32_t flow_table_size() const { return flow_entries_; }
  uint32_t flow_table_capacity() const { return flows_.capacity(); }
  unsigned lcore() const { return settings_.lcore; }
  // Before launch: the capture tap this worker copies matching packets into.
  void set_capture(CaptureTap& tap) { capture_tap_ = &tap; }

 private:
  struct TxContext {
    Worker* worker;
    uint16_t port;
  };

  enum class NatSide : uint8_t { kDestination, kSource };
  void apply_snapshot(const Snapshot& snap) noexcept;
  static constexpr uint16_t kFromRing = 0xffff;  // in_port of packets another worker handed over
  void process_burst(uint16_t in_port, rte_mbuf** pkts, uint16_t n, const Snapshot& snap) noexcept;
  // The worker that owns a TCP/UDP flow: a function of its client side (protocol, client
  // IP, client port), which requests carry as source and replies as destination.
  // Which end of a key a packet carries is the client's: the source when the destination
  // is a VIP (a request), else the destination (a reply, or the key of an ICMP error about
  // a request). Decides both the owner worker and the flow-table hash (hash_flow_key).
  static ClientEnd client_end(const FlowKey& k, const Snapshot& snap) noexcept {
    return snap.services.is_vip(k.dst_ip) ? ClientEnd::kSource : ClientEnd::kDestination;
  }
  uint16_t owner_of(const ParsedPacket& p, ClientEnd client) const noexcept;
  void stage_handoff(uint16_t to, rte_mbuf* m) noexcept;
  void flush_handoffs() noexcept;
  void share_arp(rte_mbuf* m, uint16_t in_port) noexcept;
  // create: add an unknown sender (the ARP was for us, RFC 826); else only refresh.
  void learn_arp(uint16_t in_port, const ParsedPacket& p, bool create = true) noexcept;
  void handle_arp(uint16_t in_port, rte_mbuf* m, const ParsedPacket& p,
                  const Snapshot& snap) noexcept;
  template <bool kTrace>
  void handle_ipv4(uint16_t in_port, rte_mbuf* m, const ParsedPacket& p, uint64_t hash,
                   const Snapshot& snap) noexcept;
  // Answers a packet for a Service port without backends as its host would (RST / ICMP).
  void reject(uint16_t in_port, rte_mbuf* m, const ParsedPacket& p) noexcept;
  template <bool kTrace>
  void handle_service(uint16_t in_port, const ServicePort& sp, rte_mbuf* m, const ParsedPacket& p, uint64_t hash,
                      const Snapshot& snap) noexcept;
  template <bool kTrace>
  void handle_reply(rte_mbuf* m, const ParsedPacket& p, uint64_t hash,
                    const Snapshot& snap) noexcept;
  void answer_echo(uint16_t in_port, rte_mbuf* m, const ParsedPacket& p) noexcept;
  // Hostile and unusual input (src/worker_guard.cc): ICMP errors l4lb sends and forwards,
  // IPv4 fragments.
  // Turns m into an ICMP error to its source, sent back out in_port, if the rate allows.
  void send_icmp_error(uint16_t in_port, rte_mbuf* m, const ParsedPacket& p, uint8_t type,
                       uint8_t code, uint16_t mtu) noexcept;
  // An ICMP error quoting a packet of a flow: translated and sent to the flow's endpoint.
  void handle_icmp_error(rte_mbuf* m, const ParsedPacket& p, uint64_t hash,
                         const Snapshot& snap) noexcept;
  // Fragments are steered by datagram, not by flow: (src, dst, id, proto).
  uint16_t frag_owner(const ParsedPacket& p) const noexcept;
  void handle_later_fragment(rte_mbuf* m, const ParsedPacket& p, const Snapshot& snap) noexcept;
  // A first fragment is being forwarded: keep its decision, send what waited for it.
  void first_fragment_sent(const ParsedPacket& p, NatSide side, uint32_t ip_be) noexcept;
  void send_released_fragments(const Snapshot& snap) noexcept;
  // Rewrites one side's address and port (DNAT or reverse NAT), decrements TTL, fixes
  // checksums (incrementally, or by TX offload where the egress port has it), routes, sends.
  // decided: the flow this packet belongs to, in direction dir; the route chosen is cached
  // in it for the fast lane (forward_cached()).
  template <bool kTrace>
  void nat_and_send(rte_mbuf* m, const ParsedPacket& p, NatSide side, uint32_t ip_be,
                    uint16_t port_be, const Snapshot& snap, FlowEntry* decided = nullptr,
                    FlowDir dir = FlowDir::kForward) noexcept;
  // The header rewrite of nat_and_send() once the egress port is known (untagged frames).
  void write_nat(rte_mbuf* m, const ParsedPacket& p, NatSide side, uint32_t ip_be,
                 uint16_t port_be, const PortInfo& out) noexcept;
  // Fast lane for a packet of a known flow whose forwarding decision this worker already
  // made under the current configuration: rewrites and sends it, or returns false (and
  // leaves the packet untouched) for the full path, which then reuses the lookup.
  [[gnu::always_inline]] inline bool forward_cached(rte_mbuf* m, const ParsedPacket& p, uint64_t hash,
                                                   bool certain_miss) noexcept;
  template <bool kTrace>
  void send_resolved(uint16_t out_port, rte_mbuf* m, const MacAddr& dst) noexcept;
  void send_arp_request(uint16_t out_port, uint32_t target_be) noexcept;
  void release(uint32_t n, rte_mbuf** held, const MacAddr& mac) noexcept;
  void tx(uint16_t port, rte_mbuf* m) noexcept;
  // Exception path: hands a frame to port's kernel twin (slow path: a syscall per burst).
  void to_kernel(uint16_t port, rte_mbuf* m) noexcept;
  uint32_t poll_kernel() noexcept;
  void drop(rte_mbuf* m, DropReason reason) noexcept;
  // The side effects of the forwarding code, each specialised at compile time: the real
  // path sends, drops and counts; the trace path records the verdict in trace_.
  template <bool kTrace>
  FlowHit lookup_flow(const FlowKey& key, uint64_t hash) noexcept;
  template <bool kTrace>
  void finish_drop(rte_mbuf* m, DropReason reason) noexcept;
  template <bool kTrace>
  void finish_kernel(uint16_t port, rte_mbuf* m) noexcept;
  template <bool kTrace>
  void finish_echo(uint16_t in_port, rte_mbuf* m, const ParsedPacket& p) noexcept;
  template <bool kTrace>
  void finish_reject(uint16_t in_port, rte_mbuf* m, const ParsedPacket& p) noexcept;
  void finish_trace(TraceVerdict verdict, uint16_t port, rte_mbuf* m) noexcept;
  void run_trace(TraceJob& job) noexcept;
  bool owns_address(uint32_t ip_be) const noexcept;
  static void tx_failed(rte_mbuf** pkts, uint16_t unsent, void* ctx);

  WorkerSettings settings_;
  const std::vector<PortInfo>& ports_;
  const SnapshotPublisher& publisher_;
  const std::atomic<bool>& stop_;
  FlowTable flows_;
  ExpiryPace expiry_pace_;
  FragTable frags_;
  TokenBucket icmp_errors_;
  rte_mbuf* frag_released_[FragTable::kHoldPerEntry];
  uint32_t frag_released_count_ = 0;
  FragDecision frag_released_decision_;
  OwnerHash owner_hash_;  // the same function the NIC's steering computes
  NeighborTable neighbors_;
  std::vector<rte_eth_dev_tx_buffer*> tx_buffers_;
  std::vector<rte_ring*> handoff_out_;  // [to]; null for this worker
  std::vector<rte_ring*> handoff_in_;   // [from]; null for this worker
  struct HandoffBuffer {
    uint16_t count = 0;
    rte_mbuf* pkts[kBurst];
  };
  std::vector<HandoffBuffer> staged_;  // [to]
  uint16_t port_index_[RTE_MAX_ETHPORTS] = {};  // DPDK port id -> index into ports_
  std::vector<uint8_t> awaiting_link_;  // [port]: not polled until its link is up (PortInfo)
  std::vector<TxContext> tx_contexts_;
  ParsedPacket parsed_[kBurst];  // process_burst()'s, here so it is not constructed per burst
  uint64_t generation_ = 0;
  // Bumped with every new snapshot: FlowEntry::route_epoch older than this is stale.
  uint32_t epoch_ = 1;
  // forward_cached()'s lookup, handed to the full path's lookup_flow() for the same packet.
  FlowHit known_hit_;
  uint64_t known_hash_ = 0;
  bool have_known_hit_ = false;
  // kStageCycles builds: charges the cycles since the last mark to one stage of this poll.
  void stage_mark(uint64_t StageCycles::*stage) noexcept {
    if constexpr (kStageCycles) {
      const uint64_t t = rte_rdtsc();
      stage_poll_.*stage += t - stage_last_;
      stage_last_ = t;
    }
  }
  StageCycles stage_poll_;
  uint64_t stage_last_ = 0;
  uint64_t tsc_hz_;
  uint64_t start_tsc_;
  uint64_t now_tsc_ = 0;
  uint32_t now_s_ = 0;
  WorkerCounters counters_;
  std::atomic<TraceJob*> trace_slot_{nullptr};
  std::atomic<FlowListJob*> flow_slot_{nullptr};
  void step_flow_list(FlowListJob& job) noexcept;
  TraceLog* trace_ = nullptr;  // set only while run_trace() runs
  std::vector<ServicePortCounters> svc_counters_;
  std::vector<BackendCounters> backend_counters_;
  volatile uint32_t flow_entries_ = 0;
  // Live capture (src/worker_capture.cc). Off: one load per loop iteration, a flag per
  // burst and a mask test per drop; the rest runs only while a capture is on.
  void capture_refresh(uint64_t state) noexcept;
  void capture_rx(uint16_t in_port, rte_mbuf** pkts, uint16_t n, const Snapshot& snap) noexcept;
  void capture_drop(rte_mbuf* m, DropReason reason) noexcept;
  void capture_copy(rte_mbuf* m, uint8_t reason) noexcept;
  CaptureTap* capture_tap_ = &CaptureTap::none();
  uint64_t capture_state_ = 0;
  bool capture_on_ = false;
  uint64_t capture_drop_mask_ = 0;  // bit per DropReason captured at the drop point
  CaptureChannel* capture_channel_ = nullptr;
  // Drop captures filtered by Service: this burst's packets and what they were.
  rte_mbuf* capture_pkts_[kBurst] = {};
  CaptureClass capture_class_[kBurst];
  uint16_t capture_n_ = 0;
  // Drops that need more than a counter (capture, log): one mask test per drop.
  void drop_slow(rte_mbuf* m, DropReason reason) noexcept;
  // Data-path log lines (src/worker_log.cc), refreshed with the worker's level each tick.
  void log_drop(rte_mbuf* m, DropReason reason) noexcept;
  void refresh_log_level() noexcept;
  uint64_t drop_watch_mask_ = 0;  // capture_drop_mask_ | drop_log_mask_
  uint64_t drop_log_mask_ = 0;
  uint64_t first_drop_pending_ = 0;  // reasons not yet logged once
  bool log_rate_ready_ = false;
  LogRateLimit log_rate_;  // flows_.size() as of the last loop, for the exporter
};

}  // namespace l4lb
