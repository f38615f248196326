// SHA-256 (FIPS 180-4), streaming. Used to verify an uploaded model before it is ever used.
#pragma once
#include <cstddef>
#include <cstdint>

namespace tf {

class Sha256 {
 public:
  static constexpr size_t kDigestBytes = 32;

  Sha256() { reset(); }
  void reset();
  void update(const uint8_t* data, size_t n);
  void finish(uint8_t digest[kDigestBytes]);

  static void hash(const uint8_t* data, size_t n, uint8_t digest[kDigestBytes]) {
    Sha256 h;
    h.update(data, n);
    h.finish(digest);
  }

 private:
  void compress(const uint8_t block[64]);

  uint32_t state_[8];
  uint64_t total_bytes_;
  uint8_t block_[64];
  size_t block_fill_;
};

}  // namespace tf
