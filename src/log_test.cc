#include "src/log.h"

#include <gtest/gtest.h>

#include "src/log_rate.h"

namespace l4lb {
namespace {

TEST(LogLevels, SettingsAndMessages) {
  std::string error;
  EXPECT_TRUE(apply_log_level_setting("warning", error));
  EXPECT_FALSE(log_enabled(LogModule::kApi, LogLevel::kInfo));
  EXPECT_TRUE(log_enabled(LogModule::kApi, LogLevel::kWarn));
  EXPECT_TRUE(apply_log_level_setting("worker=debug", error));
  EXPECT_TRUE(log_enabled(LogModule::kWorker, LogLevel::kDebug));
  EXPECT_FALSE(log_enabled(LogModule::kHealth, LogLevel::kInfo));
  EXPECT_FALSE(apply_log_level_setting("loud", error));
  EXPECT_EQ(error, "\"loud\" is not a log level (error, warning, info, debug)");
  EXPECT_FALSE(apply_log_level_setting("dataplane=info", error));
  EXPECT_EQ(error,
            "\"dataplane\" is not a log module (control, config, health, api, worker, port)");
  set_log_level_all(LogLevel::kInfo);
}

TEST(LogRateLimit, AtMostRatePerSecondAndCountsTheRest) {
  LogRateLimit r;
  const uint64_t hz = 1000;
  r.configure(5, hz, 0);
  int allowed = 0;
  for (int i = 0; i < 100; ++i) allowed += r.allow(10) ? 1 : 0;  // a burst at t=10 ticks
  EXPECT_EQ(allowed, 5);
  EXPECT_EQ(r.take_suppressed(), 95u);
  EXPECT_EQ(r.take_suppressed(), 0u);
  EXPECT_FALSE(r.allow(150));  // 140 ticks refill 0.7 of a line
  EXPECT_TRUE(r.allow(210));   // a whole line (200 ticks) since t=10
  allowed = 0;
  for (int i = 0; i < 100; ++i) allowed += r.allow(5000) ? 1 : 0;  // long idle: a full bucket
  EXPECT_EQ(allowed, 5);
}

}  // namespace
}  // namespace l4lb
