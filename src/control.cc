#include "src/control.h"

#include <algorithm>
#include <chrono>
#include <exception>
#include <stdexcept>

#include "src/change_log.h"
#include "src/log.h"

#undef L4LB_LOG_MODULE
#define L4LB_LOG_MODULE ::l4lb::LogModule::kConfig

namespace l4lb {

namespace {

double wall_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

Control::Control(std::string config_path, config::Config running,
                 const std::vector<PortInfo>& ports, SnapshotPublisher& publisher)
    : config_path_(std::move(config_path)),
      running_(std::move(running)),
      sources_(running_.services.size(), ServiceSource::kFile),
      ports_(ports),
      publisher_(publisher),
      started_at_(wall_seconds()) {}

void Control::start() {
  std::lock_guard lock(mutex_);
  std::string error;
  health::Options options;
  options.on_transition = [this](const health::TargetKey& key, bool healthy) {
    L4LB_LOG(LogModule::kHealth, LogLevel::kInfo, "health: %s is now %s", key.to_string().c_str(),
             healthy ? "healthy" : "unhealthy");
    health_changed_.store(true);
  };
  checker_ = health::HealthChecker::start(std::move(options), &error);
  if (!checker_) throw std::runtime_error("health checker: " + error);
  checker_->set_targets(health_targets(running_));
  publisher_.publish(build_snapshot(running_, ports_, ++generation_, slots_, health_view(), publisher_.current()));
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
    L4LB_WARN(
        "reload: dataplane ports, workers, eal and flowTable changes take effect on restart;"
        " services, routes and neighbors are applied now");
  }
}

bool Control::reload() { return reload_file().applied(); }

std::optional<health::Target> Control::health_target(const config::ServiceConfig& s,
                                                     uint32_t ip) {
  health::Target t;
  t.ip = ip;
  if (!s.ports.empty()) t.port = s.ports[0].node_port ? s.ports[0].node_port : s.ports[0].target_port;
  if (s.external_traffic_local) {
    // kube-proxy answers http://node:healthCheckNodePort/healthz: 200 with local endpoints.
    t.check.type = config::HealthCheckType::kHttp;
    t.check.port = s.health_check_node_port;
    t.check.path = "/healthz";
    if (s.health_check) {
      t.check.interval_ms = s.health_check->interval_ms;
      t.check.timeout_ms = s.health_check->timeout_ms;
      t.check.healthy_threshold = s.health_check->healthy_threshold;
      t.check.unhealthy_threshold = s.health_check->unhealthy_threshold;
    }
    return t;
  }
  if (!s.health_check || s.health_check->type == config::HealthCheckType::kNone) return {};
  t.check = *s.health_check;
  t.expect_codes = s.health_check->expect_codes;
  t.host_header = s.health_check->host;
  return t;
}

std::vector<health::Target> Control::health_targets(const config::Config& cfg) {
  std::vector<health::Target> targets;
  for (const auto& s : cfg.services) {
    for (const auto& b : s.backends) {
      if (auto t = health_target(s, b.ip)) targets.push_back(std::move(*t));
    }
  }
  return targets;
}

HealthView Control::health_view() const {
  if (!checker_) return {};
  return [this](const config::ServiceConfig& s, uint32_t ip) {
    auto t = health_target(s, ip);
    return !t || checker_->healthy(t->key()).value_or(true);
  };
}

bool Control::apply_health_changes() {
  if (!health_changed_.exchange(false)) return false;
  std::lock_guard lock(mutex_);
  try {
    publisher_.publish(build_snapshot(running_, ports_, generation_ + 1, slots_, health_view(), publisher_.current()));
  } catch (const std::exception& e) {
    L4LB_LOG(LogModule::kHealth, LogLevel::kError, "health: cannot publish the change: %s", e.what());
    health_changed_.store(true);  // try again on the next round
    return false;
  }
  ++generation_;
  L4LB_LOG(LogModule::kHealth, LogLevel::kInfo, "health: generation %lu",
           static_cast<unsigned long>(generation_));
  return true;
}

std::vector<health::TargetStatus> Control::health_status() const {
  return checker_ ? checker_->status() : std::vector<health::TargetStatus>{};
}

void Control::stop_health() {
  if (checker_) checker_->stop();
}

ChangeResult Control::reload_file() {
  config::LoadResult result = config::load_config_file(config_path_);
  std::lock_guard lock(mutex_);
  if (!result.ok()) {
    ++reloads_failed_;
    last_reload_errors_.clear();
    ChangeResult out{ChangeStatus::kFailed, {}, generation_};
    for (const auto& e : result.errors) {
      L4LB_ERROR("reload rejected: %s", e.to_string().c_str());
      last_reload_errors_.push_back(e.to_string());
      out.errors.push_back({"", e.to_string(), e.line});
    }
    L4LB_ERROR("reload rejected: keeping generation %lu", static_cast<unsigned long>(generation_));
    return out;
  }
  config::Config next = std::move(*result.config);
  warn_restart_only(next);
  // Ports, workers and the flow table are fixed at start-up: keep the running ones.
  next.dataplane.ports = running_.dataplane.ports;
  next.dataplane.workers = running_.dataplane.workers;
  next.dataplane.eal = running_.dataplane.eal;
  next.dataplane.flow_table = running_.dataplane.flow_table;
  try {
    publisher_.publish(build_snapshot(next, ports_, generation_ + 1, slots_, health_view(), publisher_.current()));
  } catch (const std::exception& e) {
    ++reloads_failed_;
    L4LB_ERROR("reload rejected: %s: %s", config_path_.c_str(), e.what());
    last_reload_errors_ = {config_path_ + ": " + e.what()};
    return {ChangeStatus::kFailed, {{"", last_reload_errors_.front(), 0}}, generation_};
  }
  ++generation_;
  ++reloads_ok_;
  last_reload_time_ = wall_seconds();
  last_reload_errors_.clear();
  const std::string changes = describe_changes(running_, next);
  running_ = std::move(next);
  checker_->set_targets(health_targets(running_));
  // The file replaces every API edit (documented in the README).
  sources_.assign(running_.services.size(), ServiceSource::kFile);
  L4LB_INFO("reloaded %s: generation %lu: %s (Maglev tables: %zu rebuilt, %zu unchanged)",
            config_path_.c_str(), static_cast<unsigned long>(generation_), changes.c_str(),
            publisher_.current()->services.maglev_built(),
            publisher_.current()->services.maglev_reused());
  return {ChangeStatus::kOk, {}, generation_};
}

ChangeResult Control::apply_locked(config::Config next, std::vector<ServiceSource> sources,
                                   ChangeStatus ok_status, const std::string& what) {
  try {
    publisher_.publish(build_snapshot(next, ports_, generation_ + 1, slots_, health_view(), publisher_.current()));
  } catch (const std::exception& e) {
    L4LB_ERROR("api: %s rejected: %s", what.c_str(), e.what());
    return {ChangeStatus::kFailed, {{"", e.what(), 0}}, generation_};
  }
  ++generation_;
  ++api_changes_;
  const std::string changes = describe_changes(running_, next);
  running_ = std::move(next);
  sources_ = std::move(sources);
  checker_->set_targets(health_targets(running_));
  L4LB_INFO("api: %s: generation %lu: %s", what.c_str(), static_cast<unsigned long>(generation_),
            changes.c_str());
  return {ok_status, {}, generation_};
}

ChangeResult Control::put_service(const std::string& name, std::string_view document) {
  std::lock_guard lock(mutex_);
  ServiceEdit edit = plan_put_service(running_, sources_, name, document);
  if (!edit.result.applied()) {
    edit.result.generation = generation_;
    return std::move(edit.result);
  }
  return apply_locked(std::move(edit.next), std::move(edit.sources), edit.result.status,
                      "PUT Service " + name);
}

ChangeResult Control::delete_service(const std::string& name) {
  std::lock_guard lock(mutex_);
  ServiceEdit edit = plan_delete_service(running_, sources_, name);
  if (!edit.result.applied()) {
    edit.result.generation = generation_;
    return std::move(edit.result);
  }
  return apply_locked(std::move(edit.next), std::move(edit.sources), edit.result.status,
                      "DELETE Service " + name);
}

ControlView Control::view() const {
  std::lock_guard lock(mutex_);
  ControlView v;
  v.running = running_;
  v.sources = sources_;
  v.generation = generation_;
  v.started_at = started_at_;
  v.last_reload_time = last_reload_time_;
  v.reloads_ok = reloads_ok_;
  v.reloads_failed = reloads_failed_;
  v.api_changes = api_changes_;
  v.last_reload_errors = last_reload_errors_;
  return v;
}

}  // namespace l4lb
