#include "src/steering.h"

#include <rte_errno.h>
#include <rte_flow.h>

#include <array>
#include <cstring>

namespace l4lb {

namespace {

constexpr uint64_t kTcpUdpV4 = RTE_ETH_RSS_NONFRAG_IPV4_TCP | RTE_ETH_RSS_NONFRAG_IPV4_UDP;
constexpr uint64_t kFieldBits = RTE_ETH_RSS_L3_SRC_ONLY | RTE_ETH_RSS_L3_DST_ONLY |
                                RTE_ETH_RSS_L4_SRC_ONLY | RTE_ETH_RSS_L4_DST_ONLY;

// The shared key, zero-padded to the longest key a NIC asks for: the hash of the 6-byte
// client side reads only the first 10 bytes, so every key length gives the same hash.
std::array<uint8_t, 64> padded_key() {
  std::array<uint8_t, 64> k{};
  std::memcpy(k.data(), kRssKey.data(), kRssKey.size());
  return k;
}
const std::array<uint8_t, 64> kPaddedKey = padded_key();

// The client side is the source of requests (clients' port) and the destination of
// replies (pods' port).
uint64_t client_side_fields(PortSide side) {
  return side == PortSide::kClients ? RTE_ETH_RSS_L3_SRC_ONLY | RTE_ETH_RSS_L4_SRC_ONLY
                                    : RTE_ETH_RSS_L3_DST_ONLY | RTE_ETH_RSS_L4_DST_ONLY;
}

bool key_fits(const rte_eth_dev_info& info) {
  return info.hash_key_size >= 10 && info.hash_key_size <= kPaddedKey.size();
}

std::string flow_error_text(int rc, const rte_flow_error& err) {
  std::string s = rte_strerror(-rc);
  if (err.message != nullptr && s != err.message) s = std::string(err.message) + " (" + s + ")";
  return s;
}

// Fills the port's RETA so that entry i names the queue OwnerHash gives slot i.
std::string program_reta(uint16_t port_id, const rte_eth_dev_info& info, uint16_t queues) {
  const uint32_t size = info.reta_size;
  if (size < OwnerHash::kSlots || (size & (size - 1)) != 0) {
    return "; RETA size " + std::to_string(size) + " left as the driver set it";
  }
  std::vector<rte_eth_rss_reta_entry64> reta(size / RTE_ETH_RETA_GROUP_SIZE);
  const OwnerHash owners(queues);
  for (uint32_t i = 0; i < size; ++i) {
    auto& group = reta[i / RTE_ETH_RETA_GROUP_SIZE];
    group.mask |= uint64_t{1} << (i % RTE_ETH_RETA_GROUP_SIZE);
    group.reta[i % RTE_ETH_RETA_GROUP_SIZE] = owners.reta_queue(i);
  }
  if (int rc = rte_eth_dev_rss_reta_update(port_id, reta.data(), static_cast<uint16_t>(size));
      rc != 0) {
    return std::string("; RETA update refused (") + rte_strerror(-rc) + ")";
  }
  return "; RETA of " + std::to_string(size) + " entries programmed";
}

// kRssFields was configured before start: keep it if the device reports the field
// selection back (some drivers accept rss_hf bits they then ignore).
bool check_rss_fields(uint16_t port_id, const rte_eth_dev_info& info, uint16_t queues,
                      PortSide side, std::string& detail) {
  std::array<uint8_t, 64> key{};
  rte_eth_rss_conf got{};
  got.rss_key = key.data();
  got.rss_key_len = info.hash_key_size <= key.size() ? info.hash_key_size : 0;
  if (got.rss_key_len == 0) got.rss_key = nullptr;
  if (int rc = rte_eth_dev_rss_hash_conf_get(port_id, &got); rc != 0) {
    detail += std::string("RSS field selection not readable back (") + rte_strerror(-rc) + "); ";
    return false;
  }
  const uint64_t want = kTcpUdpV4 | client_side_fields(side);
  if ((got.rss_hf & want) != want) {
    detail += "RSS field selection not kept by the device; ";
    return false;
  }
  detail += "port RSS hashes TCP/UDP on the client's IP and port";
  detail += program_reta(port_id, info, queues);
  return true;
}

// One rte_flow RSS rule per protocol (TCP, UDP over IPv4) hashing the client side.
// Created, not just validated: some drivers validate what they cannot create (net_tap
// without tc flower in the kernel). All or nothing: a half-installed pair is removed.
bool create_flow_rules(uint16_t port_id, const rte_eth_dev_info& info, uint16_t queues,
                       PortSide side, std::string& detail) {
  std::vector<uint16_t> queue_list(queues);
  for (uint16_t q = 0; q < queues; ++q) queue_list[q] = q;
  const rte_flow_attr attr{
      .group = 0, .priority = 0, .ingress = 1, .egress = 0, .transfer = 0, .reserved = 0};
  std::vector<rte_flow*> made;
  for (auto [proto, rss_type] : {std::pair{RTE_FLOW_ITEM_TYPE_TCP, RTE_ETH_RSS_NONFRAG_IPV4_TCP},
                                 std::pair{RTE_FLOW_ITEM_TYPE_UDP, RTE_ETH_RSS_NONFRAG_IPV4_UDP}}) {
    const rte_flow_item pattern[] = {{RTE_FLOW_ITEM_TYPE_ETH, nullptr, nullptr, nullptr},
                                     {RTE_FLOW_ITEM_TYPE_IPV4, nullptr, nullptr, nullptr},
                                     {proto, nullptr, nullptr, nullptr},
                                     {RTE_FLOW_ITEM_TYPE_END, nullptr, nullptr, nullptr}};
    rte_flow_action_rss rss{};
    rss.func = RTE_ETH_HASH_FUNCTION_TOEPLITZ;
    rss.level = 0;
    rss.types = rss_type | client_side_fields(side);
    rss.key_len = key_fits(info) ? info.hash_key_size : 0;
    rss.key = rss.key_len != 0 ? kPaddedKey.data() : nullptr;
    rss.queue_num = queues;
    rss.queue = queue_list.data();
    const rte_flow_action actions[] = {{RTE_FLOW_ACTION_TYPE_RSS, &rss},
                                       {RTE_FLOW_ACTION_TYPE_END, nullptr}};
    const char* what = proto == RTE_FLOW_ITEM_TYPE_TCP ? "TCP" : "UDP";
    rte_flow_error err{};
    int rc = rte_flow_validate(port_id, &attr, pattern, actions, &err);
    const bool validated = rc == 0;
    rte_flow* flow = nullptr;
    if (validated) {
      err = rte_flow_error{};
      flow = rte_flow_create(port_id, &attr, pattern, actions, &err);
      rc = flow != nullptr ? 0 : (rte_errno != 0 ? -rte_errno : -EIO);
    }
    if (flow == nullptr) {
      detail += std::string("rte_flow RSS rule for ") + what + " not created (" +
                (validated ? "validated, then creation failed" : "validation refused") +
                "): " + flow_error_text(rc, err) + "; ";
      for (rte_flow* f : made) rte_flow_destroy(port_id, f, &err);
      return false;
    }
    made.push_back(flow);
  }
  detail += "rte_flow RSS rules (TCP, UDP over IPv4) hash on the client's IP and port";
  return true;
}

}  // namespace

SteeringPlan plan_port_steering(const rte_eth_dev_info& info, uint16_t queues, PortSide side,
                                rte_eth_conf& conf) {
  SteeringCaps caps;
  caps.queues = queues;
  caps.rss_tcp_udp_ipv4 = (info.flow_type_rss_offloads & kTcpUdpV4) == kTcpUdpV4;
  caps.rss_src_dst_only = (info.flow_type_rss_offloads & kFieldBits) == kFieldBits;
  SteeringPlan plan{side, steering_order(caps, side)};
  if (queues <= 1) return plan;
  conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
  auto& rss = conf.rx_adv_conf.rss_conf;
  if (plan.order.front() == SteeringMode::kRssFields) {
    rss.rss_hf = kTcpUdpV4 | client_side_fields(side);
    if (key_fits(info)) {
      // DPDK copies the key at configure time; the static array outlives it anyway.
      rss.rss_key = const_cast<uint8_t*>(kPaddedKey.data());
      rss.rss_key_len = info.hash_key_size;
    }
  } else {
    // Spread what arrives; workers hand strays to their owner.
    rss.rss_hf = (RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP) & info.flow_type_rss_offloads;
  }
  return plan;
}

SteeringResult apply_port_steering(uint16_t port_id, const rte_eth_dev_info& info, uint16_t queues,
                                   const SteeringPlan& plan) {
  SteeringResult r;
  for (SteeringMode m : plan.order) {
    r.mode = m;
    switch (m) {
      case SteeringMode::kSingleQueue:
        r.detail += "one queue, one worker: nothing to steer";
        return r;
      case SteeringMode::kRssFields:
        if (check_rss_fields(port_id, info, queues, plan.side, r.detail)) return r;
        break;
      case SteeringMode::kFlowRule:
        if (create_flow_rules(port_id, info, queues, plan.side, r.detail)) return r;
        break;
      case SteeringMode::kSoftware:
        r.detail += plan.side == PortSide::kBoth
                        ? "port carries both clients and pods; workers hand stray packets to "
                          "their owner"
                        : "workers hand stray packets to their owner";
        return r;
    }
  }
  return r;
}

}  // namespace l4lb
