// POST /v1/capture's body: parsed and checked against the running Service ports, with
// the exact error message and field of the first problem. No HTTP, no DPDK; any thread.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "src/capture_filter.h"

namespace l4lb::api {

constexpr uint32_t kMaxCaptureCount = 100000;
constexpr uint32_t kMaxCaptureSeconds = 300;
constexpr uint32_t kMinCaptureSnaplen = 64;

// A running Service port and its counter slot (what the workers match on).
struct CapturePortRef {
  std::string service;
  std::string port;
  uint32_t slot = 0;
};

struct CaptureRequest {
  CaptureFilter filter;
  CaptureLimits limits;
  std::string file;  // empty: the pcap is the answer's body
};

struct CaptureParse {
  std::optional<CaptureRequest> request;
  std::string error;  // when no request
  std::string field;
};

CaptureParse parse_capture_request(std::string_view body, const std::vector<CapturePortRef>& ports);

}  // namespace l4lb::api
