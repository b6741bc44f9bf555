#include "lb/acl.h"

#include <algorithm>
#include <cassert>
#include <tuple>

namespace l4lb {

namespace {

struct Range {
  uint32_t first;  // network
  uint32_t last;   // broadcast: the last address inside
  uint8_t len;
  int32_t index;
};

}  // namespace

SourceRanges::SourceRanges(std::span<const Ipv4Prefix> prefixes) : size_(prefixes.size()) {
  if (prefixes.empty()) return;

  std::vector<Range> ranges;
  ranges.reserve(prefixes.size());
  for (size_t i = 0; i < prefixes.size(); ++i) {
    const Ipv4Prefix& p = prefixes[i];
    assert(p.len <= 32 && "prefix length validated by the config parser");
    // Clamped as well, so that a release build stays well defined on a bad caller.
    Ipv4Prefix q{p.addr, std::min<uint8_t>(p.len, 32)};
    ranges.push_back({q.network(), q.network() | ~q.mask(), q.len, static_cast<int32_t>(i)});
  }
  // Outer before inner: by start, then shortest first; a duplicate's first index first.
  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) {
    return std::tie(a.first, a.len, a.index) < std::tie(b.first, b.len, b.index);
  });

  // Every start and every end + 1 is where the answer may change; 0 anchors the search.
  starts_.reserve(2 * ranges.size() + 1);
  starts_.push_back(0);
  for (const Range& r : ranges) {
    starts_.push_back(r.first);
    if (r.last != UINT32_MAX) starts_.push_back(r.last + 1);
  }
  std::sort(starts_.begin(), starts_.end());
  starts_.erase(std::unique(starts_.begin(), starts_.end()), starts_.end());

  // Sweep the interval starts in order keeping the chain of prefixes that contain the
  // current point, innermost on top. Prefixes never partly overlap, so the ones that have
  // ended are always on top, and the top is the longest match for the whole interval.
  std::vector<const Range*> open;
  answers_.reserve(starts_.size());
  size_t next = 0;
  for (uint32_t x : starts_) {
    while (!open.empty() && open.back()->last < x) open.pop_back();
    for (; next < ranges.size() && ranges[next].first == x; ++next) {
      // Of duplicates only the first (lowest index) counts: a later one would shadow it.
      if (!open.empty() && open.back()->first == x && open.back()->len == ranges[next].len) {
        continue;
      }
      open.push_back(&ranges[next]);
    }
    answers_.push_back(open.empty() ? -1 : open.back()->index);
  }

  // Neighbouring intervals with the same answer are one interval: fewer search steps.
  size_t out = 0;
  for (size_t i = 0; i < starts_.size(); ++i) {
    if (out > 0 && answers_[out - 1] == answers_[i]) continue;
    starts_[out] = starts_[i];
    answers_[out] = answers_[i];
    ++out;
  }
  starts_.resize(out);
  answers_.resize(out);
  starts_.shrink_to_fit();
  answers_.shrink_to_fit();
}

}  // namespace l4lb
