#include "src/trace.h"

#include <nlohmann/json.hpp>

#include "lb/cidr.h"
#include "lb/parse.h"
#include "src/port.h"
#include "src/snapshot.h"

namespace l4lb {

namespace {

using nlohmann::json;

std::string ip(uint32_t be) { return format_ipv4(ntoh32(be)); }

const char* state_name(uint32_t state) {
  static const char* const kNames[] = {"syn_sent", "syn_ack_seen", "established", "closing",
                                       "udp"};
  return state < 5 ? kNames[state] : "unknown";
}

const char* verdict_name(TraceVerdict v) {
  switch (v) {
    case TraceVerdict::kDrop: return "drop";
    case TraceVerdict::kForward: return "forward";
    case TraceVerdict::kHold: return "hold (next hop unresolved: ARP request, then forward)";
    case TraceVerdict::kToKernel: return "to kernel twin";
    case TraceVerdict::kEchoReply: return "echo reply";
    case TraceVerdict::kReject: return "reject (TCP RST / ICMP port unreachable)";
    case TraceVerdict::kNone: break;
  }
  return "none";
}

}  // namespace

std::string trace_json(const TraceRequest& req, const TraceLog& log, const Snapshot& snap,
                       const std::vector<PortInfo>& ports, unsigned worker_lcore) {
  const auto& sps = snap.services.ports();
  auto sp_name = [&](uint32_t i) {
    return i < sps.size() ? sps[i].service + "/" + sps[i].name : std::string("?");
  };
  json steps = json::array();
  for (uint8_t i = 0; i < log.n; ++i) {
    const TraceRecord& r = log.steps[i];
    switch (r.kind) {
      case TraceStep::kParsed:
        steps.push_back({{"step", "parse"}, {"result", "IPv4 " + std::to_string(r.a)}});
        break;
      case TraceStep::kOwner:
        steps.push_back({{"step", "owner"}, {"worker", r.a}});
        break;
      case TraceStep::kServicePort: {
        json s = {{"step", "service_port"}, {"match", sp_name(r.a)}};
        if (r.a < sps.size()) {
          s["backends"] = sps[r.a].backend_ips_be.size();
          s["sessionAffinity"] = sps[r.a].client_ip_affinity ? "ClientIP" : "None";
        }
        steps.push_back(s);
        break;
      }
      case TraceStep::kNoServicePort:
        steps.push_back({{"step", "service_port"}, {"match", nullptr}});
        break;
      case TraceStep::kAcl:
        steps.push_back({{"step", "acl"},
                         {"allowed", r.a != 0},
                         {"range", r.b == ~0u ? json(nullptr) : json(r.b)}});
        break;
      case TraceStep::kFlowHit:
        steps.push_back({{"step", "flow"}, {"result", "hit"}, {"backend", ip(r.a)},
                         {"backendPort", ntoh16(static_cast<uint16_t>(r.b))},
                         {"state", state_name(r.c)}, {"ageSeconds", r.d}});
        break;
      case TraceStep::kFlowReplyHit:
        steps.push_back({{"step", "flow"}, {"result", "reply hit"}, {"vip", ip(r.a)},
                         {"vipPort", ntoh16(static_cast<uint16_t>(r.b))},
                         {"state", state_name(r.c)}, {"ageSeconds", r.d}});
        break;
      case TraceStep::kFlowMiss:
        steps.push_back({{"step", "flow"}, {"result", "miss"}});
        break;
      case TraceStep::kFlowReopen:
        steps.push_back({{"step", "flow"}, {"result", "closing flow reopened by SYN: re-pick"}});
        break;
      case TraceStep::kFlowRepick:
        steps.push_back({{"step", "flow"}, {"result", "backend left the Service: re-pick"}});
        break;
      case TraceStep::kMaglev:
        steps.push_back({{"step", "maglev"}, {"slot", r.a}, {"backendIndex", r.b},
                         {"backend", ip(r.c)}});
        break;
      case TraceStep::kNoBackend:
        steps.push_back({{"step", "maglev"}, {"backend", nullptr}});
        break;
      case TraceStep::kStatelessReply:
        steps.push_back({{"step", "endpoint"}, {"serviceport", sp_name(r.a)}});
        break;
      case TraceStep::kNat:
        steps.push_back({{"step", "nat"},
                         {"rewrite", r.c ? "destination" : "source"},
                         {"to", ip(r.a) + ":" + std::to_string(ntoh16(static_cast<uint16_t>(r.b)))}});
        break;
      case TraceStep::kRoute:
        steps.push_back({{"step", "route"},
                         {"port", r.a < ports.size() ? ports[r.a].name : "?"},
                         {"nextHop", r.b ? ip(r.b) : ip(r.c)},
                         {"onLink", r.b == 0}});
        break;
      case TraceStep::kNoRoute:
        steps.push_back({{"step", "route"}, {"port", nullptr}});
        break;
      case TraceStep::kNeighbor:
        steps.push_back({{"step", "neighbor"}, {"ip", ip(r.a)}, {"resolved", r.b != 0}});
        break;
    }
  }
  json out = {{"packet",
               {{"proto", req.proto == kIpProtoTcp ? "tcp" : "udp"},
                {"src", ip(req.src_be)},
                {"sport", ntoh16(req.sport_be)},
                {"dst", ip(req.dst_be)},
                {"dport", ntoh16(req.dport_be)},
                {"port", req.in_port < ports.size() ? ports[req.in_port].name : "?"}}},
              {"worker", {{"lcore", worker_lcore}}},
              {"generation", snap.generation},
              {"steps", steps},
              {"verdict", verdict_name(log.verdict)}};
  if (log.verdict == TraceVerdict::kDrop) {
    out["dropReason"] = std::string(drop_reason_label(log.drop));
  }
  if (log.frame_len > 0 && log.verdict != TraceVerdict::kDrop) {
    uint8_t frame[sizeof log.frame];
    std::copy(log.frame, log.frame + log.frame_len, frame);
    ParsedPacket p = parse_frame(frame, log.frame_len, ParseOptions{false});
    json o = {{"port", log.out_port < ports.size() ? ports[log.out_port].name : "?"}};
    if (p.eth) o["dstMac"] = format_mac(p.eth->dst), o["srcMac"] = format_mac(p.eth->src);
    if (p.kind == PacketKind::kIpv4) {
      o["src"] = ip(p.ip->src);
      o["dst"] = ip(p.ip->dst);
      o["ttl"] = p.ip->ttl;
      o["sport"] = ntoh16(p.key.src_port);
      o["dport"] = ntoh16(p.key.dst_port);
    }
    out["output"] = o;
  }
  return out.dump(2);
}

}  // namespace l4lb
