// What the REST API sees of the control plane and how it changes it: the result types of
// Control's edits and the checks of a Service edit (PUT, DELETE) up to, not including,
// building a snapshot. Plain C++ over the config model (no DPDK), so the API's handlers
// can be tested and fuzzed (fuzz/fuzz_api.cc) with the same checks l4lbd runs.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "src/config/config.h"

namespace l4lb {

// Where a running Service came from: the file, or a REST API edit made since the file was
// last (re)loaded. A reload (SIGHUP, POST /v1/reload) replaces every API edit with the file.
enum class ServiceSource : uint8_t { kFile, kApi };

enum class ChangeStatus : uint8_t {
  kOk,        // applied (or the reload ran): a new generation is published
  kCreated,   // applied; the Service did not exist before
  kInvalid,   // the request itself is wrong (400)
  kConflict,  // it clashes with another running Service (409)
  kNotFound,  // no such Service (404)
  kFailed,    // valid, but the snapshot could not be built, or the file is bad (reload)
};

struct ChangeResult {
  ChangeStatus status = ChangeStatus::kOk;
  std::vector<config::FieldError> errors;  // every reason when not applied
  uint64_t generation = 0;                 // the running generation afterwards
  bool applied() const { return status == ChangeStatus::kOk || status == ChangeStatus::kCreated; }
};

// A consistent copy of what the API shows, taken under the mutex.
struct ControlView {
  config::Config running;
  std::vector<ServiceSource> sources;  // one per running.services entry
  uint64_t generation = 0;
  double started_at = 0;  // wall-clock seconds
  double last_reload_time = 0;
  uint64_t reloads_ok = 0;
  uint64_t reloads_failed = 0;
  uint64_t api_changes = 0;
  std::vector<std::string> last_reload_errors;  // of the last failed reload, `file:line: ...`
};

// The running Services after an edit, or why it is refused (result.status kInvalid,
// kConflict, kNotFound; result.generation is left 0 for the caller to fill in).
struct ServiceEdit {
  ChangeResult result;  // kOk or kCreated: `next` and `sources` are the new running state
  config::Config next;
  std::vector<ServiceSource> sources;
};

// PUT /v1/services/<name>: `document` (one Service as YAML or JSON) parsed against the
// running data plane with the file loader's checks; its name must be `name`; no other
// Service may expose its ports. Never throws.
ServiceEdit plan_put_service(const config::Config& running,
                             const std::vector<ServiceSource>& sources, const std::string& name,
                             std::string_view document);
// DELETE /v1/services/<name>.
ServiceEdit plan_delete_service(const config::Config& running,
                                const std::vector<ServiceSource>& sources,
                                const std::string& name);

}  // namespace l4lb
