// The worker's log lines (the only ones the data path writes): the first drop of each
// unusual reason at info, every drop at debug, all through a per-worker token bucket so a
// flood of bad packets costs at most `dataPathLinesPerSecond` lines a second. The next
// line that gets through says how many were suppressed.
#include <rte_mbuf.h>

#include <cstdio>

#include "src/log.h"
#include "src/worker.h"

#undef L4LB_LOG_MODULE
#define L4LB_LOG_MODULE ::l4lb::LogModule::kWorker

namespace l4lb {

namespace {

// Drops an appliance on a shared segment sees all day long: not worth a line at info.
constexpr uint64_t bit(DropReason r) { return uint64_t{1} << static_cast<unsigned>(r); }
constexpr uint64_t kRoutineDrops = bit(DropReason::kNotOurMac) | bit(DropReason::kMulticast) |
                                   bit(DropReason::kIpv6) | bit(DropReason::kArpNotForUs) |
                                   bit(DropReason::kUnsupportedEtherType);
constexpr uint64_t kAllDrops =
    kDropReasonCount == 64 ? ~uint64_t{0} : (uint64_t{1} << kDropReasonCount) - 1;

void format_be(uint32_t ip_be, char (&out)[16]) {
  const auto* b = reinterpret_cast<const uint8_t*>(&ip_be);
  std::snprintf(out, sizeof out, "%u.%u.%u.%u", b[0], b[1], b[2], b[3]);
}

}  // namespace

void Worker::refresh_log_level() noexcept {
  if (!log_rate_ready_) {
    log_rate_.configure(settings_.log_lines_per_second, tsc_hz_, now_tsc_);
    first_drop_pending_ = kAllDrops & ~kRoutineDrops;
    log_rate_ready_ = true;
  }
  const bool info = log_enabled(LogModule::kWorker, LogLevel::kInfo);
  const bool debug = log_enabled(LogModule::kWorker, LogLevel::kDebug);
  drop_log_mask_ = (debug ? kAllDrops : 0) | (info ? first_drop_pending_ : 0);
  drop_watch_mask_ = drop_log_mask_ | capture_drop_mask_;
}

void Worker::drop_slow(rte_mbuf* m, DropReason reason) noexcept {
  const uint64_t b = uint64_t{1} << static_cast<unsigned>(reason);
  if (capture_drop_mask_ & b) capture_drop(m, reason);
  if (drop_log_mask_ & b) log_drop(m, reason);
}

void Worker::log_drop(rte_mbuf* m, DropReason reason) noexcept {
  const uint64_t b = uint64_t{1} << static_cast<unsigned>(reason);
  const bool first = (first_drop_pending_ & b) != 0;
  if (!log_rate_.allow(now_tsc_)) return;  // a first one stays pending
  char what[96];
  const ParsedPacket p = parse_frame(rte_pktmbuf_mtod(m, uint8_t*), rte_pktmbuf_data_len(m),
                                     {.verify_ipv4_checksum = false});
  if (p.kind == PacketKind::kIpv4) {
    char src[16], dst[16];
    format_be(p.ip->src, src);
    format_be(p.ip->dst, dst);
    if (p.proto == kIpProtoTcp || p.proto == kIpProtoUdp) {
      std::snprintf(what, sizeof what, "%s %s:%u > %s:%u", p.proto == kIpProtoTcp ? "tcp" : "udp",
                    src, ntoh16(p.key.src_port), dst, ntoh16(p.key.dst_port));
    } else {
      std::snprintf(what, sizeof what, "proto %u %s > %s", p.proto, src, dst);
    }
  } else {
    std::snprintf(what, sizeof what, "%s frame of %u bytes",
                  p.kind == PacketKind::kArp ? "ARP" : "a", rte_pktmbuf_pkt_len(m));
  }
  const uint64_t suppressed = log_rate_.take_suppressed();
  char tail[64] = "";
  if (suppressed != 0) {
    std::snprintf(tail, sizeof tail, " (%lu lines suppressed)",
                  static_cast<unsigned long>(suppressed));
  }
  const auto label = drop_reason_label(reason);
  L4LB_LOG(L4LB_LOG_MODULE, first ? LogLevel::kInfo : LogLevel::kDebug,
           "worker %u (lcore %u): drop %.*s: %s%s%s", settings_.queue, settings_.lcore,
           static_cast<int>(label.size()), label.data(), what,
           first ? " (first on this worker)" : "", tail);
  if (first) {
    first_drop_pending_ &= ~b;
    refresh_log_level();
  }
}

}  // namespace l4lb
