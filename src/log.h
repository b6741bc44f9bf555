// Logging for the control path and the rare, rate-limited data-path lines: one line per
// message with a timestamp, level and module. Each module is an rte_log type once l4lbd
// installs the DPDK backend (src/log_rte.h); before that, and in tools and unit tests
// without DPDK, lines go to stderr filtered by the levels kept here. Any thread.
#pragma once

#include <cstdarg>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace l4lb {

// rte_log types l4lb.<name>.
#define L4LB_LOG_MODULES(X) \
  X(kControl, "control")    \
  X(kConfig, "config")      \
  X(kHealth, "health")      \
  X(kApi, "api")            \
  X(kWorker, "worker")      \
  X(kPort, "port")

enum class LogModule : uint8_t {
#define L4LB_X(e, name) e,
  L4LB_LOG_MODULES(L4LB_X)
#undef L4LB_X
      kCount
};
constexpr size_t kLogModuleCount = static_cast<size_t>(LogModule::kCount);

// Most to least severe, as rte_log's ERR, WARNING, INFO, DEBUG.
enum class LogLevel : uint8_t { kError, kWarn, kInfo, kDebug };

const char* log_module_name(LogModule m);
const char* log_level_name(LogLevel l);
std::optional<LogModule> parse_log_module(std::string_view name);
std::optional<LogLevel> parse_log_level(std::string_view name);
// "LEVEL" (every module) or "MODULE=LEVEL"; an error message on failure.
bool apply_log_level_setting(std::string_view setting, std::string& error);

void set_log_level(LogModule m, LogLevel l);
void set_log_level_all(LogLevel l);
bool log_enabled(LogModule m, LogLevel l);

void log_message(LogModule m, LogLevel level, const char* fmt, ...)
    __attribute__((format(printf, 3, 4)));

// Where lines go and who keeps the levels; l4lbd installs rte_log's (src/log_rte.cc).
struct LogBackend {
  void (*write)(LogModule m, LogLevel level, const char* line) = nullptr;
  bool (*enabled)(LogModule m, LogLevel level) = nullptr;
  void (*set_level)(LogModule m, LogLevel level) = nullptr;
};
void set_log_backend(const LogBackend& backend);

}  // namespace l4lb

// A file whose lines belong to another module than control says so after its includes:
//   #undef L4LB_LOG_MODULE
//   #define L4LB_LOG_MODULE ::l4lb::LogModule::kHealth
#ifndef L4LB_LOG_MODULE
#define L4LB_LOG_MODULE ::l4lb::LogModule::kControl
#endif

#define L4LB_LOG(module, level, ...) ::l4lb::log_message(module, level, __VA_ARGS__)
#define L4LB_DEBUG(...) L4LB_LOG(L4LB_LOG_MODULE, ::l4lb::LogLevel::kDebug, __VA_ARGS__)
#define L4LB_INFO(...) L4LB_LOG(L4LB_LOG_MODULE, ::l4lb::LogLevel::kInfo, __VA_ARGS__)
#define L4LB_WARN(...) L4LB_LOG(L4LB_LOG_MODULE, ::l4lb::LogLevel::kWarn, __VA_ARGS__)
#define L4LB_ERROR(...) L4LB_LOG(L4LB_LOG_MODULE, ::l4lb::LogLevel::kError, __VA_ARGS__)
