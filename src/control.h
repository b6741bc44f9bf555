// The control thread's state: the config file, the running config, snapshot
// generations, and reloads (SIGHUP now; the API later). Control thread only.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "src/config/config.h"
#include "src/port.h"
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

  std::string config_path_;
  config::Config running_;
  const std::vector<PortInfo>& ports_;
  SnapshotPublisher& publisher_;
  mutable std::mutex mutex_;
  CounterSlots slots_;
  uint64_t generation_ = 0;
  double last_reload_time_ = 0;
  uint64_t reloads_ok_ = 0;
  uint64_t reloads_failed_ = 0;
};

}  // namespace l4lb
