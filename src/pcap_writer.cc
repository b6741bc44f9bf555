#include "src/pcap_writer.h"

namespace l4lb {

namespace {

// libpcap's file format: the nanosecond-resolution magic, version 2.4, written in host
// byte order (readers detect the order from the magic).
constexpr uint32_t kMagicNanoseconds = 0xa1b23c4d;
constexpr uint32_t kLinkTypeEthernet = 1;

struct FileHeader {
  uint32_t magic = kMagicNanoseconds;
  uint16_t version_major = 2;
  uint16_t version_minor = 4;
  int32_t thiszone = 0;
  uint32_t sigfigs = 0;
  uint32_t snaplen = 0;
  uint32_t network = kLinkTypeEthernet;
};

struct RecordHeader {
  uint32_t ts_sec;
  uint32_t ts_nsec;
  uint32_t incl_len;
  uint32_t orig_len;
};

static_assert(sizeof(FileHeader) == 24 && sizeof(RecordHeader) == 16);

}  // namespace

PcapWriter::PcapWriter(uint32_t snaplen) : PcapWriter(snaplen, nullptr) {}

PcapWriter::PcapWriter(uint32_t snaplen, std::FILE* file) : file_(file) {
  FileHeader h;
  h.snaplen = snaplen;
  put(&h, sizeof h);
}

void PcapWriter::add(int64_t unix_ns, const void* data, uint32_t len, uint32_t wire_len) {
  if (unix_ns < 0) unix_ns = 0;
  RecordHeader r{static_cast<uint32_t>(unix_ns / 1000000000),
                 static_cast<uint32_t>(unix_ns % 1000000000), len, wire_len};
  put(&r, sizeof r);
  put(data, len);
}

void PcapWriter::put(const void* data, size_t len) {
  if (file_ == nullptr) {
    bytes_.append(static_cast<const char*>(data), len);
  } else if (std::fwrite(data, 1, len, file_) != len) {
    failed_ = true;
  }
}

}  // namespace l4lb
