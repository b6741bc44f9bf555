// One poll-mode worker: owns an RX/TX queue pair on every port, its flow table, its
// neighbour cache and its counters; reads configuration only through the published
// snapshot. Constructed by the control thread, run on its own pinned lcore.
#pragma once

#include <rte_ethdev.h>
#include <rte_ring.h>

#include <atomic>
#include <memory>
#include <vector>

#include "lb/flow_table.h"
#include "lb/parse.h"
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

 private:
  struct TxContext {
    Worker* worker;
    uint16_t port;
  };

  void apply_snapshot(const Snapshot& snap) noexcept;
  static constexpr uint16_t kFromRing = 0xffff;  // in_port of packets another worker handed over
  void process_burst(uint16_t in_port, rte_mbuf** pkts, uint16_t n, const Snapshot& snap) noexcept;
  // The worker that owns a TCP/UDP flow: a function of its client side (protocol, client
  // IP, client port), which requests carry as source and replies as destination.
  uint16_t owner_of(const ParsedPacket& p, const Snapshot& snap) const noexcept;
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
  enum class NatSide : uint8_t { kDestination, kSource };
  // Rewrites one side's address and port (DNAT or reverse NAT), decrements TTL, fixes
  // checksums (incrementally, or by TX offload where the egress port has it), routes, sends.
  template <bool kTrace>
  void nat_and_send(rte_mbuf* m, const ParsedPacket& p, NatSide side, uint32_t ip_be,
                    uint16_t port_be, const Snapshot& snap) noexcept;
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
  std::vector<TxContext> tx_contexts_;
  uint64_t generation_ = 0;
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
  volatile uint32_t flow_entries_ = 0;  // flows_.size() as of the last loop, for the exporter
};

}  // namespace l4lb
