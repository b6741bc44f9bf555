#include "src/service_edit.h"

#include <algorithm>

namespace l4lb {

namespace {

ServiceEdit refused(ChangeStatus status, std::vector<config::FieldError> errors) {
  ServiceEdit out;
  out.result = {status, std::move(errors), 0};
  return out;
}

// Defence in depth: the request was checked on its own; this checks it among the others.
ServiceEdit checked(ServiceEdit edit) {
  if (auto errors = config::validate_services(edit.next); !errors.empty()) {
    return refused(ChangeStatus::kConflict, std::move(errors));
  }
  return edit;
}

}  // namespace

ServiceEdit plan_put_service(const config::Config& running,
                             const std::vector<ServiceSource>& sources, const std::string& name,
                             std::string_view document) {
  config::ServiceLoadResult loaded = config::load_service_string(document, running.dataplane);
  if (!loaded.ok()) return refused(ChangeStatus::kInvalid, std::move(loaded.errors));
  config::ServiceConfig& svc = *loaded.service;
  if (svc.name != name) {
    return refused(
        ChangeStatus::kInvalid,
        {{"name",
          "name: \"" + svc.name + "\" does not match the Service in the URL (\"" + name + "\")",
          svc.line}});
  }
  if (auto conflict = config::find_exposure_conflict(running.services, svc)) {
    return refused(ChangeStatus::kConflict, {*conflict});
  }
  ServiceEdit out;
  out.next = running;
  out.sources = sources;
  auto it = std::find_if(out.next.services.begin(), out.next.services.end(),
                         [&](const config::ServiceConfig& s) { return s.name == name; });
  if (it == out.next.services.end()) {
    out.next.services.push_back(std::move(svc));
    out.sources.push_back(ServiceSource::kApi);
    out.result.status = ChangeStatus::kCreated;
  } else {
    *it = std::move(svc);
    out.sources[static_cast<size_t>(it - out.next.services.begin())] = ServiceSource::kApi;
  }
  return checked(std::move(out));
}

ServiceEdit plan_delete_service(const config::Config& running,
                                const std::vector<ServiceSource>& sources,
                                const std::string& name) {
  auto it = std::find_if(running.services.begin(), running.services.end(),
                         [&](const config::ServiceConfig& s) { return s.name == name; });
  if (it == running.services.end()) {
    return refused(ChangeStatus::kNotFound, {{"", "no Service named \"" + name + "\"", 0}});
  }
  const auto i = static_cast<std::ptrdiff_t>(it - running.services.begin());
  ServiceEdit out;
  out.next = running;
  out.sources = sources;
  out.next.services.erase(out.next.services.begin() + i);
  out.sources.erase(out.sources.begin() + i);
  return checked(std::move(out));
}

}  // namespace l4lb
