// The control thread's state: the config file, the running config, snapshot
// generations, and reloads (SIGHUP now; the API later). Control thread only.
#pragma once

#include <cstdint>
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
  uint64_t reloads_ok() const { return reloads_ok_; }
  uint64_t reloads_failed() const { return reloads_failed_; }

 private:
  void warn_restart_only(const config::Config& next) const;

  std::string config_path_;
  config::Config running_;
  const std::vector<PortInfo>& ports_;
  SnapshotPublisher& publisher_;
  uint64_t generation_ = 0;
  uint64_t reloads_ok_ = 0;
  uint64_t reloads_failed_ = 0;
};

}  // namespace l4lb
