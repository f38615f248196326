#include "protocol/frame.h"

#include <cstring>

#include "protocol/crc32.h"
#include "protocol/wire.h"

namespace tf {

FrameParser::FrameParser(uint8_t* buf, size_t capacity, uint16_t max_payload)
    : buf_(buf), capacity_(capacity) {
  const size_t room = capacity > TFP_FRAME_OVERHEAD ? capacity - TFP_FRAME_OVERHEAD : 0;
  buffer_max_payload_ = static_cast<uint16_t>(room > TFP_MAX_PAYLOAD_LIMIT ? TFP_MAX_PAYLOAD_LIMIT
                                                                             : room);
  set_max_payload(max_payload);
}

void FrameParser::set_max_payload(uint16_t max_payload) {
  max_payload_ = max_payload < buffer_max_payload_ ? max_payload : buffer_max_payload_;
}

void FrameParser::push(uint8_t byte) {
  if (end_ == capacity_) {
    // Move the candidate to the front. It is always shorter than a whole frame when more bytes
    // are wanted, so this makes room; the guard below only protects against misuse.
    const size_t held = end_ - start_;
    std::memmove(buf_, buf_ + start_, held);
    start_ = 0;
    end_ = held;
    if (end_ == capacity_) drop(1);
  }
  buf_[end_++] = byte;
}

void FrameParser::drop(size_t n) {
  start_ += n;
  if (start_ >= end_) start_ = end_ = 0;
}

FrameEvent FrameParser::next() {
  if (pending_consume_ != 0) {
    drop(pending_consume_);
    pending_consume_ = 0;
  }
  FrameEvent ev;
  for (;;) {
    const size_t held = end_ - start_;
    const uint8_t* f = buf_ + start_;
    if (held >= 1 && f[0] != TFP_SYNC0) {
      ++stats_.skipped_bytes;
      drop(1);
      continue;
    }
    if (held >= 2 && f[1] != TFP_SYNC1) {
      ++stats_.skipped_bytes;
      drop(1);
      continue;
    }
    if (held < TFP_HEADER_BYTES) return ev;  // kNeedMore

    const uint16_t hcrc = load_u16(f + TFP_HDR_HCRC_OFFSET);
    const uint32_t hcrc_calc = crc32(f + TFP_HCRC_SPAN_OFFSET, TFP_HCRC_SPAN_BYTES);
    if (hcrc != static_cast<uint16_t>(hcrc_calc & 0xFFFFu)) {
      ++stats_.header_errors;
      drop(1);  // rescan from sync+1
      continue;
    }
    ev.type = f[TFP_HDR_TYPE_OFFSET];
    ev.flags = f[TFP_HDR_FLAGS_OFFSET];
    ev.seq = load_u16(f + TFP_HDR_SEQ_OFFSET);
    ev.length = load_u16(f + TFP_HDR_LENGTH_OFFSET);
    if (ev.length > max_payload_) {
      ++stats_.too_large;
      ev.kind = FrameEvent::kTooLarge;
      pending_consume_ = 1;  // rescan from sync+1
      return ev;
    }
    const size_t total = TFP_FRAME_OVERHEAD + size_t{ev.length};
    if (held < total) {
      ev = FrameEvent{};
      return ev;  // kNeedMore
    }
    const size_t covered = TFP_HEADER_BYTES - TFP_SYNC_BYTES + size_t{ev.length};
    const uint32_t crc = crc32(f + TFP_SYNC_BYTES, covered);
    if (crc != load_u32(f + TFP_HEADER_BYTES + ev.length)) {
      ++stats_.crc_errors;
      ev.kind = FrameEvent::kCrcMismatch;
      pending_consume_ = 1;  // rescan from sync+1 of the bad frame
      return ev;
    }
    ++stats_.frames;
    ev.kind = FrameEvent::kFrame;
    ev.payload = f + TFP_HEADER_BYTES;
    pending_consume_ = total;
    return ev;
  }
}

size_t finish_frame(uint8_t* frame, uint8_t type, uint8_t flags, uint16_t seq, uint16_t length) {
  frame[0] = TFP_SYNC0;
  frame[1] = TFP_SYNC1;
  frame[TFP_HDR_TYPE_OFFSET] = type;
  frame[TFP_HDR_FLAGS_OFFSET] = flags;
  store_u16(frame + TFP_HDR_SEQ_OFFSET, seq);
  store_u16(frame + TFP_HDR_LENGTH_OFFSET, length);
  store_u16(frame + TFP_HDR_HCRC_OFFSET,
            static_cast<uint16_t>(crc32(frame + TFP_HCRC_SPAN_OFFSET, TFP_HCRC_SPAN_BYTES)));
  const size_t covered = TFP_HEADER_BYTES - TFP_SYNC_BYTES + size_t{length};
  store_u32(frame + TFP_HEADER_BYTES + length, crc32(frame + TFP_SYNC_BYTES, covered));
  return TFP_FRAME_OVERHEAD + size_t{length};
}

size_t encode_frame(uint8_t* out, size_t capacity, uint8_t type, uint8_t flags, uint16_t seq,
                    const uint8_t* payload, uint16_t length) {
  if (capacity < TFP_FRAME_OVERHEAD + size_t{length}) return 0;
  if (length != 0) std::memmove(out + TFP_HEADER_BYTES, payload, length);
  return finish_frame(out, type, flags, seq, length);
}

}  // namespace tf
