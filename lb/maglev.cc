#include "lb/maglev.h"

#include <algorithm>
#include <cassert>

#include "lb/flow_key.h"
#include "lb/prime.h"

namespace l4lb {
namespace {

// Fixed seeds for a backend's offset and skip (section 3.4 uses two different hash functions
// h1, h2 of the backend name). Fixed, not random, so that every l4lb instance and every
// restart builds the same table and instances behind ECMP agree. Changing either re-maps
// every flow; never do it lightly.
constexpr uint64_t kOffsetSeed = 0x6f66667365743a31ULL;  // "offset:1"
constexpr uint64_t kSkipSeed = 0x736b69703a3a3a32ULL;    // "skip:::2"

// Where a backend is in its preference list: permutation[j] = (offset + j * skip) % M.
// Kept as the current position, advanced by skip, so the builder needs O(N) state instead
// of the paper's N x M permutation matrix.
struct Cursor {
  uint32_t pos;
  uint32_t skip;
  // pos + skip < 2M, so one conditional subtraction replaces a division per probe.
  void advance(uint32_t m) {
    const uint64_t next = uint64_t{pos} + skip;
    pos = static_cast<uint32_t>(next >= m ? next - m : next);
  }
};

}  // namespace

MaglevTable::MaglevTable(std::span<const MaglevBackend> backends, uint32_t size)
    : backends_(backends.begin(), backends.end()) {
  assert(is_prime(size) && "Maglev table size must be prime");
  assert(backends_.size() <= kMaxBackends);
  std::sort(backends_.begin(), backends_.end(),
            [](const MaglevBackend& a, const MaglevBackend& b) { return a.ip < b.ip; });
  assert(std::adjacent_find(backends_.begin(), backends_.end(),
                            [](const MaglevBackend& a, const MaglevBackend& b) {
                              return a.ip == b.ip;
                            }) == backends_.end() &&
         "duplicate backend ip");

  slots_.assign(size, kEmptySlot);

  // Backends that take turns, heaviest first (ties in canonical order), so that in sub-turn t
  // of a round the backends with weight > t are a prefix of this list.
  std::vector<uint16_t> active;
  for (size_t i = 0; i < backends_.size(); ++i) {
    if (backends_[i].weight > 0) active.push_back(static_cast<uint16_t>(i));
  }
  empty_ = active.empty();
  if (empty_) return;
  std::stable_sort(active.begin(), active.end(), [this](uint16_t a, uint16_t b) {
    return backends_[a].weight > backends_[b].weight;
  });

  // skip in [1, M-1] and M prime make each permutation a single cycle over all slots, so a
  // backend always finds a free slot while any is left and the loop below terminates.
  std::vector<Cursor> cursor(backends_.size());
  for (uint16_t i : active) {
    const uint64_t ip = backends_[i].ip;
    cursor[i].pos = static_cast<uint32_t>(mix64(ip ^ kOffsetSeed) % size);
    cursor[i].skip = static_cast<uint32_t>(mix64(ip ^ kSkipSeed) % (size - 1) + 1);
  }

  // Populate (section 3.4, Pseudocode 1): backends take turns claiming their next preferred
  // slot that is still free. The weighted form gives each backend `weight` turns per round;
  // turns are interleaved (sub-turn t serves every backend with weight > t) rather than
  // consecutive, so the final, partial round shortchanges backends evenly. Expected cost is
  // O(M log M) probes overall: the coupon-collector bound of the paper.
  uint32_t filled = 0;
  while (filled < size) {
    for (uint32_t t = 0; filled < size && backends_[active[0]].weight > t; ++t) {
      for (size_t k = 0; k < active.size() && backends_[active[k]].weight > t; ++k) {
        const uint16_t b = active[k];
        Cursor& c = cursor[b];
        while (slots_[c.pos] != kEmptySlot) {
          c.advance(size);
        }
        slots_[c.pos] = b;
        c.advance(size);
        if (++filled == size) break;
      }
    }
  }
}

std::vector<uint32_t> MaglevTable::slot_counts() const {
  std::vector<uint32_t> counts(backends_.size(), 0);
  if (empty_) return counts;
  for (uint16_t s : slots_) ++counts[s];
  return counts;
}

uint32_t maglev_slots_changed(const MaglevTable& before, const MaglevTable& after) {
  assert(before.size() == after.size() && "tables of different sizes");
  if (before.size() != after.size()) return std::max(before.size(), after.size());
  const auto& bb = before.backends();
  const auto& ab = after.backends();
  uint32_t changed = 0;
  for (uint32_t i = 0; i < before.size(); ++i) {
    const uint16_t x = before.slots()[i];
    const uint16_t y = after.slots()[i];
    const bool x_empty = x == MaglevTable::kEmptySlot;
    const bool y_empty = y == MaglevTable::kEmptySlot;
    if (x_empty != y_empty || (!x_empty && bb[x].ip != ab[y].ip)) ++changed;
  }
  return changed;
}

}  // namespace l4lb
