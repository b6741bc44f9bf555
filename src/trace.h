// The packet tracer's records: what the data path did with one synthetic packet, step by
// step, written by a worker running its own forwarding code in trace mode (no side
// effects), read and rendered by the API thread. Fixed size: the worker never allocates.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "lb/drop_reason.h"
#include "lb/flow_table.h"

namespace l4lb {

struct Snapshot;
struct PortInfo;

enum class TraceStep : uint8_t {
  kParsed,          // a=proto
  kServicePort,     // a=index of the Service port in the snapshot
  kNoServicePort,   // the VIP has no such protocol/port
  kAcl,             // a=allowed, b=index of the matching source range (or ~0)
  kFlowHit,         // a=backend ip, b=backend port, c=state, d=age seconds
  kFlowReplyHit,    // a=vip, b=vip port, c=state, d=age seconds
  kFlowMiss,
  kFlowReopen,      // closing flow, SYN: re-picked
  kFlowRepick,      // its backend left the Service
  kMaglev,          // a=slot, b=backend index, c=backend ip (network order)
  kNoBackend,
  kStatelessReply,  // a=Service port index (endpoint map)
  kNat,             // a=new ip, b=new port, c=1 destination / 0 source
  kRoute,           // a=egress port index, b=gateway (0: on link), c=destination
  kNoRoute,
  kNeighbor,        // a=next hop, b=1 resolved / 0 unresolved (would ARP and hold)
  kOwner,           // a=worker index that owns the flow
};

enum class TraceVerdict : uint8_t { kNone, kDrop, kForward, kHold, kToKernel, kEchoReply, kReject };

struct TraceRecord {
  TraceStep kind;
  uint32_t a = 0, b = 0, c = 0, d = 0;
};

struct TraceLog {
  static constexpr uint8_t kMaxSteps = 24;
  TraceRecord steps[kMaxSteps];
  uint8_t n = 0;
  TraceVerdict verdict = TraceVerdict::kNone;
  DropReason drop = DropReason::kCount;
  uint16_t out_port = 0;
  uint8_t frame[128];  // the packet as it would leave (headers)
  uint16_t frame_len = 0;
  void add(TraceStep kind, uint32_t a = 0, uint32_t b = 0, uint32_t c = 0, uint32_t d = 0) {
    if (n < kMaxSteps) steps[n++] = TraceRecord{kind, a, b, c, d};
  }
};

// Network byte order, as on the wire.
struct TraceRequest {
  uint8_t proto = 6;
  uint32_t src_be = 0, dst_be = 0;
  uint16_t sport_be = 0, dport_be = 0;
  uint16_t in_port = 0;        // index of the ingress port
  uint8_t tcp_flags = 0x02;    // SYN by default: "what would a new connection do"
};

// Handed to a worker through its trace slot; the worker sets done when the log is final.
struct TraceJob {
  TraceRequest request;
  TraceLog log;
  std::atomic<bool> done{false};
};

// A request for a worker's flow entries (GET /v1/flows): the worker copies up to `limit`
// live entries into `flows` (reserved by the requester, so the worker never allocates),
// scanning a slice of its table per loop iteration so forwarding never stalls.
struct FlowListJob {
  uint32_t limit = 0;
  std::vector<FlowEntry> flows;
  uint32_t now_s = 0;    // the worker's clock when it finished (entries' times are on it)
  uint32_t cursor = 0;   // worker-private progress
  std::atomic<bool> done{false};
};

// JSON text of a finished trace; control thread (reads the snapshot under the control mutex).
std::string trace_json(const TraceRequest& req, const TraceLog& log, const Snapshot& snap,
                       const std::vector<PortInfo>& ports, unsigned worker_lcore);

}  // namespace l4lb
