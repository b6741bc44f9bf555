// The REST API's plain parts, shared by l4lbd's API server and l4lbctl: JSON views of the
// config model (the same shape as a YAML Service, so GET output is a PUT body), error
// bodies, request-parameter checks, the bearer-token check. No HTTP, no DPDK; any thread.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "src/config/config.h"

namespace l4lb::api {

// The largest request body the server reads (413 beyond); a Service with thousands of
// backends fits many times over.
constexpr size_t kMaxBodyBytes = 1 << 20;
constexpr uint32_t kMaxFlowLimit = 10000;
constexpr uint32_t kDefaultFlowLimit = 100;

// One Service in the YAML schema's shape: keys as in the file (camelCase), every default
// spelled out, so that it loads back to an equal ServiceConfig.
nlohmann::json service_json(const config::ServiceConfig& svc);

// {"error": first message, "field": its path, "errors": [{"error", "field"}...]}.
nlohmann::json error_json(const std::vector<config::FieldError>& errors);
nlohmann::json error_json(const std::string& message, const std::string& field = "");

// `limit` of GET /v1/flows: absent gives the default; otherwise a plain integer
// 1..kMaxFlowLimit. Nothing: invalid.
std::optional<uint32_t> parse_flow_limit(const std::optional<std::string>& text);

// Whether an Authorization header carries `Bearer <token>`; compares in constant time.
bool bearer_token_ok(std::string_view authorization, std::string_view token);

// The token in a control.api.tokenFile: the file's text without surrounding whitespace.
// Nothing (and `error` set) when unreadable or empty.
std::optional<std::string> read_token_file(const std::string& path, std::string& error);

// A YAML node as JSON with the loader's typing: quoted scalars stay strings, plain decimal
// integers become numbers, true/false booleans, null null. Lets l4lbctl send a Service of
// our YAML as a JSON body that the server judges exactly as it would judge the file.
nlohmann::json yaml_to_json(const YAML::Node& node);

}  // namespace l4lb::api
