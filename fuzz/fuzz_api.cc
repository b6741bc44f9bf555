// libFuzzer target: arbitrary requests to the REST API's handlers (src/api/handlers.h) over
// a fake backend that runs Control's real edit checks (src/service_edit.h) on an in-memory
// config. Input: up to four requests separated by "\n%%\n", each
//   METHOD TARGET\n AUTHORIZATION\n BODY
// with TARGET split into path and query and %-decoded as httplib does. Invariants: no crash
// or exception; every status is 2xx or 4xx (the fake never fails internally); every body is
// JSON, and an error body an object with a non-empty "error"; 401 exactly when the token is
// wrong; a refused request changes nothing; the running Services always validate; a Service
// that a PUT accepted reads back with GET and that output, PUT again, is accepted.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "src/api/fake_backend.h"
#include "src/api/handlers.h"

using namespace l4lb;
using namespace l4lb::api;
using nlohmann::json;

namespace {

constexpr std::string_view kToken = "fuzz";

[[noreturn]] void fail(const char* what, const Request& req, const Response& res) {
  std::fprintf(stderr, "fuzz_api invariant broken: %s\nrequest: %s %s\nresponse: %d %s\n", what,
               req.method.c_str(), req.path.c_str(), res.status, res.body.c_str());
  std::abort();
}
#define CHECK(cond)                        \
  do {                                     \
    if (!(cond)) fail(#cond, req, res);    \
  } while (0)

int hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string decode(std::string_view s, bool plus_is_space) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
      out += static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2]));
      i += 2;
    } else {
      out += plus_is_space && s[i] == '+' ? ' ' : s[i];
    }
  }
  return out;
}

std::string_view take_line(std::string_view& s) {
  size_t nl = s.find('\n');
  std::string_view line = s.substr(0, nl);
  s.remove_prefix(nl == std::string_view::npos ? s.size() : nl + 1);
  return line;
}

Request parse(std::string_view text) {
  Request req;
  std::string_view first = take_line(text);
  size_t sp = first.find(' ');
  req.method = std::string(first.substr(0, sp));
  std::string_view target = sp == std::string_view::npos ? "" : first.substr(sp + 1);
  size_t q = target.find('?');
  req.path = decode(target.substr(0, q), false);
  if (q != std::string_view::npos) {
    std::string_view query = target.substr(q + 1);
    while (!query.empty()) {
      size_t amp = query.find('&');
      std::string_view kv = query.substr(0, amp);
      query.remove_prefix(amp == std::string_view::npos ? query.size() : amp + 1);
      size_t eq = kv.find('=');
      req.params.emplace(decode(kv.substr(0, eq), true),
                         eq == std::string_view::npos ? "" : decode(kv.substr(eq + 1), true));
    }
  }
  req.authorization = std::string(take_line(text));
  req.body = std::string(text);
  return req;
}

void check_reply(const Request& req, const Response& res) {
  CHECK((res.status >= 200 && res.status <= 299) || (res.status >= 400 && res.status <= 499));
  CHECK(!res.body.empty() && res.body.back() == '\n');
  CHECK(json::accept(res.body));
  json body = json::parse(res.body);
  if (res.status >= 400) {
    CHECK(body.is_object() && body.contains("error") && body["error"].is_string());
    CHECK(!body["error"].get<std::string>().empty());
  }
  CHECK(res.ask_for_token == (res.status == 401));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const config::Config initial = fake_running_config();
  FakeBackend backend(initial);
  Handlers handlers(backend, std::string(kToken));
  std::string_view input(reinterpret_cast<const char*>(data), size);
  for (int n = 0; n < 4 && !input.empty(); ++n) {
    size_t sep = input.find("\n%%\n");
    const Request req = parse(input.substr(0, sep));
    input.remove_prefix(sep == std::string_view::npos ? input.size() : sep + 4);

    const ControlView before = backend.view();
    const Response res = handlers.handle(req);
    check_reply(req, res);
    CHECK((res.status == 401) == !bearer_token_ok(req.authorization, kToken));
    const ControlView after = backend.view();
    if (res.status >= 400) {
      CHECK(after.generation == before.generation);
      CHECK(after.running.services.size() == before.running.services.size());
    }
    CHECK(config::validate_services(after.running).empty());
    CHECK(after.sources.size() == after.running.services.size());

    if (req.method == "PUT" && (res.status == 200 || res.status == 201)) {
      Request get{"GET", req.path, {}, "", req.authorization};
      const Response got = handlers.handle(get);
      check_reply(get, got);
      CHECK(got.status == 200);
      json svc = json::parse(got.body);
      CHECK(svc["source"] == "api");
      svc.erase("source");
      Request again{"PUT", req.path, {}, svc.dump(), req.authorization};
      const Response res2 = handlers.handle(again);
      check_reply(again, res2);
      if (res2.status != 200) fail("GET output of an accepted Service is refused", again, res2);
      if (json::parse(handlers.handle(get).body) != json::parse(got.body)) {
        fail("the same Service PUT again reads back differently", again, res2);
      }
    }
  }
  return 0;
}
