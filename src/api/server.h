// The REST API (JSON over HTTP, cpp-httplib) at control.api.listen. Its threads read the
// running config through Control::view() and change it only through Control (which
// publishes a snapshot under its mutex); they never touch worker state except the
// single-writer counters the metrics exporter also reads. Owned by the main thread.
#pragma once

#include <memory>
#include <vector>

#include "src/config/config.h"
#include "src/control.h"
#include "src/port.h"

namespace l4lb {

class Worker;
class CaptureRunner;

namespace api {

class ServerImpl;

class ApiServer {
 public:
  // Binds and starts serving (with capture: also /v1/capture); throws std::runtime_error when the address cannot be bound
  // or the token file cannot be read.
  ApiServer(const config::ControlConfig& cfg, Control& control,
            const std::vector<std::unique_ptr<Worker>>& workers,
            const std::vector<PortInfo>& ports, CaptureRunner* capture = nullptr);
  // Stops accepting, lets requests in flight finish, joins the server thread.
  ~ApiServer();
  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;
  int bound_port() const;

 private:
  std::unique_ptr<ServerImpl> impl_;
};

}  // namespace api
}  // namespace l4lb
