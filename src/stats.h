// Per-worker counters: written by exactly one worker (plain increments, no atomics),
// read by the control thread, which sums them. Never reset.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "lb/drop_reason.h"

namespace l4lb {

constexpr size_t kMaxPorts = 8;

#define L4LB_WORKER_COUNTERS(X)                                                         \
  X(flows_created, "flows created by a new packet to a Service port")                  \
  X(flow_insert_failed, "flow table full: packet sent statelessly by Maglev")          \
  X(flows_expired, "flow entries removed after their timeout")                          \
  X(flows_reopened, "TCP SYN on a closing flow: flow re-picked")                       \
  X(flows_repicked, "flows whose backend was removed from the Service: re-picked")      \
  X(flows_superseded, "flows replaced by a new one with the same backend-side 4-tuple")    \
  X(flows_orphaned, "flows of a removed Service port: removed on their next packet")    \
  X(nat_forward, "client packets DNATed to a backend")                                  \
  X(nat_reverse, "backend replies reverse-NATed from a flow entry")                     \
  X(nat_reverse_stateless, "backend replies reverse-NATed without a flow entry")        \
  X(arp_requests_answered, "ARP requests answered for a port address or VIP")          \
  X(arp_requests_sent, "ARP requests sent to resolve a next hop")                      \
  X(arp_learned, "neighbour entries learned or refreshed from ARP")                    \
  X(icmp_echo_replies, "ICMP echo replies sent for a port address or VIP")             \
  X(icmp_errors_sent, "ICMP time exceeded / fragmentation needed sent by l4lb")         \
  X(icmp_errors_rate_limited, "ICMP errors not sent: over dataplane.icmpErrorsPerSecond") \
  X(icmp_errors_translated, "ICMP errors about a flow translated and forwarded")       \
  X(flows_evicted, "un-established flow entries evicted to make room (SYN flood)")     \
  X(frag_first, "first fragments forwarded, their decision kept for the rest")        \
  X(frag_untracked, "first fragments forwarded with no fragment-table room for the rest") \
  X(frag_forwarded, "non-first fragments forwarded after their first fragment")        \
  X(frag_held, "non-first fragments held until their first fragment arrived")          \
  X(neighbor_held, "packets held while their next hop was resolved")                   \
  X(neighbor_released, "held packets sent once their next hop answered")              \
  X(rejected, "new flows answered with TCP RST or ICMP port unreachable (no backend)")   \
  X(to_kernel, "packets for l4lb's own address passed to the port's kernel twin")       \
  X(from_kernel, "packets the kernel twin sent out of its port")                         \
  X(handoff_sent, "packets handed to the worker that owns their flow")                  \
  X(handoff_received, "packets received from another worker's queue")                   \
  X(handoff_left_at_stop, "handed-off packets still in a ring when the workers stopped")  \
  X(capture_packets, "packets copied into a live capture (POST /v1/capture)")            \
  X(capture_dropped, "packets a live capture missed: the worker's capture ring was full") \
  X(busy_cycles, "TSC cycles in loop iterations that received packets")                 \
  X(idle_cycles, "TSC cycles in loop iterations that received nothing")                  \
  X(busy_polls, "loop iterations that received packets")                                 \
  X(empty_polls, "loop iterations that received nothing")

// Where a busy poll's TSC cycles go, by stage of the worker loop. Callgrind counts
// instructions but not cache misses; these show a memory-bound scenario's stalls where they
// happen. Counted only in a build with -Dstage_cycles=true (scripts/bench --stages builds
// one): a few rdtsc per burst that the appliance does not pay.
#ifdef L4LB_STAGE_CYCLES
constexpr bool kStageCycles = true;
#else
constexpr bool kStageCycles = false;
#endif
#define L4LB_STAGES(X)                                                                     \
  X(rx, "rte_eth_rx_burst on every port and hand-off ring")                                \
  X(look_ahead, "pass 1: parse, owner, hash, flow-table bucket prefetch")                  \
  X(entries, "pass 1b: flow-entry prefetch, certain misses")                               \
  X(decide, "pass 2: lookups, decisions, NAT, TX buffering (with the TX bursts it fills)") \
  X(flush, "hand-off and TX buffer flushes at the end of the poll")                        \
  X(expire, "flow and fragment expiry")                                                    \
  X(rest, "the rest of the poll: snapshot, kernel twins, ticks, RCU")

struct StageCycles {
#define L4LB_X(name, help) uint64_t name = 0;
  L4LB_STAGES(L4LB_X)
#undef L4LB_X
};

struct alignas(64) PortQueueCounters {
  uint64_t rx_packets = 0;
  uint64_t rx_bytes = 0;
  uint64_t tx_packets = 0;
  uint64_t tx_bytes = 0;
};

struct alignas(64) WorkerCounters {
#define L4LB_X(name, help) uint64_t name = 0;
  L4LB_WORKER_COUNTERS(L4LB_X)
#undef L4LB_X
  std::array<uint64_t, kDropReasonCount> drops{};
  std::array<PortQueueCounters, kMaxPorts> ports{};
  StageCycles stages;  // busy polls only; zero unless kStageCycles
};

// Per Service port and per backend, indexed by CounterSlots slot; one array per worker.
struct ServicePortCounters {
  uint64_t acl_denied = 0;
  uint64_t no_backend = 0;
  uint64_t stateless_reply_packets = 0;  // replies reverse-NATed without a flow entry
  uint64_t stateless_reply_bytes = 0;
};

struct BackendCounters {
  uint64_t to_packets = 0;  // client -> backend, after DNAT
  uint64_t to_bytes = 0;
  uint64_t from_packets = 0;  // backend -> client, through a flow entry
  uint64_t from_bytes = 0;
  uint64_t new_flows = 0;
  uint64_t ended_flows = 0;  // new_flows - ended_flows = flows in the table now
};

// Sums every worker's counters; control thread only.
WorkerCounters sum_counters(const std::vector<const WorkerCounters*>& workers);
// JSON text of the summed counters (stable keys: the counter names and drop labels).
std::string counters_json(const WorkerCounters& total, const std::vector<std::string>& port_names);

}  // namespace l4lb
