// libFuzzer target: arbitrary bytes as Kubernetes manifests (src/config/kubernetes.h, read
// by `l4lbctl apply`). The reader must never throw, crash or hang; every error has the file
// name, a line >= 0 and a message, and is never the catch-all "internal error" (an exception
// the reader did not expect); every warning names the file. Every Service it returns is what
// l4lbctl sends to the API: rendered as JSON (service_json) it must pass the REST API's
// check (load_service_string, against a data plane that reaches every address) and read
// back equal; without errors, the Services together pass validate_services.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "src/api/render.h"
#include "src/config/config.h"
#include "src/config/kubernetes.h"

using namespace l4lb;

namespace {

[[noreturn]] void fail(const char* what, const std::string& detail = "") {
  std::fprintf(stderr, "fuzz_k8s invariant broken: %s\n%s\n", what, detail.c_str());
  std::abort();
}
#define CHECK(cond)           \
  do {                        \
    if (!(cond)) fail(#cond); \
  } while (0)

// One port and a default route: every unicast address is reachable, so the check judges the
// Service itself, not this data plane.
const config::Config& open_dataplane() {
  static const config::Config c = [] {
    auto r = config::load_config_string(R"(
dataplane:
  maglevTableSize: 16777213
  ports: [{name: wan, device: net_null0, address: 192.0.2.1/24}]
  routes: [{prefix: 0.0.0.0/0, via: 192.0.2.254}]
)", "open.yaml");
    if (!r.ok()) fail("open.yaml does not load", r.errors.front().to_string());
    return *r.config;
  }();
  return c;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const config::KubernetesResult r = config::load_kubernetes_string(text, "fuzz.yaml");
  for (const auto& e : r.errors) {
    CHECK(e.file == "fuzz.yaml");
    CHECK(e.line >= 0);
    CHECK(!e.message.empty());
    if (e.message.starts_with("internal error")) fail("the reader threw", e.to_string());
  }
  for (const auto& w : r.warnings) CHECK(w.starts_with("fuzz.yaml:"));
  const config::Config& open = open_dataplane();
  for (const auto& svc : r.services) {
    const nlohmann::json rendered = api::service_json(svc);
    const std::string body = rendered.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    auto back = config::load_service_string(body, open.dataplane);
    if (!back.ok()) fail("a Service the reader returned is refused by the API", back.errors.front().message + "\n" + body);
    if (api::service_json(*back.service) != rendered) fail("a Service does not read back equal", body);
  }
  if (r.ok()) {
    config::Config all = open;
    all.services = r.services;
    auto errors = config::validate_services(all);
    if (!errors.empty()) fail("the Services together do not validate", errors.front().message);
  }
  return 0;
}
