// Hardware flow-owner steering per port (control thread only, at start): asks the NIC to
// put both directions of a flow on its owner's queue, by RSS field selection or rte_flow
// RSS rules, checks that it took, and otherwise leaves the port to the workers' software
// hand-off. Correctness never depends on the outcome: workers check every packet's owner
// (lb/steering_plan.h OwnerHash) whatever the port's mode.
#pragma once

#include <rte_ethdev.h>

#include <string>
#include <vector>

#include "lb/steering_plan.h"

namespace l4lb {

struct SteeringPlan {
  PortSide side = PortSide::kBoth;
  std::vector<SteeringMode> order;  // best first (steering_order())
};

// Before rte_eth_dev_configure: the modes to try, and the port-wide RSS configuration
// for the first of them written into conf (RSS over all queues; client-side field
// selection and the shared key when the first mode is kRssFields).
SteeringPlan plan_port_steering(const rte_eth_dev_info& info, uint16_t queues, PortSide side,
                                rte_eth_conf& conf);

struct SteeringResult {
  SteeringMode mode = SteeringMode::kSingleQueue;
  std::string detail;  // why this mode, and what the modes before it answered
};

// After rte_eth_dev_start: tries the plan's modes in order and keeps the first that the
// device accepts and reports back.
SteeringResult apply_port_steering(uint16_t port_id, const rte_eth_dev_info& info, uint16_t queues,
                                   const SteeringPlan& plan);

}  // namespace l4lb
