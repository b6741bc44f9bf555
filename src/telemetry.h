// DPDK telemetry commands (/l4lb/services, /l4lb/backends, /l4lb/flows, /l4lb/status) on the
// EAL's telemetry socket, for dpdk-telemetry.py and anything speaking its JSON. Answered on
// DPDK's telemetry threads; they read Control under its mutex and the workers' counters
// only, like the metrics exporter. Created and destroyed by the control thread.
#pragma once

#include <memory>
#include <vector>

#include "src/control.h"
#include "src/port.h"
#include "src/snapshot.h"
#include "src/worker.h"

namespace l4lb {

// While alive, the /l4lb/... commands answer from these objects; once destroyed they answer
// null (DPDK cannot unregister a command, so the commands stay and only detach).
class TelemetryCommands {
 public:
  TelemetryCommands(const std::vector<std::unique_ptr<Worker>>& workers,
                    const std::vector<PortInfo>& ports, const Control& control,
                    const SnapshotPublisher& publisher);
  ~TelemetryCommands();
  TelemetryCommands(const TelemetryCommands&) = delete;
  TelemetryCommands& operator=(const TelemetryCommands&) = delete;
};

// Registers the commands (once per process) and attaches them to these objects. Destroy the
// result before the workers, ports, Control or publisher go away.
std::unique_ptr<TelemetryCommands> register_telemetry(
    const std::vector<std::unique_ptr<Worker>>& workers, const std::vector<PortInfo>& ports,
    const Control& control, const SnapshotPublisher& publisher);

}  // namespace l4lb
