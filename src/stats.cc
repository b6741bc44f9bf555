#include "src/stats.h"

#include <rte_cycles.h>

#include <nlohmann/json.hpp>

namespace l4lb {

WorkerCounters sum_counters(const std::vector<const WorkerCounters*>& workers) {
  WorkerCounters t;
  for (const WorkerCounters* w : workers) {
#define L4LB_X(name, help) t.name += w->name;
    L4LB_WORKER_COUNTERS(L4LB_X)
#undef L4LB_X
    for (size_t i = 0; i < kDropReasonCount; ++i) t.drops[i] += w->drops[i];
#define L4LB_X(name, help) t.stages.name += w->stages.name;
    L4LB_STAGES(L4LB_X)
#undef L4LB_X
    for (size_t p = 0; p < kMaxPorts; ++p) {
      t.ports[p].rx_packets += w->ports[p].rx_packets;
      t.ports[p].rx_bytes += w->ports[p].rx_bytes;
      t.ports[p].tx_packets += w->ports[p].tx_packets;
      t.ports[p].tx_bytes += w->ports[p].tx_bytes;
    }
  }
  return t;
}

std::string counters_json(const WorkerCounters& t, const std::vector<std::string>& port_names) {
  nlohmann::json j;
#define L4LB_X(name, help) j["counters"][#name] = t.name;
  L4LB_WORKER_COUNTERS(L4LB_X)
#undef L4LB_X
  uint64_t total_drops = 0;
  for (size_t i = 0; i < kDropReasonCount; ++i) {
    j["drops"][std::string(drop_reason_label(static_cast<DropReason>(i)))] = t.drops[i];
    total_drops += t.drops[i];
  }
  j["drops_total"] = total_drops;
  j["tsc_hz"] = rte_get_tsc_hz();
  if (kStageCycles) {
#define L4LB_X(name, help) j["stage_cycles"][#name] = t.stages.name;
    L4LB_STAGES(L4LB_X)
#undef L4LB_X
  }
  for (size_t p = 0; p < port_names.size() && p < kMaxPorts; ++p) {
    j["ports"][port_names[p]] = {{"rx_packets", t.ports[p].rx_packets},
                                 {"rx_bytes", t.ports[p].rx_bytes},
                                 {"tx_packets", t.ports[p].tx_packets},
                                 {"tx_bytes", t.ports[p].tx_bytes}};
  }
  return j.dump(2);
}

}  // namespace l4lb
