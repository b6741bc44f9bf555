// l4lbd: bring-up and tear-down order only. Config -> EAL -> ports -> first snapshot ->
// workers on their lcores -> control loop (signals) -> stop workers -> flush -> close.
#include <rte_eal.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

#include <numa.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <memory>
#include <thread>

#include "src/api/server.h"
#include "src/capture.h"
#include "src/control.h"
#include "src/eal.h"
#include "src/log.h"
#include "src/log_rte.h"
#include "src/metrics.h"
#include "src/port.h"
#include "src/sd_notify.h"
#include "src/snapshot.h"
#include "src/stats.h"
#include "src/telemetry.h"
#include "src/worker.h"

namespace {

std::atomic<bool> g_stop{false};
std::atomic<bool> g_reload{false};

void on_signal(int sig) {
  if (sig == SIGHUP) {
    g_reload = true;
  } else {
    g_stop = true;
  }
}

void install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaction(sig, &sa, nullptr);
}

// One single-producer/single-consumer ring per ordered pair of workers: [from * n + to].
std::vector<rte_ring*> create_handoff_rings(const std::vector<unsigned>& lcores) {
  const auto n = static_cast<uint16_t>(lcores.size());
  std::vector<rte_ring*> rings(size_t{n} * n, nullptr);
  for (uint16_t from = 0; n > 1 && from < n; ++from) {
    for (uint16_t to = 0; to < n; ++to) {
      if (from == to) continue;
      std::string name = "l4lb_ho_" + std::to_string(from) + "_" + std::to_string(to);
      // On the consumer's socket: it reads every slot; the producer writes once.
      rte_ring* r = rte_ring_create(name.c_str(), 4096,
                                    static_cast<int>(rte_lcore_to_socket_id(lcores[to])),
                                    RING_F_SP_ENQ | RING_F_SC_DEQ);
      if (r == nullptr) throw std::runtime_error("cannot create hand-off ring " + name);
      rings[size_t{from} * n + to] = r;
    }
  }
  return rings;
}

int print_errors(const l4lb::config::LoadResult& r) {
  for (const auto& e : r.errors) std::fprintf(stderr, "%s\n", e.to_string().c_str());
  return 1;
}

