#include "src/metrics.h"

#include <rte_ethdev.h>

#include <prometheus/collectable.h>
#include <prometheus/exposer.h>
#include <prometheus/metric_family.h>

#include <chrono>
#include <map>
#include <mutex>
#include <stdexcept>

namespace l4lb {

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

constexpr const char* kVersion = "0.1.0";

MetricFamily family(const std::string& name, const std::string& help, MetricType type) {
  return MetricFamily{"l4lb_" + name, help, type, {}};
}

void add(MetricFamily& f, std::vector<ClientMetric::Label> labels, double value) {
  ClientMetric m;
  m.label = std::move(labels);
  if (f.type == MetricType::Counter) {
    m.counter.value = value;
  } else {
    m.gauge.value = value;
  }
  f.metric.push_back(std::move(m));
}

}  // namespace

class MetricsCollector : public prometheus::Collectable {
 public:
  MetricsCollector(const std::vector<std::unique_ptr<Worker>>& workers,
                   const std::vector<PortInfo>& ports, const Control& control)
      : workers_(workers), ports_(ports), control_(control) {}

  std::vector<MetricFamily> Collect() const override {
    std::vector<MetricFamily> out;
    collect_build(out);
    collect_ports(out);
    collect_workers(out);
    collect_services(out);
    collect_health(out);
    collect_config(out);
    return out;
  }

 private:
  void collect_build(std::vector<MetricFamily>& out) const {
    auto f = family("build_info", "l4lbd version", MetricType::Gauge);
    add(f, {{"version", kVersion}}, 1);
    out.push_back(std::move(f));
  }

  void collect_ports(std::vector<MetricFamily>& out) const {
    auto rx = family("port_rx_packets_total", "packets received, per port and queue",
                     MetricType::Counter);
    auto rxb = family("port_rx_bytes_total", "bytes received, per port and queue",
                      MetricType::Counter);
    auto tx = family("port_tx_packets_total", "packets sent, per port and queue",
                     MetricType::Counter);
    auto txb = family("port_tx_bytes_total", "bytes sent, per port and queue",
                      MetricType::Counter);
    for (const auto& w : workers_) {
      const std::string queue = std::to_string(&w - &workers_.front());
      for (size_t p = 0; p < ports_.size(); ++p) {
        const auto& c = w->counters().ports[p];
        std::vector<ClientMetric::Label> l{{"port", ports_[p].name}, {"queue", queue}};
        add(rx, l, static_cast<double>(c.rx_packets));
        add(rxb, l, static_cast<double>(c.rx_bytes));
        add(tx, l, static_cast<double>(c.tx_packets));
        add(txb, l, static_cast<double>(c.tx_bytes));
      }
    }
    // The device's own view (rte_eth_stats): what never reached a queue.
    auto missed = family("port_rx_missed_total", "packets the device dropped for lack of RX "
                         "descriptors (imissed)", MetricType::Counter);
    auto rx_err = family("port_rx_errors_total", "erroneous packets received (ierrors)",
                         MetricType::Counter);
    auto tx_err = family("port_tx_errors_total", "packets the device failed to send (oerrors)",
                         MetricType::Counter);
    auto nombuf = family("port_rx_nombuf_total", "RX mbuf allocation failures",
                         MetricType::Counter);
    for (const auto& p : ports_) {
      rte_eth_stats s{};
      if (rte_eth_stats_get(p.port_id, &s) != 0) continue;
      std::vector<ClientMetric::Label> l{{"port", p.name}};
      add(missed, l, static_cast<double>(s.imissed));
      add(rx_err, l, static_cast<double>(s.ierrors));
      add(tx_err, l, static_cast<double>(s.oerrors));
      add(nombuf, l, static_cast<double>(s.rx_nombuf));
    }
    auto steering = family("port_steering_info", "how a flow's packets reach its owner worker "
                           "(single-queue, rss-fields, flow-rule, software)", MetricType::Gauge);
    for (const auto& p : ports_) {
      add(steering, {{"port", p.name}, {"mode", steering_mode_name(p.steering)}}, 1);
    }
    for (auto* f : {&rx, &rxb, &tx, &txb, &missed, &rx_err, &tx_err, &nombuf, &steering}) {
      out.push_back(std::move(*f));
    }
  }

