// Maglev consistent-hashing lookup table for one Service port (Eisenbud et al., NSDI 2016).
// Built on the control thread only; once built it is immutable, and lookup() is worker-safe
// (noexcept, no allocation), read through the RCU-published snapshot.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace l4lb {

struct MaglevBackend {
  uint32_t ip = 0;      // host byte order; the backend's identity within one Service port
  uint32_t weight = 1;  // 0 = takes no new flows (drain); config allows 0..1000
  bool operator==(const MaglevBackend&) const = default;
};

// Maglev lookup table for one Service port (section 3.4), built by the control thread,
// immutable afterwards, read by workers.
//
// Each backend walks its own permutation of the slots, derived only from its ip, so a
// backend's preferences do not depend on who else is in the pool; that is what keeps the
// number of slots that move on a pool change small (section 3.4, "minimal disruption").
// Weights (section 3.4 notes the extension): every round each backend takes as many turns
// as its weight, so slot shares follow weights.
class MaglevTable {
 public:
  static constexpr uint32_t kDefaultSize = 65537;
  static constexpr uint16_t kEmptySlot = 0xffff;
  // Slot values are uint16_t indices and kEmptySlot is reserved.
  static constexpr size_t kMaxBackends = 65535;

  // Backends in any order; duplicates (same ip) and more than kMaxBackends are caller errors
  // (assert). size must be prime (assert; the config loader validates it): the permutations
  // below only visit every slot when skip and size are coprime. Backends are sorted into
  // canonical order (by ip) first, so the table does not depend on input order.
  explicit MaglevTable(std::span<const MaglevBackend> backends, uint32_t size = kDefaultSize);
  // Empty table: size 0, lookup returns -1.
  MaglevTable() = default;

  // Canonical order (ascending ip); slot values index into this vector. Weight-0 backends
  // stay here so indices of the others do not shift when one is drained.
  const std::vector<MaglevBackend>& backends() const { return backends_; }
  uint32_t size() const { return static_cast<uint32_t>(slots_.size()); }
  // True when no backend has weight > 0 (every lookup returns -1).
  bool empty() const { return empty_; }

  // The slot a flow hash picks: its high 32 bits scaled to [0, size()) (multiply-shift
  // range reduction, Lemire 2019), not hash % size(): a 64-bit division costs tens of
  // cycles, twice per new flow. As uniform, and the same on every instance.
  uint32_t slot_of(uint64_t hash) const noexcept {
    return static_cast<uint32_t>(((hash >> 32) * slots_.size()) >> 32);
  }
  // Index into backends() of the backend for this flow hash, or -1 when empty().
  int lookup(uint64_t hash) const noexcept {
    if (empty_) return -1;
    return slots_[slot_of(hash)];
  }

  // Always size() entries: all kEmptySlot when empty(), none kEmptySlot otherwise.
  std::span<const uint16_t> slots() const { return slots_; }
  // Number of slots each canonical backend owns (same order as backends()).
  std::vector<uint32_t> slot_counts() const;

 private:
  std::vector<MaglevBackend> backends_;
  std::vector<uint16_t> slots_;
  bool empty_ = true;
};

// Slots whose owner differs between two tables of the same size (Katran-style delta), for
// tests and reload logs. Owners are compared by backend ip, not index, since indices shift
// when the pool changes; an empty slot is an owner of its own. Tables of different sizes
// are a caller error (assert); without asserts every slot counts as changed.
uint32_t maglev_slots_changed(const MaglevTable& before, const MaglevTable& after);

}  // namespace l4lb
