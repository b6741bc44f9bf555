#include "src/eal.h"

#include <rte_eal.h>
#include <rte_errno.h>

#include <algorithm>
#include <sstream>
#include <stdexcept>

#include "src/log.h"
#include "src/port.h"

namespace l4lb {

std::vector<std::string> split_words(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> words;
  for (std::string w; in >> w;) words.push_back(w);
  return words;
}

EalPlan plan_eal(const config::Config& cfg, const std::string& eal_passthrough) {
  const auto& workers = cfg.dataplane.workers;
  EalPlan plan;
  // The control thread runs on the lowest lcore that is not a worker.
  while (std::find(workers.begin(), workers.end(), plan.main_lcore) != workers.end()) {
    ++plan.main_lcore;
  }
  std::string lcores = std::to_string(plan.main_lcore);
  // append, not `"," + std::to_string(w)`: GCC 12 warns falsely there (-Wrestrict).
  for (unsigned w : workers) lcores.append(",").append(std::to_string(w));
  std::vector<std::string> extra = cfg.dataplane.eal;
  for (auto& a : split_words(eal_passthrough)) extra.push_back(std::move(a));
  // An explicit --lcores map (lcore@cpu, e.g. two workers sharing a CPU in tests) replaces
  // the plain lcore list; it must name the control lcore and every worker.
  const bool mapped = std::any_of(extra.begin(), extra.end(), [](const std::string& a) {
    return a == "--lcores" || a.rfind("--lcores=", 0) == 0;
  });
  plan.args = {"l4lbd"};
  if (!mapped) plan.args.insert(plan.args.end(), {"-l", lcores});
  plan.args.insert(plan.args.end(), {"--main-lcore", std::to_string(plan.main_lcore)});
  for (auto& a : extra) plan.args.push_back(std::move(a));
  const auto& ports = cfg.dataplane.ports;
  const bool by_mac = std::any_of(ports.begin(), ports.end(),
                                  [](const auto& p) { return device_mac(p.device).has_value(); });
  for (const auto& p : ports) {
    for (auto& a : device_eal_args(p.device, by_mac)) plan.args.push_back(std::move(a));
  }
  for (size_t i = 0; i < ports.size(); ++i) {
    if (ports[i].tap.empty()) continue;
    plan.args.push_back("--vdev");
    plan.args.push_back(tap_vdev(i, ports[i].tap));
  }
  return plan;
}

void init_eal(const EalPlan& plan) {
  std::string joined;
  for (const auto& a : plan.args) joined += (joined.empty() ? "" : " ") + a;
  L4LB_INFO("EAL: %s", joined.c_str());
  std::vector<char*> argv;
  std::vector<std::string> storage = plan.args;  // rte_eal_init may permute argv
  for (auto& a : storage) argv.push_back(a.data());
  argv.push_back(nullptr);
  if (rte_eal_init(static_cast<int>(storage.size()), argv.data()) < 0) {
    throw std::runtime_error(std::string("EAL initialisation failed: ") + rte_strerror(rte_errno));
  }
}

}  // namespace l4lb
