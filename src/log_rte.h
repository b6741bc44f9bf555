// Routes src/log.h through rte_log: one registered type per module (l4lb.control,
// l4lb.config, ...), levels kept by rte_log (so EAL's --log-level=l4lb.worker:debug works
// too), lines on stderr. Main thread, before the first worker starts.
#pragma once

namespace l4lb {

// Registers the types with the levels set so far; throws std::runtime_error.
void use_rte_log();

}  // namespace l4lb
