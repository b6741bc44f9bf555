// EAL bring-up from the config: lcores (control + workers), extra EAL arguments from
// the config and the command line, and one device argument per port. Control thread only.
#pragma once

#include <string>
#include <vector>

#include "src/config/config.h"

namespace l4lb {

struct EalPlan {
  std::vector<std::string> args;  // argv for rte_eal_init, argv[0] included
  unsigned main_lcore = 0;
};

// Splits the --eal pass-through on white space (no quoting).
std::vector<std::string> split_words(const std::string& text);
EalPlan plan_eal(const config::Config& cfg, const std::string& eal_passthrough);
// Throws std::runtime_error with DPDK's reason on failure.
void init_eal(const EalPlan& plan);

}  // namespace l4lb
