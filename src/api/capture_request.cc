#include "src/api/capture_request.h"

#include <algorithm>
#include <nlohmann/json.hpp>

namespace l4lb::api {

namespace {

using nlohmann::json;

CaptureParse fail(std::string message, std::string field) {
  return {std::nullopt, std::move(message), std::move(field)};
}

std::string reason_list() {
  std::string out;
  for (size_t r = 0; r < kDropReasonCount; ++r) {
    if (!out.empty()) out += ", ";
    out += drop_reason_label(static_cast<DropReason>(r));
  }
  return out;
}

// A JSON integer in [lo, hi], or nothing.
std::optional<uint32_t> bounded(const json& v, uint32_t lo, uint32_t hi) {
  if (!v.is_number_integer()) return std::nullopt;
  const auto n = v.get<int64_t>();
  if (n < lo || n > hi) return std::nullopt;
  return static_cast<uint32_t>(n);
}

}  // namespace

CaptureParse parse_capture_request(std::string_view body,
                                   const std::vector<CapturePortRef>& ports) {
  const json doc = json::parse(body, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) return fail("body must be a JSON object", "");
  static const char* const kKeys[] = {"service", "servicePort", "reason",  "direction", "proto",
                                      "count",   "seconds",     "snaplen", "file"};
  for (const auto& [key, value] : doc.items()) {
    if (std::find(std::begin(kKeys), std::end(kKeys), key) == std::end(kKeys)) {
      return fail("unknown key \"" + key +
                      "\" (service, servicePort, reason, direction, proto, count, seconds, "
                      "snaplen, file)",
                  key);
    }
  }
  CaptureRequest r;
  CaptureFilter& f = r.filter;
  if (!doc.contains("service") && !doc.contains("reason")) {
    return fail("give service, reason or both", "");
  }
  if (doc.contains("service")) {
    if (!doc["service"].is_string()) return fail("service must be a string", "service");
    const auto name = doc["service"].get<std::string>();
    std::optional<std::string> port;
    if (doc.contains("servicePort")) {
      if (!doc["servicePort"].is_string()) {
        return fail("servicePort must be a string", "servicePort");
      }
      port = doc["servicePort"].get<std::string>();
    }
    bool service_found = false;
    for (const auto& p : ports) {
      if (p.service != name) continue;
      service_found = true;
      if (!port || p.port == *port) f.service_ports.set(p.slot);
    }
    if (!service_found) return fail("no Service named \"" + name + "\"", "service");
    if (f.service_ports.none()) {
      return fail("Service \"" + name + "\" has no port named \"" + *port + "\"", "servicePort");
    }
    f.by_service = true;
  } else if (doc.contains("servicePort")) {
    return fail("servicePort needs service", "servicePort");
  }
  if (doc.contains("reason")) {
    const json& v = doc["reason"];
    const std::string text = v.is_string() ? v.get<std::string>() : "";
    if (text == "any") {
      f.reasons = kDropReasonCount == 64 ? ~uint64_t{0} : (uint64_t{1} << kDropReasonCount) - 1;
    }
    for (size_t i = 0; i < kDropReasonCount; ++i) {
      if (drop_reason_label(static_cast<DropReason>(i)) == text) f.reasons = uint64_t{1} << i;
    }
    if (f.reasons == 0) {
      return fail("reason must be \"any\" or one of " + reason_list(), "reason");
    }
  }
  if (doc.contains("direction")) {
    const json& v = doc["direction"];
    const std::string text = v.is_string() ? v.get<std::string>() : "";
    if (text == "to_backend") {
      f.direction = CaptureDirection::kToBackend;
    } else if (text == "from_backend") {
      f.direction = CaptureDirection::kFromBackend;
    } else if (text != "both") {
      return fail("direction must be to_backend, from_backend or both", "direction");
    }
  }
  if (doc.contains("proto")) {
    const json& v = doc["proto"];
    const std::string text = v.is_string() ? v.get<std::string>() : "";
    if (text != "tcp" && text != "udp") return fail("proto must be tcp or udp", "proto");
    f.proto = text == "tcp" ? 6 : 17;
  }
  if (doc.contains("count")) {
    auto n = bounded(doc["count"], 1, kMaxCaptureCount);
    if (!n) return fail("count must be an integer 1-" + std::to_string(kMaxCaptureCount), "count");
    r.limits.count = *n;
  }
  if (doc.contains("seconds")) {
    auto n = bounded(doc["seconds"], 1, kMaxCaptureSeconds);
    if (!n) {
      return fail("seconds must be an integer 1-" + std::to_string(kMaxCaptureSeconds), "seconds");
    }
    r.limits.duration = std::chrono::seconds(*n);
  }
  if (doc.contains("snaplen")) {
    auto n = bounded(doc["snaplen"], kMinCaptureSnaplen, kCaptureSnapMax);
    if (!n) {
      return fail("snaplen must be an integer " + std::to_string(kMinCaptureSnaplen) + "-" +
                      std::to_string(kCaptureSnapMax),
                  "snaplen");
    }
    f.snaplen = static_cast<uint16_t>(*n);
  }
  if (doc.contains("file")) {
    const json& v = doc["file"];
    if (!v.is_string() || v.get<std::string>().empty() || v.get<std::string>()[0] != '/') {
      return fail("file must be an absolute path on the server", "file");
    }
    r.file = v.get<std::string>();
  }
  return {std::move(r), "", ""};
}

}  // namespace l4lb::api
