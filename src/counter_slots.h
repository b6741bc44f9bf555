// Stable counter slots for Service ports and backends: a name keeps its slot across
// reloads, so worker counters (plain arrays indexed by slot) never move or reset, and
// the exporter shows only the slots the running snapshot uses. Control thread only.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <vector>

namespace l4lb {

class CounterSlots {
 public:
  static constexpr uint32_t kMaxServicePorts = 16384;
  static constexpr uint32_t kMaxBackends = 131072;

  struct PortSlot {
    std::string service;
    std::string port;
    bool live = false;
  };
  struct BackendSlot {
    uint32_t port_slot = 0;
    uint32_t ip = 0;  // host order
    bool live = false;
    bool up = true;  // passes its health check (or has none)
  };

  // Slot 0 of each kind is the overflow slot, shared once the table is full (logged).
  CounterSlots();
  uint32_t service_port(const std::string& service, const std::string& port);
  uint32_t backend(uint32_t port_slot, uint32_t ip);
  // Marks exactly the given slots as in use by the running snapshot.
  void set_live(const std::vector<uint32_t>& port_slots, const std::vector<uint32_t>& backend_slots,
                const std::vector<uint32_t>& down_backend_slots = {});

  const std::vector<PortSlot>& ports() const { return ports_; }
  const std::vector<BackendSlot>& backends() const { return backends_; }

 private:
  std::map<std::pair<std::string, std::string>, uint32_t> port_ids_;
  std::map<std::pair<uint32_t, uint32_t>, uint32_t> backend_ids_;
  std::vector<PortSlot> ports_;
  std::vector<BackendSlot> backends_;
};

}  // namespace l4lb
