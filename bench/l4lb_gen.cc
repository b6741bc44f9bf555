// l4lb-gen: the benchmark's traffic generator and sink (role `gen`), and the baseline
// worker that only swaps MACs (role `reflect`). Not part of the appliance; used by
// scripts/bench. Two ports like a two-armed load balancer: `wan` (clients -> VIP) and
// `lan` (DNATed packets to the backends).
//
//  gen:     one lcore per queue (--queues N; the main lcore takes queue 0) transmits
//           pre-built 64-byte client->VIP frames on its wan queue as fast as the port
//           takes them and counts (and samples) what comes back on its lan queue.
//  reflect: one worker lcore per queue receives on queue q of each port, swaps the MACs
//           and sends on queue q of the other port: the raw I/O ceiling of the same
//           ports and cores. It counts busy/idle cycles exactly as l4lbd's worker does
//           (src/worker.cc).
//
// With N queues each flow goes out on the queue of the l4lbd worker that owns it
// (lb/steering_plan.h OwnerHash, as a NIC with l4lbd's RSS set-up would place it), so
// l4lbd hands nothing over; --spread puts flow i on queue i mod N instead, which makes
// (N-1)/N of the packets strays that l4lbd's workers hand to their owners.
//
// Per packet the generator writes only the varying fields (client IP, client port and
// the two checksums) into a copy of a template frame; the only allocation is the bulk
// mbuf allocation from the mempool. Output: one JSON line on stdout.
#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_pause.h>
#include <time.h>

#include <CLI/CLI.hpp>
#include <array>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "lb/steering_plan.h"

