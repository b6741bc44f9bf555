// What a live capture matches (POST /v1/capture): plain data shared by the API's request
// parser and the workers (src/capture.h). No DPDK; any thread.
#pragma once

#include <bitset>
#include <chrono>
#include <cstdint>

#include "lb/drop_reason.h"
#include "src/counter_slots.h"

namespace l4lb {

constexpr uint16_t kCaptureSnapMax = 2048;
// Records per worker: the runner drains every millisecond, so a worker may capture about a
// million packets per second before `capture_dropped` counts.
constexpr uint32_t kCaptureRecords = 1024;

// Like the metrics' direction label: towards a backend (client to VIP, seen before NAT)
// or from a backend (a reply, seen before reverse NAT).
enum class CaptureDirection : uint8_t { kBoth, kToBackend, kFromBackend };

// What the worker knows of a packet when it decides whether to copy it.
struct CaptureClass {
  static constexpr uint32_t kNoServicePort = ~uint32_t{0};
  uint32_t service_port = kNoServicePort;  // counter slot of the Service port it belongs to
  uint8_t proto = 0;                       // 0: not TCP/UDP (or unparsed)
  CaptureDirection direction = CaptureDirection::kBoth;  // kBoth: unknown
};

struct CaptureFilter {
  // Service ports (counter slots) whose packets match; none set: any (reason filters only).
  std::bitset<CounterSlots::kMaxServicePorts> service_ports;
  bool by_service = false;
  // Non-zero: capture drops of these reasons at the drop point (bit per DropReason);
  // zero: capture the Service's packets as received.
  uint64_t reasons = 0;
  uint8_t proto = 0;  // 0: TCP and UDP
  CaptureDirection direction = CaptureDirection::kBoth;
  uint16_t snaplen = kCaptureSnapMax;

  bool matches(const CaptureClass& c) const noexcept {
    if (by_service && (c.service_port >= service_ports.size() || !service_ports[c.service_port])) {
      return false;
    }
    if (proto != 0 && c.proto != proto) return false;
    return direction == CaptureDirection::kBoth || direction == c.direction;
  }
};

static_assert(kDropReasonCount <= 64, "CaptureFilter::reasons holds one bit per reason");

struct CaptureLimits {
  uint32_t count = 1000;
  std::chrono::milliseconds duration{10000};
};

}  // namespace l4lb
