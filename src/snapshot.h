// One immutable, complete view of the configuration the workers act on: Services,
// Maglev tables, ACLs, routes, static neighbours. The control thread builds it and
// publishes it with one pointer store; workers read it under RCU (QSBR).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "lb/service_table.h"
#include "src/config/config.h"
#include "src/counter_slots.h"
#include "src/port.h"
#include "src/route.h"

struct rte_rcu_qsbr;

namespace l4lb {

struct StaticNeighbor {
  uint32_t ip_be = 0;
  MacAddr mac{};
};

struct Snapshot {
  uint64_t generation = 0;
  ServiceTable services;
  std::unique_ptr<RouteTable> routes;
  std::vector<StaticNeighbor> neighbors;
};

// Builds a snapshot from a validated config; throws std::runtime_error.
// Whether a Service's backend passes its health check now; null: every backend does.
using HealthView = std::function<bool(const config::ServiceConfig&, uint32_t backend_ip)>;

// Assigns counter slots for new Service ports and backends. Unhealthy backends leave the
// Maglev tables (or stay with weight 0 under unhealthyFlows: keep).
std::unique_ptr<Snapshot> build_snapshot(const config::Config& cfg,
                                         const std::vector<PortInfo>& ports, uint64_t generation,
                                         CounterSlots& slots, const HealthView& healthy = {},
                                         const Snapshot* previous = nullptr);

// Holds the current snapshot pointer and the QSBR variable workers report to.
class SnapshotPublisher {
 public:
  explicit SnapshotPublisher(unsigned max_workers);
  ~SnapshotPublisher();
  rte_rcu_qsbr* qsbr() const { return qsbr_; }
  // Worker-safe: the snapshot stays valid until the worker's next quiescent report.
  const Snapshot* current() const noexcept { return current_.load(std::memory_order_acquire); }
  // Control thread: publishes, waits for every worker to pass a quiescent state, frees the old one.
  void publish(std::unique_ptr<Snapshot> next);

 private:
  rte_rcu_qsbr* qsbr_ = nullptr;
  std::atomic<const Snapshot*> current_{nullptr};
};

}  // namespace l4lb
