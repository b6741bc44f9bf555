#include "src/log_rte.h"

#include <rte_log.h>

#include <cstdio>
#include <stdexcept>
#include <string>

#include "src/log.h"

namespace l4lb {

namespace {

int g_types[kLogModuleCount];

uint32_t rte_level(LogLevel l) {
  switch (l) {
    case LogLevel::kError:
      return RTE_LOG_ERR;
    case LogLevel::kWarn:
      return RTE_LOG_WARNING;
    case LogLevel::kInfo:
      return RTE_LOG_INFO;
    case LogLevel::kDebug:
      break;
  }
  return RTE_LOG_DEBUG;
}

void write(LogModule m, LogLevel l, const char* line) {
  rte_log(rte_level(l), static_cast<uint32_t>(g_types[static_cast<size_t>(m)]), "%s", line);
}

bool enabled(LogModule m, LogLevel l) {
  return rte_log_can_log(static_cast<uint32_t>(g_types[static_cast<size_t>(m)]), rte_level(l));
}

void set_level(LogModule m, LogLevel l) {
  rte_log_set_level(static_cast<uint32_t>(g_types[static_cast<size_t>(m)]), rte_level(l));
}

}  // namespace

void use_rte_log() {
  // rte_log writes to stdout and syslog by default; l4lbd's lines stay on stderr.
  rte_openlog_stream(stderr);
  for (size_t i = 0; i < kLogModuleCount; ++i) {
    const std::string name = std::string("l4lb.") + log_module_name(static_cast<LogModule>(i));
    g_types[i] = rte_log_register_type_and_pick_level(name.c_str(), RTE_LOG_INFO);
    if (g_types[i] < 0) throw std::runtime_error("cannot register log type " + name);
  }
  set_log_backend({write, enabled, set_level});
}

}  // namespace l4lb
