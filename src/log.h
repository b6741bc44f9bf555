// Control-path logging to stderr with a timestamp and level. Never called per packet.
// Any thread.
#pragma once

#include <cstdarg>

namespace l4lb {

enum class LogLevel { kInfo, kWarn, kError };

void log_message(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

#define L4LB_INFO(...) ::l4lb::log_message(::l4lb::LogLevel::kInfo, __VA_ARGS__)
#define L4LB_WARN(...) ::l4lb::log_message(::l4lb::LogLevel::kWarn, __VA_ARGS__)
#define L4LB_ERROR(...) ::l4lb::log_message(::l4lb::LogLevel::kError, __VA_ARGS__)

}  // namespace l4lb