namespace {

constexpr uint16_t kBurst = 32;
constexpr uint16_t kFrameLen = 60;  // 64 bytes on the wire with the FCS
constexpr uint16_t kRing = 1024;
constexpr uint8_t kProtoTcp = 6;
constexpr uint8_t kProtoUdp = 17;
// Client addresses: the RFC 2544 benchmarking range 198.18.0.0/15.
constexpr uint32_t kClientBase = 0xC6120000;  // 198.18.0.0
constexpr uint32_t kClientCount = 1u << 17;
constexpr uint16_t kFirstPort = 1024;
constexpr uint32_t kPortCount = 65536 - kFirstPort;
constexpr uint32_t kSampleMask = 1023;  // check every 1024th received packet

std::atomic<bool> g_stop{false};
void on_signal(int) { g_stop = true; }

struct Mac {
  uint8_t b[6];
};

Mac parse_mac(const std::string& s) {
  Mac m{};
  unsigned v[6];
  if (std::sscanf(s.c_str(), "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6) {
    throw std::runtime_error("bad MAC " + s);
  }
  for (int i = 0; i < 6; ++i) m.b[i] = static_cast<uint8_t>(v[i]);
  return m;
}

uint32_t parse_ip(const std::string& s) {
  unsigned a, b, c, d;
  if (std::sscanf(s.c_str(), "%u.%u.%u.%u", &a, &b, &c, &d) != 4 || a > 255 || b > 255 ||
      c > 255 || d > 255) {
    throw std::runtime_error("bad IPv4 address " + s);
  }
  return a << 24 | b << 16 | c << 8 | d;
}

// Host-order helpers for the frame bytes (network order on the wire).
inline void put16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
inline void put32(uint8_t* p, uint32_t v) {
  put16(p, static_cast<uint16_t>(v >> 16));
  put16(p + 2, static_cast<uint16_t>(v));
}
inline uint16_t get16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
inline uint32_t get32(const uint8_t* p) { return uint32_t{get16(p)} << 16 | get16(p + 2); }

// RFC 1071 one's-complement sum over 16-bit words (host order), not folded.
uint32_t sum16(const uint8_t* p, size_t len) {
  uint32_t s = 0;
  for (size_t i = 0; i + 1 < len; i += 2) s += get16(p + i);
  if (len & 1) s += uint32_t{p[len - 1]} << 8;
  return s;
}
inline uint16_t fold(uint32_t s) {
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return static_cast<uint16_t>(s);
}

// Frame offsets (untagged Ethernet, 20-byte IPv4 header).
constexpr size_t kIp = 14;
constexpr size_t kIpCsum = kIp + 10;
constexpr size_t kIpSrc = kIp + 12;
constexpr size_t kIpDst = kIp + 16;
constexpr size_t kL4 = kIp + 20;

// The template is built with client IP 0 and client port 0; a flow's checksums are then
// the template's partial sums plus its own fields (RFC 1624 eqn. 3 from a zero base).
struct Template {
  std::array<uint8_t, kFrameLen> frame{};
  size_t l4_csum_off = 0;
  uint32_t ip_partial = 0;  // un-complemented sum of the IP header without src
  uint32_t l4_partial = 0;  // un-complemented sum of pseudo-header + L4 without src IP/port
};

Template build_template(const Mac& src, const Mac& dst, uint8_t proto, uint32_t vip,
                        uint16_t vport, uint8_t tcp_flags) {
  Template t;
  uint8_t* f = t.frame.data();
  std::memcpy(f, dst.b, 6);
  std::memcpy(f + 6, src.b, 6);
  put16(f + 12, 0x0800);
  const uint16_t l4_len = proto == kProtoTcp ? 20 : kFrameLen - kL4;  // UDP fills the frame
  f[kIp] = 0x45;
  put16(f + kIp + 2, static_cast<uint16_t>(20 + l4_len));
  put16(f + kIp + 4, 0);
  put16(f + kIp + 6, 0x4000);  // DF
  f[kIp + 8] = 64;
  f[kIp + 9] = proto;
  put32(f + kIpDst, vip);
  uint8_t* l4 = f + kL4;
  put16(l4 + 2, vport);
  if (proto == kProtoTcp) {
    put32(l4 + 4, 0x10000000);  // seq
    put32(l4 + 8, tcp_flags & 0x10 ? 0x20000000 : 0);
    l4[12] = 5 << 4;
    l4[13] = tcp_flags;
    put16(l4 + 14, 65535);
    t.l4_csum_off = kL4 + 16;
  } else {
    put16(l4 + 4, l4_len);
    for (size_t i = 8; i < l4_len; ++i) l4[i] = static_cast<uint8_t>('a' + i % 26);
    t.l4_csum_off = kL4 + 6;
  }
  t.ip_partial = sum16(f + kIp, 20);
  // Pseudo-header (RFC 793 / RFC 768): src, dst, zero+proto, L4 length.
  t.l4_partial = sum16(l4, l4_len) + (vip >> 16) + (vip & 0xffff) + proto + l4_len;
  return t;
}

struct FlowFields {
  uint32_t ip;     // host order
  uint16_t port;   // host order
  uint16_t ip_csum;
  uint16_t l4_csum;
};

inline FlowFields flow_fields(const Template& t, uint8_t proto, uint32_t ip, uint16_t port) {
  const uint32_t ip_sum = (ip >> 16) + (ip & 0xffff);
  FlowFields f{ip, port, static_cast<uint16_t>(~fold(t.ip_partial + ip_sum)),
               static_cast<uint16_t>(~fold(t.l4_partial + ip_sum + port))};
  if (proto == kProtoUdp && f.l4_csum == 0) f.l4_csum = 0xffff;  // RFC 768: 0 means none
  return f;
}

inline void write_flow(uint8_t* f, const Template& t, const FlowFields& ff) {
  std::memcpy(f, t.frame.data(), kFrameLen);
  put32(f + kIpSrc, ff.ip);
  put16(f + kIpCsum, ff.ip_csum);
  put16(f + kL4, ff.port);
  put16(f + t.l4_csum_off, ff.l4_csum);
}

// The k-th client of a sweep: 2^17 addresses x 64512 ports, never repeating in a run.
inline void nth_client(uint64_t k, uint32_t* ip, uint16_t* port) {
  *ip = kClientBase + static_cast<uint32_t>(k % kClientCount);
  *port = static_cast<uint16_t>(kFirstPort + (k / kClientCount) % kPortCount);
}

uint16_t port_by_name(const std::string& devargs) {
  std::string name = devargs.substr(0, devargs.find(','));
  uint16_t id;
  if (rte_eth_dev_get_port_by_name(name.c_str(), &id) != 0) {
    throw std::runtime_error("no DPDK device " + name);
  }
  return id;
}

void start_port(uint16_t port, rte_mempool* pool, uint16_t queues) {
  rte_eth_conf conf{};
  if (rte_eth_dev_configure(port, queues, queues, &conf) != 0) {
    throw std::runtime_error("configure " + std::to_string(queues) + " queues");
  }
  uint16_t rxd = kRing, txd = kRing;
  rte_eth_dev_adjust_nb_rx_tx_desc(port, &rxd, &txd);
  const int socket = rte_eth_dev_socket_id(port) < 0 ? static_cast<int>(rte_socket_id())
                                                     : rte_eth_dev_socket_id(port);
  for (uint16_t q = 0; q < queues; ++q) {
    if (rte_eth_rx_queue_setup(port, q, rxd, socket, nullptr, pool) != 0 ||
        rte_eth_tx_queue_setup(port, q, txd, socket, nullptr) != 0) {
      throw std::runtime_error("queue setup");
    }
  }
  if (rte_eth_dev_start(port) != 0) throw std::runtime_error("start");
  rte_eth_promiscuous_enable(port);  // ENOTSUP on some virtual devices: harmless
}

bool wait_link_up(const std::vector<uint16_t>& ports, double timeout_s) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  while (!g_stop) {
    bool all = true;
    for (uint16_t p : ports) {
      rte_eth_link link{};
      rte_eth_link_get_nowait(p, &link);
      all = all && link.link_status == RTE_ETH_LINK_UP;
    }
    if (all) return true;
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

struct Options {
  std::string role = "gen";
  std::string eal;
  std::string wan, lan;
  std::string proto = "tcp";
  std::string mode = "established";
  uint32_t flows = 1000;
  double duration = 5;
  double link_timeout = 20;
  std::string src_mac_wan = "02:00:00:00:ff:01";
  std::string dst_mac_wan = "02:00:00:00:01:01";
  std::string vip = "172.16.12.100";
  uint16_t vport = 80;
  std::string expect_prefix;  // sample check of received packets: dst inside this /24-style
  uint16_t expect_dport = 0;
  bool prime = true;
  uint16_t queues = 1;  // queue pairs per port; gen: one lcore each, reflect: one worker each
  bool spread = false;  // gen: flow i on queue i mod N instead of its owner's queue
  // gen: after printing the figures, keep the links up until stdin closes, so the device
  // (l4lbd or reflect) stops polling before its peer goes away (see the end of run()).
  bool hold = false;
};

struct GenResult {
  uint64_t offered = 0;  // packets built and handed to tx_burst
  uint64_t tx = 0;
  uint64_t tx_failed = 0;  // ring full
  uint64_t rx = 0;
  uint64_t rx_wan = 0;
  uint64_t checked = 0, check_failed = 0;
  uint64_t primed = 0;
  double prime_seconds = 0;
  double seconds = 0;
  double cpu_share = 0;  // this thread's CPU time / wall time over the window
  double offered_mpps = 0, tx_mpps = 0, rx_mpps = 0;  // summed over queues (run_gen)
};

double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// Sample check of a received frame: IPv4 to the expected prefix and port, client
// source kept, IP header checksum valid.
bool check_frame(const rte_mbuf* m, uint32_t prefix, uint32_t mask, uint16_t dport) {
  if (rte_pktmbuf_data_len(m) < kL4 + 4) return false;
  const auto* f = rte_pktmbuf_mtod(m, const uint8_t*);
  if (get16(f + 12) != 0x0800 || f[kIp] != 0x45) return false;
  if (fold(sum16(f + kIp, 20)) != 0xffff) return false;
  const uint32_t src = get32(f + kIpSrc);
  if ((src & ~(kClientCount - 1)) != kClientBase) return false;
  if ((get32(f + kIpDst) & mask) != prefix) return false;
  return dport == 0 || get16(f + kL4 + 2) == dport;
}

// One generator lcore: its own queue on each port, its own share of the flows.
struct GenQueue {
  const Options* o = nullptr;
  uint16_t wan = 0, lan = 0, q = 0;
  rte_mempool* pool = nullptr;
  const l4lb::OwnerHash* owners = nullptr;
  std::atomic<uint16_t>* primed_queues = nullptr;  // start barrier: all queues primed
  // Priming packets sent and not yet back, all queues together: with --spread a reply
  // comes back on its owner's queue, not on the queue that sent its request.
  std::atomic<int64_t>* prime_in_flight = nullptr;
  GenResult r;
};

// Whether client k of a sweep (or flow k) goes out on queue q.
inline bool on_queue(const GenQueue& g, uint64_t k, uint32_t ip, uint16_t port) {
  if (g.o->queues == 1) return true;
  if (g.o->spread) return k % g.o->queues == g.q;
  return g.owners->owner(rte_cpu_to_be_32(ip), rte_cpu_to_be_16(port)) == g.q;
}

GenResult run_gen_queue(GenQueue& g) {
  const Options& o = *g.o;
  const uint16_t wan = g.wan, lan = g.lan, q = g.q;
  rte_mempool* pool = g.pool;
  const uint8_t proto = o.proto == "udp" ? kProtoUdp : kProtoTcp;
  const bool new_flows = o.mode == "new-flows";
  const Mac src = parse_mac(o.src_mac_wan), dst = parse_mac(o.dst_mac_wan);
  const uint32_t vip = parse_ip(o.vip);
  // Established flows send ACKs; new flows send SYNs (l4lbd inserts a flow on the first
  // packet of either kind, so established traffic needs no separate handshake).
  const Template t = build_template(src, dst, proto, vip, o.vport, new_flows ? 0x02 : 0x10);
  uint32_t prefix = 0, mask = 0;
  if (!o.expect_prefix.empty()) {
    const auto slash = o.expect_prefix.find('/');
    prefix = parse_ip(o.expect_prefix.substr(0, slash));
    const int len = slash == std::string::npos ? 32 : std::stoi(o.expect_prefix.substr(slash + 1));
    mask = len == 0 ? 0 : ~uint32_t{0} << (32 - len);
  }

  std::vector<FlowFields> flows;
  if (!new_flows) {
    // Flow i: address i mod 2^17, port 1024 + i / 2^17: distinct for up to 8.4e9 flows.
    flows.reserve(o.flows / o.queues + 1);
    for (uint32_t i = 0; i < o.flows; ++i) {
      uint32_t ip;
      uint16_t port;
      nth_client(i, &ip, &port);
      if (on_queue(g, i, ip, port)) flows.push_back(flow_fields(t, proto, ip, port));
    }
    if (flows.empty()) throw std::runtime_error("queue " + std::to_string(q) + " got no flows");
  }

  GenResult r;
  rte_mbuf* pkts[kBurst];
  rte_mbuf* rx[kBurst];
  uint64_t next = 0;  // next flow index (established) or sweep position (new flows)
  const uint64_t hz = rte_get_tsc_hz();

  auto drain = [&](bool count) {
    uint16_t n = rte_eth_rx_burst(lan, q, rx, kBurst);
    if (n != 0) {
      if (count) {
        for (uint16_t i = 0; i < n; ++i) {
          if (((r.rx + i) & kSampleMask) == 0 && mask != 0) {
            r.checked++;
            if (!check_frame(rx[i], prefix, mask, o.expect_dport)) r.check_failed++;
          }
        }
        r.rx += n;
      }
      rte_pktmbuf_free_bulk(rx, n);
    }
    uint16_t w = rte_eth_rx_burst(wan, q, rx, kBurst);  // nothing expected; keep it empty
    if (w != 0) {
      if (count) r.rx_wan += w;
      rte_pktmbuf_free_bulk(rx, w);
    }
    return n;
  };

  // Priming (established only): one paced pass over every flow so the measured run hits
  // entries that exist; not counted. Paced by waiting for the bursts to come back.
  const uint64_t prime_start = rte_rdtsc();
  if (!new_flows && o.prime) {
    uint64_t sent = 0, back = 0;
    std::atomic<int64_t>& in_flight = *g.prime_in_flight;
    auto drain_prime = [&] {
      const uint16_t n = drain(false);
      back += n;
      in_flight.fetch_sub(n, std::memory_order_relaxed);
    };
    const uint64_t give_up = rte_rdtsc() + hz * 60;
    while (sent < flows.size() && !g_stop && rte_rdtsc() < give_up) {
      uint16_t want = static_cast<uint16_t>(std::min<uint64_t>(kBurst, flows.size() - sent));
      if (rte_pktmbuf_alloc_bulk(pool, pkts, want) != 0) {
        drain_prime();
        continue;
      }
      for (uint16_t i = 0; i < want; ++i) {
        write_flow(rte_pktmbuf_mtod(pkts[i], uint8_t*), t, flows[sent + i]);
        pkts[i]->data_len = pkts[i]->pkt_len = kFrameLen;
      }
      uint16_t s = rte_eth_tx_burst(wan, q, pkts, want);
      if (s < want) rte_pktmbuf_free_bulk(pkts + s, want - s);
      sent += s;
      in_flight.fetch_add(s, std::memory_order_relaxed);
      // Keep at most a few rings' worth per queue in flight, so priming loses nothing.
      while (in_flight.load(std::memory_order_relaxed) > int64_t{2} * kRing * o.queues &&
             rte_rdtsc() < give_up && !g_stop) {
        drain_prime();
      }
    }
    const uint64_t settle = rte_rdtsc() + hz / 5;
    while (rte_rdtsc() < settle) drain_prime();
    r.primed = back;
  }
  // Every queue starts its window together (priming takes longer on some).
  g.primed_queues->fetch_add(1);
  while (g.primed_queues->load() < o.queues && !g_stop) drain(false);

  const uint64_t start = rte_rdtsc();
  r.prime_seconds = static_cast<double>(start - prime_start) / static_cast<double>(hz);
  const double cpu_start = thread_cpu_seconds();
  const uint64_t end = start + static_cast<uint64_t>(o.duration * hz);
  uint64_t now = start;
  while (now < end && !g_stop) {
    if (rte_pktmbuf_alloc_bulk(pool, pkts, kBurst) == 0) {
      for (uint16_t i = 0; i < kBurst; ++i) {
        uint8_t* f = rte_pktmbuf_mtod(pkts[i], uint8_t*);
        if (new_flows) {
          // Each queue takes its own clients of the one sweep: never the same twice.
          uint32_t ip;
          uint16_t port;
          do {
            nth_client(next, &ip, &port);
          } while (!on_queue(g, next++, ip, port));
          write_flow(f, t, flow_fields(t, proto, ip, port));
        } else {
          write_flow(f, t, flows[next]);
          if (++next == flows.size()) next = 0;
        }
        pkts[i]->data_len = pkts[i]->pkt_len = kFrameLen;
      }
      r.offered += kBurst;
      uint16_t s = rte_eth_tx_burst(wan, q, pkts, kBurst);
      r.tx += s;
      if (s < kBurst) {
        r.tx_failed += kBurst - s;
        rte_pktmbuf_free_bulk(pkts + s, kBurst - s);
      }
    }
    drain(true);
    now = rte_rdtsc();
  }
  r.seconds = static_cast<double>(now - start) / static_cast<double>(hz);
  r.cpu_share = (thread_cpu_seconds() - cpu_start) / r.seconds;
  // Packets in flight when the window closed still arrive; count them as delivered.
  const uint64_t tail_end = rte_rdtsc() + hz / 5;
  while (rte_rdtsc() < tail_end) drain(true);
  return r;
}

int gen_lcore(void* arg) {
  auto* g = static_cast<GenQueue*>(arg);
  try {
    g->r = run_gen_queue(*g);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "l4lb-gen: queue %u: %s\n", g->q, e.what());
    g_stop = true;
    return -1;
  }
  return 0;
}

// Runs every queue (queue 0 on the main lcore) and sums their figures. Mpps are summed
// per queue (each over its own window); seconds is the longest window.
GenResult run_gen(const Options& o, uint16_t wan, uint16_t lan, rte_mempool* pool) {
  const l4lb::OwnerHash owners(o.queues);
  std::atomic<uint16_t> primed{0};
  std::atomic<int64_t> prime_in_flight{0};
  std::vector<GenQueue> queues(o.queues);
  for (uint16_t q = 0; q < o.queues; ++q) {
    queues[q] = {&o, wan, lan, q, pool, &owners, &primed, &prime_in_flight, {}};
  }
  std::vector<unsigned> lcores;
  unsigned lcore = rte_get_main_lcore();
  for (uint16_t q = 1; q < o.queues; ++q) {
    lcore = rte_get_next_lcore(lcore, 1, 0);
    if (rte_eal_remote_launch(gen_lcore, &queues[q], lcore) != 0) {
      throw std::runtime_error("cannot launch queue " + std::to_string(q));
    }
    lcores.push_back(lcore);
  }
  bool failed = gen_lcore(&queues[0]) != 0;
  for (unsigned l : lcores) failed = rte_eal_wait_lcore(l) != 0 || failed;
  if (failed) throw std::runtime_error("a generator queue failed");
  GenResult sum;
  for (const GenQueue& g : queues) {
    const GenResult& r = g.r;
    sum.offered += r.offered;
    sum.tx += r.tx;
    sum.tx_failed += r.tx_failed;
    sum.rx += r.rx;
    sum.rx_wan += r.rx_wan;
    sum.checked += r.checked;
    sum.check_failed += r.check_failed;
    sum.primed += r.primed;
    sum.prime_seconds = std::max(sum.prime_seconds, r.prime_seconds);
    sum.seconds = std::max(sum.seconds, r.seconds);
    sum.cpu_share += r.cpu_share / o.queues;
    sum.offered_mpps += r.offered / r.seconds / 1e6;
    sum.tx_mpps += r.tx / r.seconds / 1e6;
    sum.rx_mpps += r.rx / r.seconds / 1e6;
  }
  return sum;
}

// --- reflect: the raw I/O baseline worker -------------------------------------------------

struct ReflectCounters {
  uint64_t rx[2] = {0, 0};
  uint64_t tx[2] = {0, 0};
  uint64_t tx_failed = 0;
  uint64_t busy_cycles = 0, idle_cycles = 0, busy_polls = 0, empty_polls = 0;
  // -Dstage_cycles=true builds, as l4lbd's (src/stats.h): busy cycles in rx_burst, the MAC
  // swap, tx_burst.
  uint64_t stage_rx = 0, stage_decide = 0, stage_flush = 0;
};

#ifdef L4LB_STAGE_CYCLES
constexpr bool kStageCycles = true;
#else
constexpr bool kStageCycles = false;
#endif

struct ReflectCtx {
  uint16_t ports[2];
  uint16_t q;  // this worker's queue on both ports
  ReflectCounters c;
};

// Same loop shape and the same cycle accounting as l4lbd's Worker::run: poll every port,
// act on the burst, count the whole iteration as busy when anything was received.
int reflect_loop(void* arg) {
  auto* ctx = static_cast<ReflectCtx*>(arg);
  ReflectCounters& c = ctx->c;
  rte_mbuf* pkts[kBurst];
  // As l4lbd's workers (src/port.h, poll_after_link_up): a memif queue is polled only once
  // the link is up; net_memif's RX can fault on a queue above 0 while the peer connects.
  auto up = [](uint16_t port) {
    rte_eth_link link{};
    return rte_eth_link_get_nowait(port, &link) == 0 && link.link_status == RTE_ETH_LINK_UP;
  };
  while (!g_stop.load(std::memory_order_relaxed) && !(up(ctx->ports[0]) && up(ctx->ports[1]))) {
    rte_pause();
  }
  while (!g_stop.load(std::memory_order_relaxed)) {
    const uint64_t t0 = rte_rdtsc();
    uint32_t received = 0;
    uint64_t rx_cyc = 0, swap_cyc = 0, tx_cyc = 0, mark = t0;
    auto stage = [&mark](uint64_t& to) {
      if constexpr (kStageCycles) {
        const uint64_t t = rte_rdtsc();
        to += t - mark;
        mark = t;
      }
    };
    for (int in = 0; in < 2; ++in) {
      const uint16_t n = rte_eth_rx_burst(ctx->ports[in], ctx->q, pkts, kBurst);
      stage(rx_cyc);
      if (n == 0) continue;
      received += n;
      c.rx[in] += n;
      for (uint16_t i = 0; i < n; ++i) {
        auto* f = rte_pktmbuf_mtod(pkts[i], uint8_t*);
        uint8_t tmp[6];
        std::memcpy(tmp, f, 6);
        std::memcpy(f, f + 6, 6);
        std::memcpy(f + 6, tmp, 6);
      }
      stage(swap_cyc);
      const int out = 1 - in;
      const uint16_t s = rte_eth_tx_burst(ctx->ports[out], ctx->q, pkts, n);
      stage(tx_cyc);
      c.tx[out] += s;
      if (s < n) {
        c.tx_failed += n - s;
        rte_pktmbuf_free_bulk(pkts + s, n - s);
      }
    }
    const uint64_t spent = rte_rdtsc() - t0;
    if (received != 0) {
      c.busy_cycles += spent;
      c.busy_polls++;
      c.stage_rx += rx_cyc;
      c.stage_decide += swap_cyc;
      c.stage_flush += tx_cyc;
    } else {
      c.idle_cycles += spent;
      c.empty_polls++;
    }
  }
  return 0;
}

std::vector<std::string> split_words(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> w;
  for (std::string x; in >> x;) w.push_back(x);
  return w;
}

int run(const Options& o) {
  std::vector<std::string> args = {"l4lb-gen"};
  for (auto& a : split_words(o.eal)) args.push_back(a);
  args.insert(args.end(), {"--vdev", o.wan, "--vdev", o.lan});
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  if (rte_eal_init(static_cast<int>(args.size()), argv.data()) < 0) {
    throw std::runtime_error(std::string("EAL: ") + rte_strerror(rte_errno));
  }
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  if (o.role == "gen" ? rte_lcore_count() < o.queues : rte_lcore_count() <= o.queues) {
    throw std::runtime_error(o.role == "gen" ? "gen needs one lcore per queue"
                                             : "reflect needs one worker lcore per queue "
                                               "besides the main lcore");
  }
  // Enough mbufs for every queue's rings on both ports plus the lcores' caches.
  const unsigned mbufs = 16384u * o.queues - 1;
  rte_mempool* pool = rte_pktmbuf_pool_create("gen_pool", mbufs, 256, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                              rte_socket_id());
  if (pool == nullptr) throw std::runtime_error("mbuf pool");
  const uint16_t wan = port_by_name(o.wan), lan = port_by_name(o.lan);
  start_port(wan, pool, o.queues);
  start_port(lan, pool, o.queues);

  if (o.role == "reflect") {
    std::vector<ReflectCtx> ctx(o.queues);
    std::string lcores;
    unsigned worker = rte_get_main_lcore();
    for (uint16_t q = 0; q < o.queues; ++q) {
      worker = rte_get_next_lcore(worker, 1, 0);
      ctx[q] = {{wan, lan}, q, {}};
      rte_eal_remote_launch(reflect_loop, &ctx[q], worker);
      lcores += (q ? "," : "") + std::to_string(worker);
    }
    std::fprintf(stderr, "l4lb-gen reflect: ready on lcore %s\n", lcores.c_str());
    // Runs until SIGTERM/SIGINT, like l4lbd.
    while (!g_stop) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    rte_eal_mp_wait_lcore();
    ReflectCounters c;  // summed over the workers
    for (const ReflectCtx& x : ctx) {
      for (int i = 0; i < 2; ++i) {
        c.rx[i] += x.c.rx[i];
        c.tx[i] += x.c.tx[i];
      }
      c.tx_failed += x.c.tx_failed;
      c.busy_cycles += x.c.busy_cycles;
      c.idle_cycles += x.c.idle_cycles;
      c.busy_polls += x.c.busy_polls;
      c.empty_polls += x.c.empty_polls;
      c.stage_rx += x.c.stage_rx;
      c.stage_decide += x.c.stage_decide;
      c.stage_flush += x.c.stage_flush;
    }
    std::printf(
        "{\"role\":\"reflect\",\"lcores\":\"%s\",\"workers\":%u,\"tsc_hz\":%lu,\"rx_wan\":%lu,"
        "\"rx_lan\":%lu,\"tx_wan\":%lu,\"tx_lan\":%lu,\"tx_failed\":%lu,\"busy_cycles\":%lu,"
        "\"idle_cycles\":%lu,\"busy_polls\":%lu,\"empty_polls\":%lu,\"stage_cycles\":%s}\n",
        lcores.c_str(), o.queues, rte_get_tsc_hz(), c.rx[0], c.rx[1], c.tx[0], c.tx[1], c.tx_failed,
        c.busy_cycles, c.idle_cycles, c.busy_polls, c.empty_polls,
        kStageCycles ? ("{\"rx\":" + std::to_string(c.stage_rx) +
                        ",\"decide\":" + std::to_string(c.stage_decide) +
                        ",\"flush\":" + std::to_string(c.stage_flush) + "}")
                           .c_str()
                     : "null");
  } else {
    if (!wait_link_up({wan, lan}, o.link_timeout)) {
      throw std::runtime_error("links did not come up (is the peer running?)");
    }
    GenResult r = run_gen(o, wan, lan, pool);
    std::printf(
        "{\"role\":\"gen\",\"mode\":\"%s\",\"proto\":\"%s\",\"flows\":%u,\"queues\":%u,"
        "\"spread\":%s,\"seconds\":%.4f,"
        "\"offered\":%lu,\"tx\":%lu,\"tx_failed\":%lu,\"rx\":%lu,\"rx_wan\":%lu,\"primed\":%lu,"
        "\"checked\":%lu,\"check_failed\":%lu,\"offered_mpps\":%.4f,\"tx_mpps\":%.4f,"
        "\"rx_mpps\":%.4f,\"prime_seconds\":%.4f,\"cpu_share\":%.4f}\n",
        o.mode.c_str(), o.proto.c_str(), o.flows, o.queues, o.spread ? "true" : "false", r.seconds,
        r.offered, r.tx, r.tx_failed, r.rx, r.rx_wan, r.primed, r.checked, r.check_failed,
        r.offered_mpps, r.tx_mpps, r.rx_mpps, r.prime_seconds, r.cpu_share);
  }
  std::fflush(stdout);
  std::fflush(stderr);
  // A memif peer disconnecting while the device polls its rings races in the PMD (the
  // reflector died with SIGSEGV now and then): with --hold the harness stops the device
  // first, then closes our stdin.
  if (o.hold) {
    while (std::fgetc(stdin) != EOF) {
    }
  }
  // The figures are out. Closing a memif port while its peer disconnects races in the PMD's
  // control thread (an intermittent SIGSEGV in the reflector at exit, seen in CI); this
  // helper holds nothing that outlives the process (no hugepages, --no-shconf, sockets in
  // the benchmark's temporary folder), so it leaves without the teardown.
  std::_Exit(0);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"l4lb-gen: benchmark traffic generator/sink (gen) and MAC-swap baseline (reflect)"};
  Options o;
  app.add_option("--role", o.role, "gen or reflect")->check(CLI::IsMember({"gen", "reflect"}));
  app.add_option("--eal", o.eal, "EAL arguments (split on spaces)");
  app.add_option("--wan", o.wan, "wan port devargs (clients -> VIP)")->required();
  app.add_option("--lan", o.lan, "lan port devargs (-> backends)")->required();
  app.add_option("--proto", o.proto, "tcp or udp")->check(CLI::IsMember({"tcp", "udp"}));
  app.add_option("--mode", o.mode, "established or new-flows")
      ->check(CLI::IsMember({"established", "new-flows"}));
  app.add_option("--flows", o.flows, "distinct client ip:port (established)");
  app.add_option("--duration", o.duration, "seconds of measured traffic");
  app.add_option("--link-timeout", o.link_timeout, "seconds to wait for both links");
  app.add_option("--src-mac", o.src_mac_wan, "source MAC of the client frames");
  app.add_option("--dst-mac", o.dst_mac_wan, "destination MAC (the wan port of the device)");
  app.add_option("--vip", o.vip, "destination address");
  app.add_option("--vport", o.vport, "destination port");
  app.add_option("--expect-prefix", o.expect_prefix, "sample check: received dst inside CIDR");
  app.add_option("--expect-dport", o.expect_dport, "sample check: received dst port");
  app.add_flag("!--no-prime", o.prime, "skip the priming pass over every flow");
  app.add_option("--queues", o.queues,
                 "queue pairs per port (gen: one lcore each; "
                 "reflect: one worker lcore each)")
      ->check(CLI::Range(1, 64));
  app.add_flag("--spread", o.spread, "gen: flow i on queue i mod N, not on its owner's queue");
  app.add_flag("--hold", o.hold, "gen: after the figures, stay connected until stdin closes");
  CLI11_PARSE(app, argc, argv);
  try {
    return run(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "l4lb-gen: %s\n", e.what());
    return 1;
  }
}
