// Little-endian field access for payloads: bounds-checked reads, plain writes.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace tf {

inline uint16_t load_u16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
inline uint32_t load_u32(const uint8_t* p) {
  return uint32_t{p[0]} | (uint32_t{p[1]} << 8) | (uint32_t{p[2]} << 16) | (uint32_t{p[3]} << 24);
}
inline void store_u16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}
inline void store_u32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
inline void store_u64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
inline void store_f32(uint8_t* p, float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof(bits));
  store_u32(p, bits);
}

// Appends fields to a payload buffer without ever writing past its capacity; `ok()` turns false
// once something did not fit, so a handler checks once at the end instead of after each field.
class Writer {
 public:
  Writer(uint8_t* buf, size_t cap) : buf_(buf), cap_(cap) {}
  uint8_t* reserve(size_t n) {
    if (!ok_ || cap_ - len_ < n) {
      ok_ = false;
      return nullptr;
    }
    uint8_t* p = buf_ + len_;
    len_ += n;
    return p;
  }
  void u8(uint8_t v) {
    if (uint8_t* p = reserve(1)) *p = v;
  }
  void u16(uint16_t v) {
    if (uint8_t* p = reserve(2)) store_u16(p, v);
  }
  void u32(uint32_t v) {
    if (uint8_t* p = reserve(4)) store_u32(p, v);
  }
  void u64(uint64_t v) {
    if (uint8_t* p = reserve(8)) store_u64(p, v);
  }
  void i32(int32_t v) { u32(static_cast<uint32_t>(v)); }
  void f32(float v) {
    if (uint8_t* p = reserve(4)) store_f32(p, v);
  }
  void bytes(const uint8_t* data, size_t n) {
    if (uint8_t* p = reserve(n)) std::memcpy(p, data, n);
  }
  // str8: u8 length + UTF-8 bytes; longer strings are cut at 255 bytes.
  void str8(const char* s) {
    size_t n = std::strlen(s);
    if (n > 255) n = 255;
    u8(static_cast<uint8_t>(n));
    bytes(reinterpret_cast<const uint8_t*>(s), n);
  }
  size_t size() const { return len_; }
  bool ok() const { return ok_; }

 private:
  uint8_t* buf_;
  size_t cap_;
  size_t len_ = 0;
  bool ok_ = true;
};

// Builds a short human-readable message (error payloads) without printf.
class Message {
 public:
  static constexpr size_t kCapacity = 160;
  Message& operator<<(const char* s) {
    while (*s && len_ < kCapacity - 1) text_[len_++] = *s++;
    text_[len_] = '\0';
    return *this;
  }
  Message& operator<<(uint32_t v) {
    char digits[10];
    int n = 0;
    do {
      digits[n++] = static_cast<char>('0' + v % 10);
      v /= 10;
    } while (v != 0);
    while (n > 0 && len_ < kCapacity - 1) text_[len_++] = digits[--n];
    text_[len_] = '\0';
    return *this;
  }
  Message& hex(uint32_t v) {
    *this << "0x";
    for (int shift = 28; shift >= 0; shift -= 4) {
      if (len_ < kCapacity - 1) text_[len_++] = "0123456789abcdef"[(v >> shift) & 0xFu];
    }
    text_[len_] = '\0';
    return *this;
  }
  const char* c_str() const { return text_; }

 private:
  char text_[kCapacity] = {};
  size_t len_ = 0;
};

}  // namespace tf
