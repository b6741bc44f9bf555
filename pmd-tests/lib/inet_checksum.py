"""RFC 1071 one's-complement checksum for the test frame builders (malformed_test.py,
lib/syn_flood.py)."""
import struct


def csum(data: bytes) -> int:
    """RFC 1071 one's-complement checksum, ready to store."""
    if len(data) % 2:
        data += b"\x00"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF
