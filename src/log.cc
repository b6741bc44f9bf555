#include "src/log.h"

#include <atomic>
#include <cstdio>
#include <ctime>

namespace l4lb {

namespace {

constexpr const char* kModuleNames[] = {
#define L4LB_X(e, name) name,
    L4LB_LOG_MODULES(L4LB_X)
#undef L4LB_X
};
constexpr const char* kLevelNames[] = {"error", "warning", "info", "debug"};

// Zero-initialised: kError; raised to info before main by the initialiser below.
std::atomic<LogLevel> g_levels[kLogModuleCount];
const bool g_levels_set = [] {
  for (auto& l : g_levels) l.store(LogLevel::kInfo);
  return true;
}();

void write_stderr(LogModule, LogLevel, const char* line) {
  std::fputs(line, stderr);
  std::fflush(stderr);
}

bool enabled_here(LogModule m, LogLevel l) {
  return l <= g_levels[static_cast<size_t>(m)].load(std::memory_order_relaxed);
}

LogBackend g_backend{write_stderr, enabled_here, nullptr};

}  // namespace

const char* log_module_name(LogModule m) { return kModuleNames[static_cast<size_t>(m)]; }
const char* log_level_name(LogLevel l) { return kLevelNames[static_cast<size_t>(l)]; }

std::optional<LogModule> parse_log_module(std::string_view name) {
  for (size_t i = 0; i < kLogModuleCount; ++i) {
    if (name == kModuleNames[i]) return static_cast<LogModule>(i);
  }
  return std::nullopt;
}

std::optional<LogLevel> parse_log_level(std::string_view name) {
  for (size_t i = 0; i < std::size(kLevelNames); ++i) {
    if (name == kLevelNames[i]) return static_cast<LogLevel>(i);
  }
  return std::nullopt;
}

bool apply_log_level_setting(std::string_view setting, std::string& error) {
  const size_t eq = setting.find('=');
  const std::string_view level_text =
      eq == std::string_view::npos ? setting : setting.substr(eq + 1);
  const auto level = parse_log_level(level_text);
  if (!level) {
    error = "\"" + std::string(level_text) + "\" is not a log level (error, warning, info, debug)";
    return false;
  }
  if (eq == std::string_view::npos) {
    set_log_level_all(*level);
    return true;
  }
  const auto module = parse_log_module(setting.substr(0, eq));
  if (!module) {
    std::string names;
    for (const char* n : kModuleNames) names += std::string(names.empty() ? "" : ", ") + n;
    error = "\"" + std::string(setting.substr(0, eq)) + "\" is not a log module (" + names + ")";
    return false;
  }
  set_log_level(*module, *level);
  return true;
}

void set_log_level(LogModule m, LogLevel l) {
  g_levels[static_cast<size_t>(m)].store(l);
  if (g_backend.set_level != nullptr) g_backend.set_level(m, l);
}

void set_log_level_all(LogLevel l) {
  for (size_t i = 0; i < kLogModuleCount; ++i) set_log_level(static_cast<LogModule>(i), l);
}

bool log_enabled(LogModule m, LogLevel l) { return g_backend.enabled(m, l); }

void set_log_backend(const LogBackend& backend) {
  g_backend = backend;
  if (g_backend.set_level != nullptr) {
    for (size_t i = 0; i < kLogModuleCount; ++i) {
      g_backend.set_level(static_cast<LogModule>(i), g_levels[i].load());
    }
  }
}

void log_message(LogModule m, LogLevel level, const char* fmt, ...) {
  if (!log_enabled(m, level)) return;
  char when[32];
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  tm utc{};
  gmtime_r(&ts.tv_sec, &utc);
  strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &utc);
  char text[1024];
  va_list args;
  va_start(args, fmt);
  vsnprintf(text, sizeof text, fmt, args);
  va_end(args);
  // One buffer, one write: lines of several threads never interleave.
  char line[1152];
  snprintf(line, sizeof line, "%s.%03ldZ l4lbd %s [%s] %s\n", when, ts.tv_nsec / 1000000,
           log_level_name(level), log_module_name(m), text);
  g_backend.write(m, level, line);
}

}  // namespace l4lb
