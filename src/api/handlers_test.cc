#include "src/api/handlers.h"

#include <gtest/gtest.h>

#include "src/api/fake_backend.h"

namespace l4lb::api {
namespace {

using nlohmann::json;

class HandlersTest : public ::testing::Test {
 protected:
  HandlersTest() : backend_(fake_running_config()), handlers_(backend_, "s3cret") {}

  Response call(std::string method, std::string path, std::string body = "",
                std::multimap<std::string, std::string> params = {},
                std::string auth = "Bearer s3cret") {
    return handlers_.handle({std::move(method), std::move(path), std::move(params),
                             std::move(body), std::move(auth)});
  }
  static json body(const Response& r) { return json::parse(r.body); }

  FakeBackend backend_;
  Handlers handlers_;
};

TEST_F(HandlersTest, TokenIsCheckedBeforeRouting) {
  for (const char* auth : {"", "Bearer s3cre", "Bearer s3cret2", "Basic s3cret", "Bearer"}) {
    Response r = call("GET", "/v1/no-such-path", "", {}, auth);
    EXPECT_EQ(r.status, 401) << auth;
    EXPECT_TRUE(r.ask_for_token);
    EXPECT_TRUE(body(r).contains("error"));
  }
  EXPECT_EQ(call("GET", "/v1/services", "", {}, "bearer s3cret").status, 200);
}

TEST_F(HandlersTest, UnknownMethodOrPathIs404WithTheEndpoint) {
  for (auto [m, p] : std::vector<std::pair<std::string, std::string>>{
           {"POST", "/v1/services"}, {"GET", "/v1/services/"}, {"GET", "/v1/services/a/b"},
           {"PATCH", "/v1/services/web"}, {"GET", "/v1/reload"}, {"GET", "/"}}) {
    Response r = call(m, p);
    EXPECT_EQ(r.status, 404) << m << " " << p;
    EXPECT_EQ(body(r)["error"], "no such endpoint: " + m + " " + p);
  }
}

TEST_F(HandlersTest, PutGetDeleteAService) {
  const std::string svc =
      R"({"name": "new", "vip": "10.0.0.110", "ports": [{"port": 443}],
          "backends": [{"ip": "10.4.1.21"}]})";
  Response put = call("PUT", "/v1/services/new", svc);
  ASSERT_EQ(put.status, 201) << put.body;
  EXPECT_EQ(body(put)["service"]["source"], "api");
  Response get = call("HEAD", "/v1/services/new");
  ASSERT_EQ(get.status, 200);
  // GET output is a PUT body.
  json again = body(get);
  again.erase("source");
  EXPECT_EQ(call("PUT", "/v1/services/new", again.dump()).status, 200);
  EXPECT_EQ(body(call("GET", "/v1/status"))["servicesFromApi"], 1);
  EXPECT_EQ(call("DELETE", "/v1/services/new").status, 200);
  EXPECT_EQ(call("GET", "/v1/services/new").status, 404);
  EXPECT_EQ(call("DELETE", "/v1/services/new").status, 404);
}

TEST_F(HandlersTest, BadServiceBodiesAreRefusedWithTheirField) {
  Response name = call("PUT", "/v1/services/other",
                       R"({"name": "new", "vip": "10.0.0.110", "ports": [{"port": 443}]})");
  EXPECT_EQ(name.status, 400);
  EXPECT_EQ(body(name)["field"], "name");
  Response clash = call("PUT", "/v1/services/new",
                        R"({"name": "new", "vip": "10.0.0.100", "ports": [{"port": 80}]})");
  EXPECT_EQ(clash.status, 409);
  EXPECT_EQ(body(clash)["field"], "ports[0]");
  for (const char* bad : {"", "{", "[1, 2]", "name: [", "\xff\xfe", "{\"name\": \"new\"}"}) {
    Response r = call("PUT", "/v1/services/new", bad);
    EXPECT_EQ(r.status, 400) << bad;
    EXPECT_TRUE(body(r)["error"].is_string()) << bad;
  }
  EXPECT_EQ(backend_.running().services.size(), 2u);
}

// A name that is not UTF-8 (GET /v1/services/%FF) made nlohmann::json::dump() throw, which
// httplib answers with a 500; the reply now carries U+FFFD instead.
TEST_F(HandlersTest, NamesThatAreNotUtf8StillGetJsonErrors) {
  Response get = call("GET", "/v1/services/\xff\xfe");
  EXPECT_EQ(get.status, 404);
  EXPECT_EQ(body(get)["error"], "no Service named \"\xef\xbf\xbd\xef\xbf\xbd\"");
  Response put = call("PUT", "/v1/services/\xc3",
                      R"({"name": "new", "vip": "10.0.0.110", "ports": [{"port": 443}]})");
  EXPECT_EQ(put.status, 400);
  EXPECT_EQ(call("GET", "/v1/trace", "", {{"port", "\xc3"}}).status, 400);
}

TEST_F(HandlersTest, TraceQueryIsValidated) {
  std::multimap<std::string, std::string> q = {
      {"src", "203.0.113.9"}, {"dst", "10.0.0.100"}, {"sport", "40000"}, {"dport", "80"}};
  EXPECT_EQ(call("GET", "/v1/trace", "", q).status, 200);
  EXPECT_EQ(backend_.last_trace.proto, 6);
  EXPECT_EQ(backend_.last_trace.tcp_flags, 0x02);
  auto with = [&](std::string key, std::string value) {
    auto p = q;
    p.erase(key);
    p.emplace(key, value);
    return call("GET", "/v1/trace", "", p);
  };
  EXPECT_EQ(with("port", "lan").status, 200);
  EXPECT_EQ(backend_.last_trace.in_port, 1);
  EXPECT_EQ(with("flags", "ack").status, 200);
  EXPECT_EQ(backend_.last_trace.tcp_flags, 0x10);
  for (auto [k, v] : std::vector<std::pair<std::string, std::string>>{
           {"proto", "sctp"}, {"src", "1.2.3"}, {"dst", ""}, {"sport", "0"}, {"dport", "65536"},
           {"dport", "+80"}, {"sport", "000080"}, {"flags", "fin"}, {"port", "eth9"}}) {
    Response r = with(k, v);
    EXPECT_EQ(r.status, 400) << k << "=" << v;
    EXPECT_EQ(body(r)["field"], k);
  }
  q.erase("sport");
  EXPECT_EQ(body(call("GET", "/v1/trace", "", q))["field"], "sport");
}

TEST_F(HandlersTest, FlowsLimit) {
  EXPECT_EQ(call("GET", "/v1/flows").status, 200);
  EXPECT_EQ(backend_.last_flow_limit, kDefaultFlowLimit);
  EXPECT_EQ(call("GET", "/v1/flows", "", {{"limit", "7"}}).status, 200);
  EXPECT_EQ(backend_.last_flow_limit, 7u);
  for (const char* bad : {"0", "-1", "10001", "1e3", "", "07"}) {
    EXPECT_EQ(call("GET", "/v1/flows", "", {{"limit", bad}}).status, 400) << bad;
  }
}

}  // namespace
}  // namespace l4lb::api
