#include "src/snapshot.h"

#include <rte_malloc.h>
#include <rte_rcu_qsbr.h>

#include <stdexcept>

namespace l4lb {

std::unique_ptr<Snapshot> build_snapshot(const config::Config& cfg,
                                         const std::vector<PortInfo>& ports, uint64_t generation) {
  std::vector<ServiceSpec> specs;
  for (const auto& s : cfg.services) {
    ServiceSpec spec;
    spec.name = s.name;
    spec.vip = s.vip;
    spec.source_ranges = s.source_ranges;
    spec.client_ip_affinity = s.session_affinity == config::SessionAffinity::kClientIp;
    for (const auto& p : s.ports) {
      spec.ports.push_back(
          ServicePortSpec{p.name, static_cast<uint8_t>(p.protocol), p.port, p.target_port});
    }
    for (const auto& b : s.backends) spec.backends.push_back(BackendSpec{b.ip, b.weight});
    specs.push_back(std::move(spec));
  }
  auto snap = std::make_unique<Snapshot>();
  snap->generation = generation;
  snap->services = ServiceTable(specs, cfg.dataplane.maglev_table_size);
  snap->routes = std::make_unique<RouteTable>(cfg.dataplane.routes, ports, generation);
  for (const auto& n : cfg.dataplane.neighbors) {
    snap->neighbors.push_back(StaticNeighbor{hton32(n.ip), n.mac});
  }
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
