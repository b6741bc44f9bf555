#include "src/counter_slots.h"

#include "src/log.h"

#undef L4LB_LOG_MODULE
#define L4LB_LOG_MODULE ::l4lb::LogModule::kConfig

namespace l4lb {

CounterSlots::CounterSlots() : ports_(1), backends_(1) {}

uint32_t CounterSlots::service_port(const std::string& service, const std::string& port) {
  auto [it, added] = port_ids_.try_emplace({service, port}, static_cast<uint32_t>(ports_.size()));
  if (!added) return it->second;
  if (ports_.size() == kMaxServicePorts) {
    it->second = 0;
    L4LB_WARN("counters: more than %u Service ports ever seen; %s/%s shares the overflow slot",
              kMaxServicePorts - 1, service.c_str(), port.c_str());
    return 0;
  }
  ports_.push_back(PortSlot{service, port, false});
  return it->second;
}

uint32_t CounterSlots::backend(uint32_t port_slot, uint32_t ip) {
  auto [it, added] = backend_ids_.try_emplace({port_slot, ip},
                                              static_cast<uint32_t>(backends_.size()));
  if (!added) return it->second;
  if (backends_.size() == kMaxBackends) {
    it->second = 0;
    L4LB_WARN("counters: more than %u backends ever seen; the rest share the overflow slot",
              kMaxBackends - 1);
    return 0;
  }
  backends_.push_back(BackendSlot{port_slot, ip, false});
  return it->second;
}

void CounterSlots::set_live(const std::vector<uint32_t>& port_slots,
                            const std::vector<uint32_t>& backend_slots,
                            const std::vector<uint32_t>& down_backend_slots) {
  for (auto& p : ports_) p.live = false;
  for (auto& b : backends_) {
    b.live = false;
    b.up = true;
  }
  for (uint32_t s : down_backend_slots) backends_[s].up = false;
  for (uint32_t s : port_slots) ports_[s].live = s != 0;
  for (uint32_t s : backend_slots) backends_[s].live = s != 0;
}

}  // namespace l4lb
