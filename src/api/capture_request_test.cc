#include "src/api/capture_request.h"

#include <gtest/gtest.h>

#include <cstring>

#include "src/pcap_writer.h"

namespace l4lb::api {
namespace {

const std::vector<CapturePortRef> kPorts = {
    {"web", "http", 3}, {"web", "https", 4}, {"dns", "dns", 7}};

std::string error_of(const std::string& body) {
  CaptureParse p = parse_capture_request(body, kPorts);
  EXPECT_FALSE(p.request.has_value()) << body;
  return p.error + " [" + p.field + "]";
}

TEST(CaptureRequest, ServiceAndPort) {
  auto p = parse_capture_request(R"({"service": "web"})", kPorts);
  ASSERT_TRUE(p.request);
  const CaptureFilter& f = p.request->filter;
  EXPECT_TRUE(f.by_service);
  EXPECT_TRUE(f.service_ports[3] && f.service_ports[4] && !f.service_ports[7]);
  EXPECT_EQ(f.reasons, 0u);
  EXPECT_EQ(p.request->limits.count, 1000u);
  EXPECT_EQ(p.request->limits.duration, std::chrono::seconds(10));
  EXPECT_TRUE(f.matches({3, 6, CaptureDirection::kToBackend}));
  EXPECT_FALSE(f.matches({7, 6, CaptureDirection::kToBackend}));
  EXPECT_FALSE(f.matches({}));

  p = parse_capture_request(
      R"({"service": "web", "servicePort": "https", "proto": "udp", "direction": "from_backend",
          "count": 5, "seconds": 2, "snaplen": 128, "file": "/tmp/x.pcap"})",
      kPorts);
  ASSERT_TRUE(p.request);
  EXPECT_EQ(p.request->filter.service_ports.count(), 1u);
  EXPECT_TRUE(p.request->filter.service_ports[4]);
  EXPECT_FALSE(p.request->filter.matches({4, 6, CaptureDirection::kFromBackend}));
  EXPECT_FALSE(p.request->filter.matches({4, 17, CaptureDirection::kToBackend}));
  EXPECT_TRUE(p.request->filter.matches({4, 17, CaptureDirection::kFromBackend}));
  EXPECT_EQ(p.request->limits.count, 5u);
  EXPECT_EQ(p.request->filter.snaplen, 128);
  EXPECT_EQ(p.request->file, "/tmp/x.pcap");
}

TEST(CaptureRequest, Reasons) {
  auto p = parse_capture_request(R"({"reason": "acl_denied"})", kPorts);
  ASSERT_TRUE(p.request);
  EXPECT_EQ(p.request->filter.reasons,
            uint64_t{1} << static_cast<unsigned>(DropReason::kAclDenied));
  EXPECT_TRUE(p.request->filter.matches({}));  // no Service filter: any drop of the reason
  p = parse_capture_request(R"({"reason": "any"})", kPorts);
  ASSERT_TRUE(p.request);
  EXPECT_EQ(static_cast<size_t>(__builtin_popcountll(p.request->filter.reasons)), kDropReasonCount);
}

TEST(CaptureRequest, Errors) {
  EXPECT_EQ(error_of("[1]"), "body must be a JSON object []");
  EXPECT_EQ(error_of("{"), "body must be a JSON object []");
  EXPECT_EQ(error_of("{}"), "give service, reason or both []");
  EXPECT_EQ(error_of(R"({"service": "web", "limit": 3})"),
            "unknown key \"limit\" (service, servicePort, reason, direction, proto, count, "
            "seconds, snaplen, file) [limit]");
  EXPECT_EQ(error_of(R"({"service": 3})"), "service must be a string [service]");
  EXPECT_EQ(error_of(R"({"service": "nope"})"), "no Service named \"nope\" [service]");
  EXPECT_EQ(error_of(R"({"service": "web", "servicePort": "dns"})"),
            "Service \"web\" has no port named \"dns\" [servicePort]");
  EXPECT_EQ(error_of(R"({"reason": "acl_denied", "servicePort": "dns"})"),
            "servicePort needs service [servicePort]");
  EXPECT_EQ(error_of(R"({"reason": "nope"})").substr(0, 48),
            "reason must be \"any\" or one of eth_truncated, vl");
  EXPECT_EQ(error_of(R"({"service": "web", "direction": "in"})"),
            "direction must be to_backend, from_backend or both [direction]");
  EXPECT_EQ(error_of(R"({"service": "web", "proto": "icmp"})"), "proto must be tcp or udp [proto]");
  EXPECT_EQ(error_of(R"({"service": "web", "count": 0})"),
            "count must be an integer 1-100000 [count]");
  EXPECT_EQ(error_of(R"({"service": "web", "count": 1.5})"),
            "count must be an integer 1-100000 [count]");
  EXPECT_EQ(error_of(R"({"service": "web", "seconds": 301})"),
            "seconds must be an integer 1-300 [seconds]");
  EXPECT_EQ(error_of(R"({"service": "web", "snaplen": 63})"),
            "snaplen must be an integer 64-2048 [snaplen]");
  EXPECT_EQ(error_of(R"({"service": "web", "file": "out.pcap"})"),
            "file must be an absolute path on the server [file]");
}

TEST(PcapWriter, ClassicFormatWithNanoseconds) {
  PcapWriter w(256);
  const uint8_t frame[4] = {1, 2, 3, 4};
  w.add(1700000000123456789, frame, 4, 60);
  const std::string& b = w.bytes();
  ASSERT_EQ(b.size(), 24u + 16u + 4u);
  uint32_t u32;
  std::memcpy(&u32, b.data(), 4);
  EXPECT_EQ(u32, 0xa1b23c4du);
  std::memcpy(&u32, b.data() + 16, 4);
  EXPECT_EQ(u32, 256u);  // snaplen
  std::memcpy(&u32, b.data() + 20, 4);
  EXPECT_EQ(u32, 1u);  // Ethernet
  std::memcpy(&u32, b.data() + 24, 4);
  EXPECT_EQ(u32, 1700000000u);
  std::memcpy(&u32, b.data() + 28, 4);
  EXPECT_EQ(u32, 123456789u);
  std::memcpy(&u32, b.data() + 32, 4);
  EXPECT_EQ(u32, 4u);
  std::memcpy(&u32, b.data() + 36, 4);
  EXPECT_EQ(u32, 60u);
  EXPECT_EQ(b.substr(40), std::string("\x01\x02\x03\x04", 4));
}

}  // namespace
}  // namespace l4lb::api
