// Frame parser and encoder for the tinyfarm wire protocol (layout in tinyfarm_protocol.h).
//
// The parser is fed one byte at a time and keeps every byte of the current candidate frame in a
// single buffer, so "drop the header and rescan from sync+1" (spec: receiver rules) is a move of
// the window start, never a second buffer: RAM cost is one frame (header + max payload + CRC).
#pragma once
#include <cstddef>
#include <cstdint>

#include "protocol/tinyfarm_protocol.h"

namespace tf {

struct FrameEvent {
  enum Kind : uint8_t {
    kNeedMore,         // feed more bytes
    kFrame,            // a complete frame with a good CRC: header fields + payload
    kCrcMismatch,      // header good, payload CRC bad: answer CRC_MISMATCH with type/seq
    kTooLarge,         // header good, length > max payload: answer PAYLOAD_TOO_LARGE with type/seq
  };
  Kind kind = kNeedMore;
  uint8_t type = 0;
  uint8_t flags = 0;
  uint16_t seq = 0;
  uint16_t length = 0;
  const uint8_t* payload = nullptr;  // valid until the next call to next() or push()
};

struct ParserStats {
  uint32_t frames = 0;
  uint32_t crc_errors = 0;
  uint32_t header_errors = 0;   // hcrc failures
  uint32_t too_large = 0;
  uint32_t skipped_bytes = 0;   // bytes dropped while hunting for sync
};

class FrameParser {
 public:
  // `buf` must hold TFP_FRAME_OVERHEAD + max_payload bytes.
  FrameParser(uint8_t* buf, size_t capacity, uint16_t max_payload);

  // Frames longer than this are dropped (the negotiated limit; never above the buffer's).
  void set_max_payload(uint16_t max_payload);
  uint16_t max_payload() const { return max_payload_; }

  // Append one received byte. Call after next() returned kNeedMore.
  void push(uint8_t byte);

  // Consume the previous event's bytes and scan for the next one.
  FrameEvent next();

  void clear() { start_ = end_ = 0; pending_consume_ = 0; }
  const ParserStats& stats() const { return stats_; }

 private:
  void drop(size_t n);

  uint8_t* buf_;
  size_t capacity_;
  uint16_t buffer_max_payload_;
  uint16_t max_payload_;
  size_t start_ = 0;            // first byte of the candidate frame
  size_t end_ = 0;              // one past the last buffered byte
  size_t pending_consume_ = 0;  // bytes of the last returned event to drop on the next call
  ParserStats stats_;
};

// Fill in sync, header and CRC around a payload already written at frame + TFP_HEADER_BYTES.
// Returns the total frame length.
size_t finish_frame(uint8_t* frame, uint8_t type, uint8_t flags, uint16_t seq, uint16_t length);

// Copying variant: writes a complete frame for `payload` into `out` (capacity checked).
// Returns 0 when it does not fit.
size_t encode_frame(uint8_t* out, size_t capacity, uint8_t type, uint8_t flags, uint16_t seq,
                    const uint8_t* payload, uint16_t length);

}  // namespace tf
