#include "lb/service_table.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "lb/flow_key.h"
#include "nat/headers.h"

namespace l4lb {
namespace {

constexpr uint32_t kVip = 0xac100c64;  // 172.16.12.100

BackendSpec backend(uint32_t ip, uint32_t weight = 1) { return BackendSpec{ip, weight, {}}; }
ServicePortSpec port(const char* name, uint8_t proto, uint16_t port, uint16_t target) {
  return ServicePortSpec{name, proto, port, target, 0};
}

std::vector<ServiceSpec> two_services() {
  ServiceSpec web{"frontend", kVip, {port("http", kIpProtoTcp, 80, 8080), port("https", kIpProtoTcp, 443, 8443)},
                  {Ipv4Prefix{0xcb007100, 24}}, false,
                  {backend(0x0a04010b), backend(0x0a04010c), backend(0x0a04010d)}, false};
  ServiceSpec dns{"dns", kVip + 1, {port("dns", kIpProtoUdp, 53, 5353)}, {}, true,
                  {backend(0x0a04010b), backend(0x0a04010c)}, false};
  return {web, dns};
}

TEST(ServiceTable, FindsServicePortsByVipProtocolAndPort) {
  ServiceTable t(two_services(), 251);
  ASSERT_EQ(t.size(), 3u);
  const ServicePort* http = t.find(hton32(kVip), kIpProtoTcp, hton16(80));
  ASSERT_NE(http, nullptr);
  EXPECT_EQ(http->service, "frontend");
  EXPECT_EQ(http->name, "http");
  EXPECT_EQ(http->target_port_be, hton16(8080));
  EXPECT_EQ(t.find(hton32(kVip), kIpProtoUdp, hton16(80)), nullptr);
  EXPECT_EQ(t.find(hton32(kVip), kIpProtoTcp, hton16(81)), nullptr);
  EXPECT_EQ(t.find(hton32(kVip + 1), kIpProtoTcp, hton16(53)), nullptr);
  EXPECT_NE(t.find(hton32(kVip + 1), kIpProtoUdp, hton16(53)), nullptr);
  EXPECT_TRUE(t.is_vip(hton32(kVip)));
  EXPECT_TRUE(t.is_vip(hton32(kVip + 1)));
  EXPECT_FALSE(t.is_vip(hton32(kVip + 2)));
}

// The VIP set is probed for every packet; exact at any size, with shared VIPs (several
// Services on one address), neighbouring addresses and 0.0.0.0.
TEST(ServiceTable, IsVipExactlyForConfiguredAddresses) {
  EXPECT_FALSE(ServiceTable({}, 251).is_vip(hton32(kVip)));
  for (uint32_t n : {1u, 7u, 1000u, 4096u}) {
    std::vector<ServiceSpec> specs;
    for (uint32_t i = 0; i < n; ++i) {
      // Every third address twice (two Services on one VIP), spread over a /16 and beyond.
      const uint32_t vip = kVip + i * 97;
      const int copies = i % 3 == 0 ? 2 : 1;
      for (int c = 0; c < copies; ++c) {
        specs.push_back(ServiceSpec{std::to_string(i * 2 + c),
                                    vip,
                                    {port("p", kIpProtoTcp, static_cast<uint16_t>(80 + c), 8080)},
                                    {},
                                    false,
                                    {backend(0x0a04010b)},
                                    false});
      }
    }
    ServiceTable t(specs, 251);
    for (uint32_t i = 0; i < n; ++i) {
      ASSERT_TRUE(t.is_vip(hton32(kVip + i * 97))) << n << " " << i;
      for (uint32_t off : {1u, 96u, 0x01000000u}) {
        ASSERT_FALSE(t.is_vip(hton32(kVip + i * 97 + off))) << n << " " << i << " " << off;
      }
    }
    EXPECT_FALSE(t.is_vip(0));
  }
}

TEST(ServiceTable, AclAppliesOnlyWhereRangesAreSet) {
  ServiceTable t(two_services(), 251);
  const ServicePort* http = t.find(hton32(kVip), kIpProtoTcp, hton16(80));
  EXPECT_TRUE(http->allows(hton32(0xcb007105)));
  EXPECT_FALSE(http->allows(hton32(0xcb007205)));
  const ServicePort* dns = t.find(hton32(kVip + 1), kIpProtoUdp, hton16(53));
  EXPECT_TRUE(dns->allows(hton32(0x01020304)));
}

TEST(ServiceTable, PicksABackendAndClientIpAffinityIgnoresPorts) {
  ServiceTable t(two_services(), 251);
  const ServicePort* dns = t.find(hton32(kVip + 1), kIpProtoUdp, hton16(53));
  const uint32_t client = hton32(0x0a000002);
  int first = dns->pick(hash_flow(FlowKey{client, dns->vip_be, hton16(1000), dns->port_be, 17}), client);
  ASSERT_GE(first, 0);
  for (uint16_t sport = 1001; sport < 1100; ++sport) {
    FlowKey k{client, dns->vip_be, hton16(sport), dns->port_be, 17};
    EXPECT_EQ(dns->pick(hash_flow(k), client), first);
  }
  const ServicePort* http = t.find(hton32(kVip), kIpProtoTcp, hton16(80));
  std::set<int> used;
  for (uint16_t sport = 1000; sport < 1300; ++sport) {
    FlowKey k{client, http->vip_be, hton16(sport), http->port_be, 6};
    used.insert(http->pick(hash_flow(k), client));
  }
  EXPECT_EQ(used.size(), 3u);
}

TEST(ServiceTable, EndpointMapIsUniqueOrAmbiguous) {
  ServiceTable t(two_services(), 251);
  // 10.4.1.13:8080/TCP belongs to frontend/http alone.
  uint32_t i = t.find_endpoint(hton32(0x0a04010d), kIpProtoTcp, hton16(8080));
  ASSERT_LT(i, t.size());
  EXPECT_EQ(t.ports()[i].name, "http");
  EXPECT_EQ(t.find_endpoint(hton32(0x0a04010d), kIpProtoTcp, hton16(9999)), ServiceTable::kNotFound);
  // Two Services sharing an endpoint make it ambiguous.
  auto specs = two_services();
  specs.push_back(ServiceSpec{"other", kVip + 2, {port("web", kIpProtoTcp, 80, 8080)}, {}, false,
                              {backend(0x0a04010d)}, false});
  ServiceTable shared(specs, 251);
  EXPECT_EQ(shared.find_endpoint(hton32(0x0a04010d), kIpProtoTcp, hton16(8080)),
            ServiceTable::kAmbiguous);
}

TEST(ServiceTable, NoBackendsMeansNoPick) {
  ServiceTable t({ServiceSpec{"empty", kVip, {port("http", kIpProtoTcp, 80, 80)}, {}, false, {}, false}}, 251);
  const ServicePort* sp = t.find(hton32(kVip), kIpProtoTcp, hton16(80));
  ASSERT_NE(sp, nullptr);
  EXPECT_EQ(sp->pick(12345, 0), -1);
}

TEST(ServiceTable, HasBackendKeepsDrainedAndDropsRemovedOrRetargeted) {
  auto specs = two_services();
  specs[0].backends[2].weight = 0;  // draining: no new flows, still listed
  ServiceTable t(specs, 251);
  const ServicePort* http = t.find(hton32(kVip), kIpProtoTcp, hton16(80));
  EXPECT_TRUE(http->has_backend(hton32(0x0a04010b), hton16(8080)));
  EXPECT_TRUE(http->has_backend(hton32(0x0a04010d), hton16(8080)));
  EXPECT_FALSE(http->has_backend(hton32(0x0a04010e), hton16(8080)));
  EXPECT_FALSE(http->has_backend(hton32(0x0a04010b), hton16(9090)));
  for (uint16_t sport = 1000; sport < 1300; ++sport) {
    FlowKey k{hton32(0x0a000002), http->vip_be, hton16(sport), http->port_be, 6};
    EXPECT_NE(http->backend_ips_be[http->pick(hash_flow(k), 0)], hton32(0x0a04010d));
  }
}

TEST(ServiceTable, ReusesMaglevTablesWhoseBackendsDidNotChange) {
  auto specs = two_services();
  ServiceTable first(specs, 251);
  EXPECT_EQ(first.maglev_built(), 2u);  // one per Service, shared by its ports
  EXPECT_EQ(first.ports()[0].maglev, first.ports()[1].maglev);
  ServiceTable same(specs, 251, &first);
  EXPECT_EQ(same.maglev_built(), 0u);
  EXPECT_EQ(same.maglev_reused(), 2u);
  EXPECT_EQ(same.ports()[0].maglev, first.ports()[0].maglev);
  specs[1].backends.push_back(backend(0x0a04010e));  // dns gains a backend
  std::reverse(specs[0].backends.begin(), specs[0].backends.end());  // order does not matter
  ServiceTable changed(specs, 251, &same);
  EXPECT_EQ(changed.maglev_built(), 1u);
  EXPECT_EQ(changed.maglev_reused(), 1u);
  EXPECT_EQ(changed.ports()[0].maglev, first.ports()[0].maglev);
  EXPECT_NE(changed.ports()[2].maglev, first.ports()[2].maglev);
  specs[0].backends[0].weight = 2;  // a weight change rebuilds
  EXPECT_EQ(ServiceTable(specs, 251, &changed).maglev_built(), 1u);
  EXPECT_EQ(ServiceTable(specs, 257, &changed).maglev_built(), 2u);  // so does the size
}

}  // namespace
}  // namespace l4lb