int run(const std::string& config_path, const std::string& eal_args,
        const std::string& stats_file, const std::vector<std::string>& log_levels) {
  using namespace l4lb;
  config::LoadResult loaded = config::load_config_file(config_path);
  if (!loaded.ok()) return print_errors(loaded);
  const config::Config& cfg = *loaded.config;
  // Levels: the config's, then --log-level (checked in main) on top; then rte_log keeps them.
  set_log_level_all(cfg.control.log.level);
  for (const auto& [module, level] : cfg.control.log.modules) set_log_level(module, level);
  std::string log_error;
  for (const auto& s : log_levels) apply_log_level_setting(s, log_error);
  use_rte_log();

  install_signal_handlers();
  init_eal(plan_eal(cfg, eal_args));
  // rte_eal_init installs no handlers of its own; ours stay in place.
  const auto& dp = cfg.dataplane;
  for (unsigned lcore : dp.workers) {
    if (!rte_lcore_is_enabled(lcore)) {
      throw std::runtime_error("worker lcore " + std::to_string(lcore) + " is not available");
    }
  }
  auto ports = start_ports(dp, static_cast<uint16_t>(dp.workers.size()));
  auto publisher = std::make_unique<SnapshotPublisher>(static_cast<unsigned>(dp.workers.size()));
  Control control(config_path, cfg, ports, *publisher);
  control.start();

  std::vector<std::unique_ptr<Worker>> workers;
  FlowTimeouts timeouts{dp.flow_table.tcp_timeout_s, dp.flow_table.tcp_transitory_timeout_s,
                        dp.flow_table.udp_timeout_s};
  const auto n = static_cast<uint16_t>(dp.workers.size());
  std::vector<rte_ring*> handoff = create_handoff_rings(dp.workers);
  for (uint16_t i = 0; i < n; ++i) {
    WorkerSettings s;
    s.lcore = dp.workers[i];
    s.queue = i;
    s.workers = n;
    s.rcu_id = i;
    // The configured capacity is the whole appliance's; each worker owns a share.
    s.flow_capacity = std::max<uint32_t>(dp.flow_table.capacity / n, 1024);
    s.timeouts = timeouts;
    s.answer_vip_pings = dp.answer_vip_pings;
    s.icmp_errors_per_s = dp.icmp_errors_per_s;
    s.frag_datagrams = dp.fragments.datagrams;
    s.frag_held = dp.fragments.held_fragments;
    s.frag_timeout_s = dp.fragments.timeout_s;
    s.log_lines_per_second = cfg.control.log.data_path_lines_per_second;
    const int socket = static_cast<int>(rte_lcore_to_socket_id(s.lcore));
    for (const auto& p : ports) {
      if (p.socket != socket) {
        L4LB_WARN("worker lcore %u is on NUMA socket %d but port %s is on socket %d: every "
                  "packet crosses the interconnect", s.lcore, socket, p.name.c_str(), p.socket);
      }
    }
    // The flow table and neighbour cache are touched at construction: place their pages on
    // the worker's socket, not the control thread's.
    const bool numa = numa_available() >= 0 && numa_max_node() > 0;
    if (numa) numa_set_preferred(socket);
    workers.push_back(std::make_unique<Worker>(s, ports, *publisher, g_stop, handoff));
    if (numa) numa_set_localalloc();
  }
  std::vector<int> sockets;
  for (auto& w : workers) sockets.push_back(static_cast<int>(rte_lcore_to_socket_id(w->lcore())));
  auto capture_tap = std::make_unique<CaptureTap>(sockets);
  for (auto& w : workers) w->set_capture(*capture_tap);
  CaptureRunner capture(*capture_tap, publisher->qsbr(), [&workers] {
    uint64_t sum = 0;
    for (auto& w : workers) sum += w->counters().capture_dropped;
    return sum;
  });
  L4LB_INFO("steering: %s", n == 1 ? "one worker owns every flow"
                                   : "each flow has an owner worker (Toeplitz over its client IP "
                                     "and port); a packet on another worker's queue is handed "
                                     "over on an SPSC ring");
  for (auto& w : workers) {
    if (int rc = rte_eal_remote_launch(&Worker::launch, w.get(), w->lcore()); rc != 0) {
      throw std::runtime_error("cannot launch worker on lcore " + std::to_string(w->lcore()));
    }
  }
  auto metrics = std::make_unique<MetricsExporter>(cfg.control.metrics, workers, ports, control);
  auto api_server = std::make_unique<api::ApiServer>(cfg.control, control, workers, ports, &capture);
  auto telemetry = register_telemetry(workers, ports, control, *publisher);
  L4LB_INFO("metrics: http://%s:%d/metrics", cfg.control.metrics.host.c_str(),
            metrics->bound_port());
  L4LB_INFO("ready: %zu worker(s), %zu port(s)", workers.size(), ports.size());

  // Under systemd (Type=notify): ready once ports, workers, API and metrics are up; the
  // watchdog pings come from this loop, so a stuck control thread gets l4lbd restarted.
  sd_notify("READY=1");
  const auto watchdog = sd_watchdog_interval();
  auto last_ping = std::chrono::steady_clock::now();
  while (!g_stop.load()) {
    if (g_reload.exchange(false)) control.reload();
    control.apply_health_changes();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (watchdog.count() > 0 && std::chrono::steady_clock::now() - last_ping >= watchdog) {
      sd_notify("WATCHDOG=1");
      last_ping = std::chrono::steady_clock::now();
    }
  }
  sd_notify("STOPPING=1");
  L4LB_INFO("stopping");
  api_server.reset();  // no API change in flight while the workers stop
  control.stop_health();
  rte_eal_mp_wait_lcore();  // workers flush their TX buffers before returning
  metrics.reset();  // no scrape may read workers being torn down
  telemetry.reset();

  std::vector<const WorkerCounters*> all;
  for (auto& w : workers) all.push_back(&w->counters());
  std::vector<std::string> names;
  for (auto& p : ports) names.push_back(p.name);
  WorkerCounters total = sum_counters(all);
  // Packets handed off in a worker's last iterations never reached their owner: count and
  // free them, so that sent == received + left at stop.
  for (rte_ring* r : handoff) {
    void* m = nullptr;
    while (r != nullptr && rte_ring_dequeue(r, &m) == 0) {
      rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
      total.handoff_left_at_stop++;
    }
  }
  std::string json = counters_json(total, names);
  if (!stats_file.empty()) {
    std::ofstream(stats_file) << json << "\n";
  }
  workers.clear();
  capture_tap.reset();
  for (rte_ring* r : handoff) rte_ring_free(r);
  stop_ports(ports);  // closing a tx_pcap device completes its file
  publisher.reset();
  rte_eal_cleanup();
  L4LB_INFO("stopped");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"l4lbd: Maglev passthrough L4 load balancer on DPDK"};
  std::string config_path, check_path, eal_args, stats_file;
  std::vector<std::string> log_levels;
  app.add_option("--config", config_path, "YAML config file (v1 schema)");
  app.add_option("--check-config", check_path, "validate a config file and exit");
  app.add_option("--eal", eal_args, "extra EAL arguments, appended after the config's");
  app.add_option("--stats-file", stats_file, "write the summed counters as JSON here on exit");
  app.add_option("--log-level", log_levels,
                 "LEVEL or MODULE=LEVEL (error, warning, info, debug; modules: control, config, "
                 "health, api, worker, port); over the config's control.log; repeatable");
  app.set_version_flag("--version", "l4lbd 0.1.0");
  CLI11_PARSE(app, argc, argv);

  if (!check_path.empty()) {
    auto r = l4lb::config::load_config_file(check_path);
    if (!r.ok()) return print_errors(r);
    std::printf("%s: ok\n", check_path.c_str());
    return 0;
  }
  for (const auto& s : log_levels) {
    std::string error;
    if (!l4lb::apply_log_level_setting(s, error)) {
      std::fprintf(stderr, "l4lbd: --log-level: %s\n", error.c_str());
      return 2;
    }
  }
  if (config_path.empty()) {
    std::fprintf(stderr, "l4lbd: --config FILE is required (or --check-config FILE)\n");
    return 2;
  }
  try {
    return run(config_path, eal_args, stats_file, log_levels);
  } catch (const std::exception& e) {
    L4LB_ERROR("%s", e.what());
    return 1;
  }
}
