#include "src/control.h"

#include <chrono>
#include <exception>

#include "src/log.h"

namespace l4lb {

namespace {

double wall_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

Control::Control(std::string config_path, config::Config running,
                 const std::vector<PortInfo>& ports, SnapshotPublisher& publisher)
    : config_path_(std::move(config_path)),
      running_(std::move(running)),
      ports_(ports),
      publisher_(publisher) {}

void Control::start() {
  std::lock_guard lock(mutex_);
  publisher_.publish(build_snapshot(running_, ports_, ++generation_, slots_));
  last_reload_time_ = wall_seconds();
  size_t ports = 0;
  for (const auto& s : running_.services) ports += s.ports.size();
  L4LB_INFO("config %s: %zu services, %zu service ports, generation %lu", config_path_.c_str(),
            running_.services.size(), ports, static_cast<unsigned long>(generation_));
}

void Control::warn_restart_only(const config::Config& next) const {
  const auto& a = running_.dataplane;
  const auto& b = next.dataplane;
  bool ports_changed = a.ports.size() != b.ports.size();
  for (size_t i = 0; !ports_changed && i < a.ports.size(); ++i) {
    ports_changed = a.ports[i].name != b.ports[i].name || a.ports[i].device != b.ports[i].device ||
                    !(a.ports[i].address == b.ports[i].address) || a.ports[i].mtu != b.ports[i].mtu;
  }
  if (ports_changed || a.workers != b.workers || a.eal != b.eal ||
      a.flow_table.capacity != b.flow_table.capacity ||
      a.flow_table.tcp_timeout_s != b.flow_table.tcp_timeout_s ||
      a.flow_table.tcp_transitory_timeout_s != b.flow_table.tcp_transitory_timeout_s ||
      a.flow_table.udp_timeout_s != b.flow_table.udp_timeout_s) {
    L4LB_WARN("reload: dataplane ports, workers, eal and flowTable changes take effect on restart;"
              " services, routes and neighbors are applied now");
  }
}

bool Control::reload() {
  config::LoadResult result = config::load_config_file(config_path_);
  std::lock_guard lock(mutex_);
  if (!result.ok()) {
    ++reloads_failed_;
    for (const auto& e : result.errors) L4LB_ERROR("reload rejected: %s", e.to_string().c_str());
    L4LB_ERROR("reload rejected: keeping generation %lu", static_cast<unsigned long>(generation_));
    return false;
  }
  config::Config next = std::move(*result.config);
  warn_restart_only(next);
  // Ports, workers and the flow table are fixed at start-up: keep the running ones.
  next.dataplane.ports = running_.dataplane.ports;
  next.dataplane.workers = running_.dataplane.workers;
  next.dataplane.eal = running_.dataplane.eal;
  next.dataplane.flow_table = running_.dataplane.flow_table;
  try {
    publisher_.publish(build_snapshot(next, ports_, generation_ + 1, slots_));
  } catch (const std::exception& e) {
    ++reloads_failed_;
    L4LB_ERROR("reload rejected: %s: %s", config_path_.c_str(), e.what());
    return false;
  }
  ++generation_;
  ++reloads_ok_;
  last_reload_time_ = wall_seconds();
  running_ = std::move(next);
  L4LB_INFO("reloaded %s: generation %lu", config_path_.c_str(),
            static_cast<unsigned long>(generation_));
  return true;
}

}  // namespace l4lb