  void collect_workers(std::vector<MetricFamily>& out) const {
    auto drops = family("drops_total", "packets dropped, by reason", MetricType::Counter);
    std::array<double, kDropReasonCount> drop_sum{};
    for (const auto& w : workers_) {
      for (size_t r = 0; r < kDropReasonCount; ++r) drop_sum[r] += static_cast<double>(w->counters().drops[r]);
    }
    for (size_t r = 0; r < kDropReasonCount; ++r) {
      add(drops, {{"reason", std::string(drop_reason_label(static_cast<DropReason>(r)))}},
          drop_sum[r]);
    }
    out.push_back(std::move(drops));
    // Every worker counter, per lcore, from the same X-macro list the workers use.
#define L4LB_X(name, help)                                                            \
  {                                                                                    \
    auto f = family(#name "_total", help, MetricType::Counter);                        \
    for (const auto& w : workers_) {                                                   \
      add(f, {{"lcore", std::to_string(w->lcore())}},                                  \
          static_cast<double>(w->counters().name));                                    \
    }                                                                                  \
    out.push_back(std::move(f));                                                       \
  }
    L4LB_WORKER_COUNTERS(L4LB_X)
#undef L4LB_X
    auto entries = family("flow_table_entries", "flows in the table", MetricType::Gauge);
    auto capacity = family("flow_table_capacity", "flow table size", MetricType::Gauge);
    for (const auto& w : workers_) {
      std::vector<ClientMetric::Label> l{{"lcore", std::to_string(w->lcore())}};
      add(entries, l, w->flow_table_size());
      add(capacity, l, w->flow_table_capacity());
    }
    out.push_back(std::move(entries));
    out.push_back(std::move(capacity));
  }

  void collect_services(std::vector<MetricFamily>& out) const {
    std::lock_guard lock(control_.mutex());
    const CounterSlots& slots = control_.slots();
    auto acl = family("service_port_acl_denied_total",
                      "packets from sources outside loadBalancerSourceRanges", MetricType::Counter);
    auto nob = family("service_port_no_backend_total",
                      "packets dropped: no backend takes new flows", MetricType::Counter);
    auto stateless = family("service_port_stateless_reply_packets_total",
                            "backend replies reverse-NATed without a flow entry",
                            MetricType::Counter);
    auto packets = family("service_port_packets_total",
                          "packets forwarded for the Service port, by direction",
                          MetricType::Counter);
    auto bytes = family("service_port_bytes_total", "bytes forwarded for the Service port, "
                        "by direction", MetricType::Counter);
    auto new_flows = family("service_port_new_flows_total", "flows opened", MetricType::Counter);
    auto b_packets = family("backend_packets_total", "packets forwarded to or from a backend",
                            MetricType::Counter);
    auto b_bytes = family("backend_bytes_total", "bytes forwarded to or from a backend",
                          MetricType::Counter);
    auto b_new = family("backend_new_flows_total", "flows pinned to the backend",
                        MetricType::Counter);
    auto b_active = family("backend_active_flows", "flows pinned to the backend now",
                           MetricType::Gauge);
    auto b_up = family("backend_up", "1 when the backend passes its health check (or has "
                       "none)", MetricType::Gauge);

    struct PortSum {
      double to_p = 0, to_b = 0, from_p = 0, from_b = 0, flows = 0;
    };
    std::map<uint32_t, PortSum> port_sums;
    const auto& ports = slots.ports();
    const auto& backends = slots.backends();
    for (uint32_t id = 1; id < backends.size(); ++id) {
      const auto& b = backends[id];
      if (!b.live) continue;
      BackendCounters sum;
      for (const auto& w : workers_) {
        const BackendCounters& c = w->backend_counters()[id];
        sum.to_packets += c.to_packets;
        sum.to_bytes += c.to_bytes;
        sum.from_packets += c.from_packets;
        sum.from_bytes += c.from_bytes;
        sum.new_flows += c.new_flows;
        sum.ended_flows += c.ended_flows;
      }
      const auto& port = ports[b.port_slot];
      std::vector<ClientMetric::Label> l{{"service", port.service},
                                         {"service_port", port.port},
                                         {"backend", format_ipv4(b.ip)}};
      auto with_dir = [&](const char* dir) {
        auto copy = l;
        copy.push_back({"direction", dir});
        return copy;
      };
      add(b_packets, with_dir("to_backend"), static_cast<double>(sum.to_packets));
      add(b_packets, with_dir("from_backend"), static_cast<double>(sum.from_packets));
      add(b_bytes, with_dir("to_backend"), static_cast<double>(sum.to_bytes));
      add(b_bytes, with_dir("from_backend"), static_cast<double>(sum.from_bytes));
      add(b_new, l, static_cast<double>(sum.new_flows));
      add(b_active, l, static_cast<double>(sum.new_flows - sum.ended_flows));
      add(b_up, l, b.up ? 1 : 0);
      PortSum& ps = port_sums[b.port_slot];
      ps.to_p += static_cast<double>(sum.to_packets);
      ps.to_b += static_cast<double>(sum.to_bytes);
      ps.from_p += static_cast<double>(sum.from_packets);
      ps.from_b += static_cast<double>(sum.from_bytes);
      ps.flows += static_cast<double>(sum.new_flows);
    }
    for (uint32_t id = 1; id < ports.size(); ++id) {
      if (!ports[id].live) continue;
      ServicePortCounters sum;
      for (const auto& w : workers_) {
        const ServicePortCounters& c = w->service_port_counters()[id];
        sum.acl_denied += c.acl_denied;
        sum.no_backend += c.no_backend;
        sum.stateless_reply_packets += c.stateless_reply_packets;
        sum.stateless_reply_bytes += c.stateless_reply_bytes;
      }
      std::vector<ClientMetric::Label> l{{"service", ports[id].service},
                                         {"service_port", ports[id].port}};
      auto with_dir = [&](const char* dir) {
        auto copy = l;
        copy.push_back({"direction", dir});
        return copy;
      };
      const PortSum& ps = port_sums[id];
      add(acl, l, static_cast<double>(sum.acl_denied));
      add(nob, l, static_cast<double>(sum.no_backend));
      add(stateless, l, static_cast<double>(sum.stateless_reply_packets));
      add(packets, with_dir("to_backend"), ps.to_p);
      add(packets, with_dir("from_backend"),
          ps.from_p + static_cast<double>(sum.stateless_reply_packets));
      add(bytes, with_dir("to_backend"), ps.to_b);
      add(bytes, with_dir("from_backend"),
          ps.from_b + static_cast<double>(sum.stateless_reply_bytes));
      add(new_flows, l, ps.flows);
    }
    for (auto* f : {&acl, &nob, &stateless, &packets, &bytes, &new_flows, &b_packets, &b_bytes,
                    &b_new, &b_active, &b_up}) {
      out.push_back(std::move(*f));
    }
  }

  // Per backend with a check, labelled as l4lb_backend_up. A target probed once for several
  // Services (or ports) shows under each. Lock order: the checker's lock (health_status) and
  // the control mutex (view) are taken one after the other, never nested, since
  // apply_health_changes() nests them the other way round.
  void collect_health(std::vector<MetricFamily>& out) const {
    std::map<health::TargetKey, health::TargetStatus> by_key;
    for (auto& st : control_.health_status()) {
      health::TargetKey key = st.key;
      by_key.emplace(std::move(key), std::move(st));
    }
    const ControlView view = control_.view();
    auto latency =
        family("health_probe_latency_seconds",
               "latency of the last finished probe (connect to verdict)", MetricType::Gauge);
    auto transitions = family("health_transitions_total", "changes of the backend's health verdict",
                              MetricType::Counter);
    auto probes = family("health_probes_total", "health probes started", MetricType::Counter);
    for (const auto& s : view.running.services) {
      for (const auto& b : s.backends) {
        auto target = Control::health_target(s, b.ip);
        if (!target) continue;
        auto it = by_key.find(target->key());
        if (it == by_key.end()) continue;  // not yet handed to the checker
        const health::TargetStatus& st = it->second;
        for (const auto& p : s.ports) {
          std::vector<ClientMetric::Label> l{
              {"service", s.name}, {"service_port", p.name}, {"backend", format_ipv4(b.ip)}};
          if (st.last.outcome != health::Outcome::kNone) {
            add(latency, l, std::chrono::duration<double>(st.last_latency).count());
          }
          add(transitions, l, static_cast<double>(st.transitions));
          add(probes, l, static_cast<double>(st.probes));
        }
      }
    }
    out.push_back(std::move(latency));
    out.push_back(std::move(transitions));
    out.push_back(std::move(probes));
  }

  void collect_config(std::vector<MetricFamily>& out) const {
    std::lock_guard lock(control_.mutex());
    auto gen = family("config_generation", "generation of the running snapshot",
                      MetricType::Gauge);
    add(gen, {}, static_cast<double>(control_.generation()));
    auto reloads = family("config_reloads_total", "config reloads, by result",
                          MetricType::Counter);
    add(reloads, {{"result", "success"}}, static_cast<double>(control_.reloads_ok()));
    add(reloads, {{"result", "failure"}}, static_cast<double>(control_.reloads_failed()));
    auto last = family("config_last_reload_timestamp_seconds",
                       "when the running config was loaded", MetricType::Gauge);
    add(last, {}, control_.last_reload_time());
    out.push_back(std::move(gen));
    out.push_back(std::move(reloads));
    out.push_back(std::move(last));
  }

  const std::vector<std::unique_ptr<Worker>>& workers_;
  const std::vector<PortInfo>& ports_;
  const Control& control_;
};

MetricsExporter::MetricsExporter(const config::ListenConfig& listen,
                                 const std::vector<std::unique_ptr<Worker>>& workers,
                                 const std::vector<PortInfo>& ports, const Control& control)
    : collector_(std::make_shared<MetricsCollector>(workers, ports, control)) {
  const std::string address = listen.host + ":" + std::to_string(listen.port);
  try {
    // Four civetweb threads: scrapes, dashboards and tests may poll at once.
    exposer_ = std::make_unique<prometheus::Exposer>(address, 4);
  } catch (const std::exception& e) {
    throw std::runtime_error("metrics: cannot listen on " + address + ": " + e.what());
  }
  exposer_->RegisterCollectable(collector_, "/metrics");
}

MetricsExporter::~MetricsExporter() = default;

int MetricsExporter::bound_port() const {
  auto ports = exposer_->GetListeningPorts();
  return ports.empty() ? 0 : ports.front();
}

}  // namespace l4lb
