// The REST API's live capture endpoints, self-contained: POST /v1/capture (blocks until a
// limit; answers the pcap, or writes it on the server), GET /v1/capture (whether one
// runs), DELETE /v1/capture (ends it early). Registered by the API server; its threads.
#pragma once

#include <httplib.h>

#include "src/capture.h"
#include "src/control.h"

namespace l4lb::api {

void add_capture_routes(httplib::Server& server, CaptureRunner& runner, const Control& control);

}  // namespace l4lb::api
