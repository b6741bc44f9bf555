// The control plane's state: the config file, the running config (the file plus REST API
// edits), snapshot generations, and every change (SIGHUP, API). Called from the main
// thread and the API server's threads; each change runs under mutex() while it builds and
// publishes a snapshot. Never called from a worker.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <mutex>
#include <string>
#include <vector>

#include "src/config/config.h"
#include "src/health/checker.h"
#include "src/port.h"
#include "src/service_edit.h"
#include "src/snapshot.h"

namespace l4lb {

class Control {
 public:
  Control(std::string config_path, config::Config running, const std::vector<PortInfo>& ports,
          SnapshotPublisher& publisher);

  // Builds and publishes the first snapshot; throws on failure.
  void start();
  // Re-reads the file. A bad file keeps the running snapshot; every error is logged as
  // `file:line: reason`. Returns whether the new config now runs.
  bool reload();
  // reload() that also returns why the file was rejected (for POST /v1/reload).
  ChangeResult reload_file();

  // REST API edits. put_service parses `document` (one Service as YAML or JSON) against the
  // running data plane with the file loader's checks; its name must be `name`. Both leave
  // the running config untouched unless they succeed.
  ChangeResult put_service(const std::string& name, std::string_view document);
  ChangeResult delete_service(const std::string& name);
  ControlView view() const;
  // Runs f(current snapshot) under the mutex: the snapshot cannot be replaced meanwhile.
  template <class F>
  auto with_snapshot(F&& f) const {
    std::lock_guard lock(mutex_);
    return f(*publisher_.current());
  }

  // Health checks: transitions are noted by the checker thread; the main loop calls
  // apply_health_changes(), which publishes a snapshot without the unhealthy backends.
  bool apply_health_changes();
  std::vector<health::TargetStatus> health_status() const;
  void stop_health();
  // The check a Service's backend gets, if any (externalTrafficPolicy: Local: kube-proxy's
  // healthCheckNodePort /healthz).
  static std::optional<health::Target> health_target(const config::ServiceConfig& s, uint32_t ip);

  uint64_t generation() const { return generation_; }
  const CounterSlots& slots() const { return slots_; }
  // Guards what the metrics and API threads read of this object against reloads.
  std::mutex& mutex() const { return mutex_; }
  // Wall-clock seconds of the last successful (re)load, for the metrics.
  double last_reload_time() const { return last_reload_time_; }
  uint64_t reloads_ok() const { return reloads_ok_; }
  uint64_t reloads_failed() const { return reloads_failed_; }

 private:
  void warn_restart_only(const config::Config& next) const;
  static std::vector<health::Target> health_targets(const config::Config& cfg);
  HealthView health_view() const;
  // Builds and publishes `next` (checked by plan_*_service); on success it becomes the
  // running config. Mutex held.
  ChangeResult apply_locked(config::Config next, std::vector<ServiceSource> sources,
                            ChangeStatus ok_status, const std::string& what);

  std::string config_path_;
  config::Config running_;
  std::vector<ServiceSource> sources_;  // parallel to running_.services
  const std::vector<PortInfo>& ports_;
  SnapshotPublisher& publisher_;
  mutable std::mutex mutex_;
  CounterSlots slots_;
  uint64_t generation_ = 0;
  double last_reload_time_ = 0;
  uint64_t reloads_ok_ = 0;
  uint64_t reloads_failed_ = 0;
  uint64_t api_changes_ = 0;
  double started_at_ = 0;
  std::vector<std::string> last_reload_errors_;
  std::unique_ptr<health::HealthChecker> checker_;
  std::atomic<bool> health_changed_{false};
};

}  // namespace l4lb
