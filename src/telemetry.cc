#include "src/telemetry.h"

#include <rte_telemetry.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <string>

#include "lb/cidr.h"
#include "nat/headers.h"
#include "src/log.h"

namespace l4lb {

namespace {

constexpr const char* kVersion = "0.1.0";

// What the commands read. A telemetry callback gets no user pointer, so the objects live
// in this file-local slot; `mutex` orders attach/detach against callbacks in flight.
struct Sources {
  std::mutex mutex;
  const std::vector<std::unique_ptr<Worker>>* workers = nullptr;
  const std::vector<PortInfo>* ports = nullptr;
  const Control* control = nullptr;
  const SnapshotPublisher* publisher = nullptr;
};

Sources& sources() {
  static Sources s;
  return s;
}

const char* protocol_name(uint8_t proto) {
  switch (proto) {
    case kIpProtoTcp:
      return "TCP";
    case kIpProtoUdp:
      return "UDP";
    default:
      return "?";
  }
}

// DPDK 22.11 nests one level only: a dict may hold arrays of scalars, an array may not hold
// dicts. So a list of records goes out as a table: one array per column, row i of every
// column is one record. The reply must fit the socket's 16 KiB message (max_output_len) and
// RTE_TEL_MAX_ARRAY_ENTRIES; rows past that are left out and `rows` < `total_rows` says so
// (a Service name parameter narrows the table).
class Table {
 public:
  void add_string(const char* column, std::string value) {
    cell(column, false).strings.push_back(std::move(value));
  }
  void add_u64(const char* column, uint64_t value) { cell(column, true).numbers.push_back(value); }
  void end_row() { ++rows_; }

  void emit(rte_tel_data* d) const {
    constexpr size_t kBudget = 16384 - 1024;  // headroom for the command echo and framing
    size_t bytes = 0, rows = 0;
    for (const auto& c : columns_) bytes += std::strlen(c.name) + 8;
    for (; rows < rows_ && rows < RTE_TEL_MAX_ARRAY_ENTRIES; ++rows) {
      size_t row = 0;
      for (const auto& c : columns_) {
        row +=
            c.is_number ? std::to_string(c.numbers[rows]).size() + 1 : c.strings[rows].size() + 3;
      }
      if (bytes + row > kBudget) break;
      bytes += row;
    }
    rte_tel_data_start_dict(d);
    rte_tel_data_add_dict_u64(d, "rows", rows);
    rte_tel_data_add_dict_u64(d, "total_rows", rows_);
    for (const auto& c : columns_) {
      rte_tel_data* a = rte_tel_data_alloc();
      if (a == nullptr) return;
      rte_tel_data_start_array(a, c.is_number ? RTE_TEL_U64_VAL : RTE_TEL_STRING_VAL);
      for (size_t r = 0; r < rows; ++r) {
        if (c.is_number) {
          rte_tel_data_add_array_u64(a, c.numbers[r]);
        } else {
          rte_tel_data_add_array_string(a, c.strings[r].c_str());
        }
      }
      if (rte_tel_data_add_dict_container(d, c.name, a, 0) != 0) rte_tel_data_free(a);
    }
  }

 private:
  struct Column {
    const char* name;
    bool is_number;
    std::vector<std::string> strings;
    std::vector<uint64_t> numbers;
  };
  Column& cell(const char* name, bool is_number) {
    for (auto& c : columns_) {
      if (std::strcmp(c.name, name) == 0) return c;
    }
    columns_.push_back(Column{name, is_number, {}, {}});
    return columns_.back();
  }

