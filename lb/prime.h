// Primality for Maglev table sizes (the paper requires M prime). Any thread.
#pragma once

#include <cstdint>

namespace l4lb {

constexpr bool is_prime(uint64_t n) {
  if (n < 2) return false;
  for (uint64_t d = 2; d * d <= n; ++d) {
    if (n % d == 0) return false;
  }
  return true;
}

}  // namespace l4lb
