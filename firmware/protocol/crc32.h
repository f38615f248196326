// CRC-32 (IEEE 802.3, reflected, poly 0xEDB88320) -- identical to zlib.crc32 on the host.
#pragma once
#include <cstddef>
#include <cstdint>

namespace tf {

// Continue a CRC over more bytes: crc32_update(crc32_update(0, a), b) == crc32(a || b).
uint32_t crc32_update(uint32_t crc, const uint8_t* data, size_t n);

inline uint32_t crc32(const uint8_t* data, size_t n) { return crc32_update(0, data, n); }

}  // namespace tf
