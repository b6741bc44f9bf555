// systemd's readiness and watchdog protocol (sd_notify(3)) without libsystemd: one
// datagram per message to the unix socket named in $NOTIFY_SOCKET. Control thread only.
// Without $NOTIFY_SOCKET (not started by systemd, tests) every call does nothing.
#pragma once

#include <chrono>
#include <string>

namespace l4lb {

// Sends `state` ("READY=1", "WATCHDOG=1", "STOPPING=1", "STATUS=..."); true if a
// datagram left. A missing socket or a failed send is not an error for l4lbd.
bool sd_notify(const std::string& state);

// How often to send WATCHDOG=1: half of $WATCHDOG_USEC (as systemd advises), or zero when
// no watchdog is set or $WATCHDOG_PID names another process.
std::chrono::microseconds sd_watchdog_interval();

}  // namespace l4lb
