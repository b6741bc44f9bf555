#include "src/log.h"

#include <cstdio>
#include <ctime>
#include <mutex>

namespace l4lb {

void log_message(LogLevel level, const char* fmt, ...) {
  static std::mutex mu;
  static const char* const kNames[] = {"info", "warn", "error"};
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
  std::lock_guard lock(mu);
  fprintf(stderr, "%s.%03ldZ l4lbd %s: %s\n", when, ts.tv_nsec / 1000000,
          kNames[static_cast<int>(level)], text);
  fflush(stderr);
}

}  // namespace l4lb
