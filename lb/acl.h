// A Service's source-range ACL (Kubernetes loadBalancerSourceRanges): an immutable set of
// IPv4 prefixes with longest-prefix match. Built by the control thread (allocates), then
// shared read-only with workers through the snapshot; match() is worker-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "lb/cidr.h"

namespace l4lb {

// Prefixes are nested or disjoint, so their start and end points cut the address space into
// at most 2n+1 intervals on which the longest match is constant. The set stores the interval
// starts in one sorted array, each with its precomputed answer, and a lookup is one binary
// search: "binary search on prefix ranges" (Lampson, Srinivasan, Varghese, "IP lookups using
// multiway and multicolumn search", IEEE/ACM ToN 7(3), 1999, section III).
// Cost: match() is ceil(log2(intervals)) branch-free steps over a contiguous array, whatever
// the lengths: 11 steps (16 KiB) for 1,000 prefixes, 1 step for one prefix. That is fewer
// probes than one hash probe per distinct length once a set mixes more than about
// log2(2n+1) lengths, and every step is a predictable load. Construction: O(n log n).
class SourceRanges {
 public:
  SourceRanges() = default;  // empty set: matches nothing

  // Prefixes in host byte order with len <= 32 (the config parser guarantees it); host bits
  // are ignored (masked off). Duplicates are allowed; the first occurrence is the one
  // reported by match().
  explicit SourceRanges(std::span<const Ipv4Prefix> prefixes);

  bool empty() const noexcept { return size_ == 0; }
  size_t size() const noexcept { return size_; }  // number of prefixes given, duplicates too

  // Index, in the constructor's input order, of the longest prefix containing ip, or -1.
  // ip in network byte order, as read from the packet. No allocation.
  int match(uint32_t ip_be) const noexcept {
    if (starts_.empty()) return -1;
    uint32_t ip = ntoh32(ip_be);
    // Last start <= ip. starts_[0] == 0, so one always exists. The loop runs a fixed number
    // of times for a given set and the compare becomes a conditional move: no mispredicts.
    const uint32_t* base = starts_.data();
    size_t n = starts_.size();
    while (n > 1) {
      size_t half = n / 2;
      base = base[half] <= ip ? base + half : base;
      n -= half;
    }
    return answers_[static_cast<size_t>(base - starts_.data())];
  }
  bool contains(uint32_t ip_be) const noexcept { return match(ip_be) >= 0; }

 private:
  std::vector<uint32_t> starts_;  // ascending interval starts, starts_[0] == 0; empty if no prefix
  std::vector<int32_t> answers_;  // per interval: input index of the longest match, or -1
  size_t size_ = 0;
};

}  // namespace l4lb
