#include "src/api/capture.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>

#include "src/api/capture_request.h"
#include "src/api/render.h"
#include "src/log.h"

#undef L4LB_LOG_MODULE
#define L4LB_LOG_MODULE ::l4lb::LogModule::kApi

namespace l4lb::api {

namespace {

using nlohmann::json;

void reply(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump() + "\n", "application/json");
}

std::vector<CapturePortRef> running_ports(const Control& control) {
  return control.with_snapshot([](const Snapshot& snap) {
    std::vector<CapturePortRef> out;
    for (const ServicePort& sp : snap.services.ports()) {
      out.push_back({sp.service, sp.name, sp.counter_id});
    }
    return out;
  });
}

json summary_json(const CaptureSummary& s) {
  json by_reason = json::object();
  for (size_t r = 0; r <= kDropReasonCount; ++r) {
    if (s.by_reason[r] == 0) continue;
    const std::string label = r == kDropReasonCount
                                  ? "received"
                                  : std::string(drop_reason_label(static_cast<DropReason>(r)));
    by_reason[label] = s.by_reason[r];
  }
  return {{"packets", s.packets},
          {"missed", s.dropped},
          {"seconds", s.seconds},
          {"stopped", s.stopped},
          {"byReason", by_reason}};
}

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

}  // namespace

void add_capture_routes(httplib::Server& server, CaptureRunner& runner, const Control& control) {
  server.Post("/v1/capture", [&runner, &control](const httplib::Request& req,
                                                 httplib::Response& res) {
    CaptureParse parsed = parse_capture_request(req.body, running_ports(control));
    if (!parsed.request) {
      reply(res, 400, error_json(parsed.error, parsed.field));
      return;
    }
    const CaptureRequest& r = *parsed.request;
    if (runner.active()) {
      reply(res, 409, error_json("a capture is already running (one at a time)"));
      return;
    }
    std::unique_ptr<std::FILE, FileCloser> file;
    if (!r.file.empty()) {
      file.reset(std::fopen(r.file.c_str(), "wb"));
      if (!file) {
        reply(res, 400, error_json("cannot write " + r.file + ": " + std::strerror(errno), "file"));
        return;
      }
    }
    PcapWriter out(r.filter.snaplen, file.get());
    L4LB_INFO("capture: started (%s)", req.body.c_str());
    std::optional<CaptureSummary> s = runner.run(r.filter, r.limits, out);
    if (!s) {
      reply(res, 409, error_json("a capture is already running (one at a time)"));
      return;
    }
    L4LB_INFO("capture: %lu packets, %lu missed, %.1f s%s", static_cast<unsigned long>(s->packets),
              static_cast<unsigned long>(s->dropped), s->seconds,
              r.file.empty() ? "" : (" -> " + r.file).c_str());
    if (!r.file.empty()) {
      if (std::fflush(file.get()) != 0 || out.failed()) {
        reply(res, 500,
              error_json("writing " + r.file + " failed: " + std::strerror(errno), "file"));
        return;
      }
      json body = summary_json(*s);
      body["file"] = r.file;
      reply(res, 200, body);
      return;
    }
    res.status = 200;
    res.set_header("X-Capture-Packets", std::to_string(s->packets));
    res.set_header("X-Capture-Missed", std::to_string(s->dropped));
    res.set_content(out.bytes(), "application/vnd.tcpdump.pcap");
  });
  server.Get("/v1/capture", [&runner](const httplib::Request&, httplib::Response& res) {
    reply(res, 200, {{"active", runner.active()}});
  });
  server.Delete("/v1/capture", [&runner](const httplib::Request&, httplib::Response& res) {
    if (!runner.stop()) {
      reply(res, 404, error_json("no capture is running"));
      return;
    }
    reply(res, 200, {{"stopping", true}});
  });
}

}  // namespace l4lb::api
