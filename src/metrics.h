// Prometheus exposition at control.metrics.listen (/metrics), served by prometheus-cpp's
// Exposer. A custom Collectable sums the workers' single-writer counters at scrape time;
// nothing on the hot path knows about Prometheus. Control thread owns it.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "src/config/config.h"
#include "src/control.h"
#include "src/port.h"
#include "src/worker.h"

namespace prometheus {
class Exposer;
}

namespace l4lb {

class MetricsCollector;

class MetricsExporter {
 public:
  // Throws std::runtime_error when the address cannot be bound.
  MetricsExporter(const config::ListenConfig& listen,
                  const std::vector<std::unique_ptr<Worker>>& workers,
                  const std::vector<PortInfo>& ports, const Control& control);
  ~MetricsExporter();
  int bound_port() const;

 private:
  std::shared_ptr<MetricsCollector> collector_;
  std::unique_ptr<prometheus::Exposer> exposer_;
};

}  // namespace l4lb
