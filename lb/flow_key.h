// The 5-tuple of a packet as it appears on the wire, and the fixed-seed hash
// every l4lb instance uses for it (so instances behind ECMP agree). Worker-safe.
#pragma once

#include <cstdint>

#ifdef __SSE4_2__
#include <nmmintrin.h>
#endif

namespace l4lb {

// All fields in network byte order, exactly as read from the packet.
struct FlowKey {
  uint32_t src_ip;
  uint32_t dst_ip;
  uint16_t src_port;
  uint16_t dst_port;
  uint8_t proto;
  uint8_t pad[3] = {0, 0, 0};
  bool operator==(const FlowKey& o) const {
    return src_ip == o.src_ip && dst_ip == o.dst_ip && src_port == o.src_port &&
           dst_port == o.dst_port && proto == o.proto;
  }
  FlowKey reversed() const { return FlowKey{dst_ip, src_ip, dst_port, src_port, proto}; }
};
static_assert(sizeof(FlowKey) == 16);

// Fixed seed: changing it re-maps every flow on every instance; never do it lightly.
constexpr uint64_t kFlowHashSeed = 0x4c344c42'6d61676cULL;  // "L4LBmagl"

// 64-bit finaliser (MurmurHash3 fmix64); cheap and well mixed.
constexpr uint64_t mix64(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdULL;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ULL;
  k ^= k >> 33;
  return k;
}

inline uint64_t hash_flow(const FlowKey& k, uint64_t seed = kFlowHashSeed) {
  uint64_t a = (uint64_t{k.src_ip} << 32) | k.dst_ip;
  uint64_t b = (uint64_t{k.src_port} << 32) | (uint64_t{k.dst_port} << 16) | k.proto;
  return mix64(a ^ seed ^ mix64(b + seed));
}

// Which end of a key is the client's: the source of a forward key (client -> VIP:port),
// the destination of a reverse key (backend -> client). A worker tells them apart by the
// destination: a VIP only in a forward key (a client never uses a VIP as its address).
enum class ClientEnd : uint8_t { kSource, kDestination };

// The flow table's hash of a key. High 32 bits: flow_signature(), a hash of the whole key,
// the bucket signature (and the alternate bucket). Low 32 bits: hash_client_end(), a hash
// of the client's end alone (address, port, protocol), which both keys of a flow carry,
// so both have the same first bucket: a new flow reads and writes one bucket line, not
// two, and so does its removal.
// Internal to one process (it places keys in buckets; nothing else sees it, and Maglev
// picks use hash_flow()), so both halves may be CRC-32C where the build has SSE4.2 (a
// few instructions for every packet, where hash_flow() takes ~25; DPDK's builds have it)
// and hash_flow()'s mix elsewhere (the sanitizer builds of lb/).
inline uint32_t hash_client_end(const FlowKey& k, ClientEnd client) {
  const bool src = client == ClientEnd::kSource;
  const uint64_t end = (uint64_t{src ? k.src_ip : k.dst_ip} << 32) |
                       (uint64_t{src ? k.src_port : k.dst_port} << 8) | k.proto;
#ifdef __SSE4_2__
  return static_cast<uint32_t>(_mm_crc32_u64(static_cast<uint32_t>(kFlowHashSeed), end));
#else
  return static_cast<uint32_t>(mix64(end ^ kFlowHashSeed));
#endif
}
inline uint32_t flow_signature(const FlowKey& k) {
#ifdef __SSE4_2__
  const uint64_t a = (uint64_t{k.src_ip} << 32) | k.dst_ip;
  const uint64_t b = (uint64_t{k.src_port} << 32) | (uint64_t{k.dst_port} << 16) | k.proto;
  // Another seed than hash_client_end's: the two halves must not move together.
  const uint64_t crc = _mm_crc32_u64(_mm_crc32_u64(kFlowHashSeed >> 32, a), b);
  return static_cast<uint32_t>(crc);
#else
  return static_cast<uint32_t>(hash_flow(k) >> 32);
#endif
}
inline uint64_t hash_flow_key(const FlowKey& k, ClientEnd client) {
  return (uint64_t{flow_signature(k)} << 32) | hash_client_end(k, client);
}

// sessionAffinity: ClientIP hashes the client address alone.
inline uint64_t hash_client_ip(uint32_t client_ip_be, uint64_t seed = kFlowHashSeed) {
  return mix64(uint64_t{client_ip_be} ^ seed);
}

}  // namespace l4lb
