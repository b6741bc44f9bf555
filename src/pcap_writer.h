// A plain pcap writer (the classic libpcap format with nanosecond timestamps, link type
// Ethernet) into memory or a file. No DPDK; control thread only.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace l4lb {

class PcapWriter {
 public:
  // Into memory: bytes() holds the file.
  explicit PcapWriter(uint32_t snaplen);
  // Into `file` (opened by the caller, closed by it).
  PcapWriter(uint32_t snaplen, std::FILE* file);

  void add(int64_t unix_ns, const void* data, uint32_t len, uint32_t wire_len);
  const std::string& bytes() const { return bytes_; }
  bool failed() const { return failed_; }  // a file write failed

 private:
  void put(const void* data, size_t len);

  std::FILE* file_ = nullptr;
  std::string bytes_;
  bool failed_ = false;
};

}  // namespace l4lb
