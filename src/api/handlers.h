// The REST API's request -> response logic without HTTP or DPDK: routing by method and
// path, the bearer-token check, query and body validation, and the JSON replies. The server
// (server.cc) feeds it httplib's parsed requests and implements ApiBackend with Control and
// the workers; unit tests and fuzz/fuzz_api.cc use a fake backend.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "src/port.h"
#include "src/service_edit.h"
#include "src/trace.h"

namespace l4lb::api {

struct Request {
  std::string method;  // as sent; HEAD is answered as GET
  std::string path;    // decoded, without the query
  std::multimap<std::string, std::string> params;  // the query, decoded (httplib::Params)
  std::string body;
  std::string authorization;  // the Authorization header; empty when absent
};

struct Response {
  int status = 200;
  std::string body;               // JSON and a newline
  bool ask_for_token = false;     // 401: send `WWW-Authenticate: Bearer`
};

// A reply with `body` serialised; text that is not UTF-8 (a name from the URL, a YAML
// error quoting the body) is replaced by U+FFFD rather than failing the reply.
Response json_reply(int status, const nlohmann::json& body);
// The body of what httplib answers by itself (404 unknown path, 413, 400), for the server's
// error handler: {"error": ...} like every other error.
Response http_error_reply(int status, const std::string& method, const std::string& path);

// What the handlers need of the running l4lbd.
class ApiBackend {
 public:
  virtual ~ApiBackend() = default;
  // Control's view and edits (src/control.h).
  virtual ControlView view() const = 0;
  virtual ChangeResult put_service(const std::string& name, std::string_view document) = 0;
  virtual ChangeResult delete_service(const std::string& name) = 0;
  virtual ChangeResult reload_file() = 0;
  // The data ports in DPDK port order (trace's `port`, status) and the workers' lcores.
  virtual const std::vector<PortInfo>& ports() const = 0;
  virtual std::vector<unsigned> worker_lcores() const = 0;
  // Answers that read worker and health-checker state, for requests already validated:
  // 200, or 503 when a worker did not answer in time.
  virtual Response backends(const ControlView& view) = 0;
  virtual Response trace(const TraceRequest& request) = 0;
  virtual Response flows(uint32_t limit) = 0;
};

class Handlers {
 public:
  // `token` empty: no authentication.
  Handlers(ApiBackend& backend, std::string token);

  // The whole request: check_token(), then route().
  Response handle(const Request& req);
  // 401 unless no token is configured or `authorization` carries it.
  std::optional<Response> check_token(std::string_view authorization) const;
  // The endpoint's answer; 404 for an unknown method and path.
  Response route(const Request& req);

  bool has_token() const { return !token_.empty(); }

 private:
  Response list_services();
  Response get_service(const std::string& name);
  Response put_service(const std::string& name, const std::string& body);
  Response delete_service(const std::string& name);
  Response trace(const Request& req);
  Response flows(const Request& req);
  Response reload();
  Response status();

  ApiBackend& backend_;
  std::string token_;
};

}  // namespace l4lb::api
