#include "src/snapshot.h"

#include <rte_malloc.h>
#include <rte_rcu_qsbr.h>

#include <stdexcept>

namespace l4lb {

std::unique_ptr<Snapshot> build_snapshot(const config::Config& cfg,
                                         const std::vector<PortInfo>& ports, uint64_t generation,
                                         CounterSlots& slots, const HealthView& healthy,
                                         const Snapshot* previous) {
  std::vector<ServiceSpec> specs;
  std::vector<uint32_t> live_ports, live_backends, down_backends;
  for (const auto& s : cfg.services) {
    ServiceSpec spec;
    spec.name = s.name;
    spec.vip = s.vip;
    spec.source_ranges = s.source_ranges;
    spec.client_ip_affinity = s.session_affinity == config::SessionAffinity::kClientIp;
    spec.reject_when_empty = s.all_unhealthy == config::AllUnhealthy::kReject;
    std::vector<uint32_t> port_slots;
    for (const auto& p : s.ports) {
      port_slots.push_back(slots.service_port(s.name, p.name));
      // Nodes as backends: their nodePort, not the pods' targetPort.
      const uint16_t target = p.node_port != 0 ? p.node_port : p.target_port;
      spec.ports.push_back(ServicePortSpec{p.name, static_cast<uint8_t>(p.protocol), p.port,
                                           target, port_slots.back()});
    }
    live_ports.insert(live_ports.end(), port_slots.begin(), port_slots.end());
    std::vector<bool> up;
    bool any_up = false;
    for (const auto& b : s.backends) {
      up.push_back(!healthy || healthy(s, b.ip));
      any_up = any_up || up.back();
    }
    // No backend passes: spread over all of them (as cloud passthrough LBs do), or keep
    // none so new flows are dropped or rejected.
    const bool spread = !any_up && s.all_unhealthy == config::AllUnhealthy::kSpread;
    for (size_t i = 0; i < s.backends.size(); ++i) {
      const auto& b = s.backends[i];
      BackendSpec backend{b.ip, b.weight, {}};
      for (uint32_t port_slot : port_slots) {
        backend.counter_ids.push_back(slots.backend(port_slot, b.ip));
        live_backends.push_back(backend.counter_ids.back());
        if (!up[i]) down_backends.push_back(backend.counter_ids.back());
      }
      if (!up[i] && !spread) {
        // Unhealthy: out of the set, so its flows re-pick; or, with unhealthyFlows: keep,
        // listed with weight 0 so its flows stay and new ones go elsewhere.
        if (s.unhealthy_flows_repick) continue;
        backend.weight = 0;
      }
      spec.backends.push_back(std::move(backend));
    }
    specs.push_back(std::move(spec));
  }
  auto snap = std::make_unique<Snapshot>();
  snap->generation = generation;
  snap->services = ServiceTable(specs, cfg.dataplane.maglev_table_size,
                                previous != nullptr ? &previous->services : nullptr);
  snap->routes = std::make_unique<RouteTable>(cfg.dataplane.routes, ports, generation);
  for (const auto& n : cfg.dataplane.neighbors) {
    snap->neighbors.push_back(StaticNeighbor{hton32(n.ip), n.mac});
  }
  // Nothing can fail past here: the exporter now shows only the slots this snapshot uses.
  slots.set_live(live_ports, live_backends, down_backends);
  return snap;
}

SnapshotPublisher::SnapshotPublisher(unsigned max_workers) {
  size_t size = rte_rcu_qsbr_get_memsize(max_workers);
  qsbr_ = static_cast<rte_rcu_qsbr*>(rte_zmalloc("l4lb_qsbr", size, RTE_CACHE_LINE_SIZE));
  if (qsbr_ == nullptr || rte_rcu_qsbr_init(qsbr_, max_workers) != 0) {
    throw std::runtime_error("cannot set up RCU (QSBR) state");
  }
}

SnapshotPublisher::~SnapshotPublisher() {
  delete current_.exchange(nullptr);
  rte_free(qsbr_);
}

void SnapshotPublisher::publish(std::unique_ptr<Snapshot> next) {
  const Snapshot* old = current_.exchange(next.release(), std::memory_order_acq_rel);
  if (old == nullptr) return;
  // Every registered worker must report quiescence once after the store, so none still
  // holds the old pointer (DPDK lib/rcu, QSBR).
  rte_rcu_qsbr_synchronize(qsbr_, RTE_QSBR_THRID_INVALID);
  delete old;
}

}  // namespace l4lb