  std::vector<Column> columns_;
  size_t rows_ = 0;
};

// The Service a command is limited to: its parameter, or every Service when empty.
bool selected(const char* params, const std::string& service) {
  return params == nullptr || *params == '\0' || service == params;
}

// Runs row(table, service_port) for every Service port the parameter selects in the current
// snapshot, then emits the table. Snapshots are published only under Control's mutex, so
// the current one stays alive while it is held.
template <typename Row>
int service_port_table(const char* params, rte_tel_data* d, Row&& row) {
  std::lock_guard attach(sources().mutex);
  const Sources& s = sources();
  if (s.control == nullptr) return -ENODEV;
  Table t;
  {
    std::lock_guard lock(s.control->mutex());
    const Snapshot* snap = s.publisher->current();
    if (snap == nullptr) return -ENODEV;
    for (const ServicePort& sp : snap->services.ports()) {
      if (selected(params, sp.service)) row(t, sp);
    }
  }
  t.emit(d);
  return 0;
}

// /l4lb/services[,NAME]: one row per Service port.
int cmd_services(const char*, const char* params, rte_tel_data* d) {
  return service_port_table(params, d, [](Table& t, const ServicePort& sp) {
    t.add_string("service", sp.service);
    t.add_string("vip", format_ipv4(ntoh32(sp.vip_be)));
    t.add_string("port_name", sp.name);
    t.add_string("protocol", protocol_name(sp.proto));
    t.add_u64("port", ntoh16(sp.port_be));
    t.add_u64("target_port", ntoh16(sp.target_port_be));
    // Every port of a Service has the Service's backends.
    t.add_u64("backends", sp.maglev->backends().size());
    t.add_u64("client_ip_affinity", sp.client_ip_affinity ? 1 : 0);
    t.end_row();
  });
}

// /l4lb/backends[,NAME]: one row per (Service port, backend), counters summed over workers.
int cmd_backends(const char*, const char* params, rte_tel_data* d) {
  return service_port_table(params, d, [](Table& t, const ServicePort& sp) {
    const auto& backends = sp.maglev->backends();
    for (size_t b = 0; b < backends.size(); ++b) {
      const uint32_t slot = b < sp.backend_counter_ids.size() ? sp.backend_counter_ids[b] : 0;
      uint64_t new_flows = 0, ended = 0, to_packets = 0, from_packets = 0;
      for (const auto& w : *sources().workers) {
        const BackendCounters& c = w->backend_counters()[slot];
        new_flows += c.new_flows;
        ended += c.ended_flows;
        to_packets += c.to_packets;
        from_packets += c.from_packets;
      }
      t.add_string("service", sp.service);
      t.add_string("service_port", sp.name);
      t.add_string("backend", format_ipv4(backends[b].ip));
      t.add_u64("weight", backends[b].weight);
      t.add_u64("new_flows", new_flows);
      // Two counters a worker may be updating while we read: never let the gauge wrap.
      t.add_u64("active_flows", new_flows >= ended ? new_flows - ended : 0);
      t.add_u64("to_backend_packets", to_packets);
      t.add_u64("from_backend_packets", from_packets);
      t.end_row();
    }
  });
}

// /l4lb/flows: one row per worker with its flow table figures.
int cmd_flows(const char*, const char*, rte_tel_data* d) {
  std::lock_guard attach(sources().mutex);
  const Sources& s = sources();
  if (s.workers == nullptr) return -ENODEV;
  Table t;
  for (const auto& w : *s.workers) {
    const WorkerCounters& c = w->counters();
    t.add_u64("lcore", w->lcore());
    t.add_u64("queue", static_cast<uint64_t>(&w - &s.workers->front()));
    t.add_u64("entries", w->flow_table_size());
    t.add_u64("capacity", w->flow_table_capacity());
    t.add_u64("flows_created", c.flows_created);
    t.add_u64("flows_expired", c.flows_expired);
    t.add_u64("flows_reopened", c.flows_reopened);
    t.add_u64("insert_failed", c.flow_insert_failed);
    t.end_row();
  }
  t.emit(d);
  return 0;
}

// /l4lb/status: version, config generation and reloads, worker lcores, port names.
int cmd_status(const char*, const char*, rte_tel_data* d) {
  std::lock_guard attach(sources().mutex);
  const Sources& s = sources();
  if (s.control == nullptr) return -ENODEV;
  rte_tel_data_start_dict(d);
  rte_tel_data_add_dict_string(d, "version", kVersion);
  {
    std::lock_guard lock(s.control->mutex());
    rte_tel_data_add_dict_u64(d, "generation", s.control->generation());
    rte_tel_data_add_dict_u64(d, "reloads_ok", s.control->reloads_ok());
    rte_tel_data_add_dict_u64(d, "reloads_failed", s.control->reloads_failed());
  }
  rte_tel_data* lcores = rte_tel_data_alloc();
  rte_tel_data_start_array(lcores, RTE_TEL_INT_VAL);
  for (const auto& w : *s.workers) rte_tel_data_add_array_int(lcores, static_cast<int>(w->lcore()));
  if (rte_tel_data_add_dict_container(d, "workers", lcores, 0) != 0) rte_tel_data_free(lcores);
  rte_tel_data* names = rte_tel_data_alloc();
  rte_tel_data_start_array(names, RTE_TEL_STRING_VAL);
  for (const auto& p : *s.ports) rte_tel_data_add_array_string(names, p.name.c_str());
  if (rte_tel_data_add_dict_container(d, "ports", names, 0) != 0) rte_tel_data_free(names);
  return 0;
}

void register_commands() {
  struct Command {
    const char* name;
    telemetry_cb fn;
    const char* help;
  };
  static constexpr Command kCommands[] = {
      {"/l4lb/services", cmd_services,
       "Services: name, VIP, ports (protocol, port, targetPort), backend count. "
       "Parameters: Service name (optional)"},
      {"/l4lb/backends", cmd_backends,
       "Backends per Service port: weight, new and active flows summed over workers. "
       "Parameters: Service name (optional)"},
      {"/l4lb/flows", cmd_flows,
       "Flow table per worker lcore: entries, capacity, created, expired, insert failures"},
      {"/l4lb/status", cmd_status, "l4lbd version, config generation, reloads, workers, ports"},
  };
  for (const auto& c : kCommands) {
    if (int rc = rte_telemetry_register_cmd(c.name, c.fn, c.help); rc != 0) {
      L4LB_WARN("telemetry: cannot register %s (%d)", c.name, rc);
    }
  }
}

}  // namespace

TelemetryCommands::TelemetryCommands(const std::vector<std::unique_ptr<Worker>>& workers,
                                     const std::vector<PortInfo>& ports, const Control& control,
                                     const SnapshotPublisher& publisher) {
  static std::once_flag once;
  std::call_once(once, register_commands);
  Sources& s = sources();
  std::lock_guard attach(s.mutex);
  s.workers = &workers;
  s.ports = &ports;
  s.control = &control;
  s.publisher = &publisher;
}

TelemetryCommands::~TelemetryCommands() {
  Sources& s = sources();
  std::lock_guard attach(s.mutex);
  s.workers = nullptr;
  s.ports = nullptr;
  s.control = nullptr;
  s.publisher = nullptr;
}

std::unique_ptr<TelemetryCommands> register_telemetry(
    const std::vector<std::unique_ptr<Worker>>& workers, const std::vector<PortInfo>& ports,
    const Control& control, const SnapshotPublisher& publisher) {
  return std::make_unique<TelemetryCommands>(workers, ports, control, publisher);
}

}  // namespace l4lb
