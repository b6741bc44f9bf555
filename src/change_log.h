// What a config change changed, in one line for the log: Services added, removed and
// changed (by name), and whether routes, neighbours or the Maglev table size changed.
// Control thread; no DPDK.
#pragma once

#include <string>

#include "src/config/config.h"

namespace l4lb {

// "services added: a, b; services removed: c; services changed: d; routes changed", or
// "no change".
std::string describe_changes(const config::Config& before, const config::Config& after);

}  // namespace l4lb
