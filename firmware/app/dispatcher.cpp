#include "app/dispatcher.h"

#include <cstring>

#include "engine/engine.h"
#include "protocol/sha256.h"
#include "protocol/tinyfarm_protocol.h"

namespace tf {

Dispatcher::Dispatcher(const DeviceConfig& config, FrameParser& parser, uint8_t* tx,
                       size_t tx_capacity)
    : config_(config), parser_(parser), tx_(tx), tx_capacity_(tx_capacity),
      negotiated_payload_(config.max_payload) {
  parser_.set_max_payload(config.max_payload);
}

void Dispatcher::report_fault(const char* message) {
  fault_message_ = Message();
  fault_message_ << message;
  fault_pending_ = true;
}

size_t Dispatcher::payload_room() const {
  const size_t room = tx_capacity_ - TFP_FRAME_OVERHEAD;
  return room < negotiated_payload_ ? room : negotiated_payload_;
}

Reply Dispatcher::on_event(const FrameEvent& ev) {
  switch (ev.kind) {
    case FrameEvent::kNeedMore:
      return Reply{};
    case FrameEvent::kCrcMismatch:
      if (ev.flags & TFP_FLAG_RESPONSE) return Reply{};
      return nak(ev, TFP_ERR_CRC_MISMATCH, "frame CRC mismatch; retransmit");
    case FrameEvent::kTooLarge: {
      if (ev.flags & TFP_FLAG_RESPONSE) return Reply{};
      Message m;
      m << "payload of " << uint32_t{ev.length} << " bytes exceeds the negotiated maximum of "
        << uint32_t{parser_.max_payload()};
      return nak(ev, TFP_ERR_PAYLOAD_TOO_LARGE, m.c_str());
    }
    case FrameEvent::kFrame:
      break;
  }
  if (ev.flags & TFP_FLAG_RESPONSE) return Reply{};  // not a request (e.g. our own echo)
  if (have_last_ && ev.seq == last_seq_ && ev.type == last_type_) {
    return Reply{tx_, last_size_, false};  // retransmission: same answer, not executed again
  }
  Reply reply = handle(ev);
  if (reply.data == tx_) {
    have_last_ = true;
    last_type_ = ev.type;
    last_seq_ = ev.seq;
    last_size_ = reply.size;
  }
  return reply;
}

Reply Dispatcher::respond(const FrameEvent& ev, size_t payload_len) {
  const size_t size = finish_frame(tx_, ev.type, TFP_FLAG_RESPONSE, ev.seq,
                                   static_cast<uint16_t>(payload_len));
  return Reply{tx_, size, false};
}

size_t Dispatcher::error_frame(uint8_t* frame, size_t cap, const FrameEvent& ev, uint16_t code,
                               const char* message) {
  Writer w(frame + TFP_HEADER_BYTES, cap - TFP_FRAME_OVERHEAD);
  w.u16(code);
  size_t n = std::strlen(message);
  const size_t room = cap - TFP_FRAME_OVERHEAD - 3;
  if (n > room) n = room;
  if (n > 255) n = 255;
  w.u8(static_cast<uint8_t>(n));
  w.bytes(reinterpret_cast<const uint8_t*>(message), n);
  return finish_frame(frame, ev.type, TFP_FLAG_RESPONSE | TFP_FLAG_ERROR, ev.seq,
                      static_cast<uint16_t>(w.size()));
}

Reply Dispatcher::fail(const FrameEvent& ev, uint16_t code, const char* message) {
  const size_t cap = TFP_FRAME_OVERHEAD + payload_room();
  return Reply{tx_, error_frame(tx_, cap, ev, code, message), false};
}

Reply Dispatcher::nak(const FrameEvent& ev, uint16_t code, const char* message) {
  return Reply{nak_, error_frame(nak_, sizeof(nak_), ev, code, message), false};
}

Reply Dispatcher::handle(const FrameEvent& ev) {
  // the handshake (HELLO, KERNELS) leaves the fault report for the next command
  if (fault_pending_ && ev.type != TFP_MSG_HELLO && ev.type != TFP_MSG_KERNELS) {
    fault_pending_ = false;
    if (ev.type != TFP_MSG_RESET) return fail(ev, TFP_ERR_DEVICE_FAULT, fault_message_.c_str());
  }
  switch (ev.type) {
    case TFP_MSG_HELLO: return hello(ev);
    case TFP_MSG_RESET:
      if (ev.length != TFP_RESET_REQ_BYTES) return fail(ev, TFP_ERR_MALFORMED, "RESET takes no payload");
      {
        engine::set_preserve(false);  // RESET forgets PRESERVE_TENSORS
        Reply r = respond(ev, 0);
        r.reset_after = true;
        return r;
      }
    case TFP_MSG_ECHO: return echo(ev);
    case TFP_MSG_KERNELS: return kernels(ev);
    case TFP_MSG_MODEL_BEGIN: return model_begin(ev);
    case TFP_MSG_MODEL_CHUNK: return model_chunk(ev);
    case TFP_MSG_MODEL_END: return model_end(ev);
    case TFP_MSG_TENSOR_INFO: return tensor_info(ev);
    case TFP_MSG_SET_INPUT: return set_input(ev);
    case TFP_MSG_INVOKE: return invoke(ev);
    case TFP_MSG_GET_OUTPUT: return get_output(ev);
    case TFP_MSG_BENCH: return bench(ev);
    case TFP_MSG_ARENA: return arena(ev);
    case TFP_MSG_DECOMPRESSION: return decompression(ev);
    case TFP_MSG_PRESERVE_TENSORS:
      if (engine::reads_tensors()) return preserve_tensors(ev);
      break;  // without the TENSORS capability: unknown, like older firmware
    case TFP_MSG_READ_TENSOR:
      if (engine::reads_tensors()) return read_tensor(ev);
      break;
    default: break;
  }
  scratch_ = Message();
  scratch_ << "unknown message type ";
  scratch_.hex(ev.type);
  return fail(ev, TFP_ERR_UNKNOWN_COMMAND, scratch_.c_str());
}

Reply Dispatcher::hello(const FrameEvent& ev) {
  if (ev.length != TFP_HELLO_REQ_BYTES) {
    return fail(ev, TFP_ERR_MALFORMED, "HELLO wants protocol_version u16 + max_payload u16");
  }
  const uint16_t host_max = load_u16(ev.payload + TFP_HELLO_REQ_MAX_PAYLOAD_OFFSET);
  if (host_max < TFP_MIN_PAYLOAD) {
    scratch_ = Message();
    scratch_ << "host max_payload " << uint32_t{host_max} << " is below the protocol minimum "
             << uint32_t{TFP_MIN_PAYLOAD};
    return fail(ev, TFP_ERR_BAD_ARGUMENT, scratch_.c_str());
  }
  negotiated_payload_ = host_max < config_.max_payload ? host_max : config_.max_payload;
  parser_.set_max_payload(negotiated_payload_);

  Writer w(payload_out(), payload_room());
  w.u16(TFP_PROTOCOL_VERSION);
  w.u16(config_.max_payload);
  w.u8(config_.rx_window);
  w.u32((engine::available() ? TFP_CAP_ENGINE : 0u) | (engine::decodes() ? TFP_CAP_DECODE : 0u) |
        TFP_CAP_KERNELS | (engine::reads_tensors() ? TFP_CAP_TENSORS : 0u));
  w.u32(config_.cpu_hz);
  w.u32(config_.tick_hz);
  w.u32(engine::arena_capacity());
  w.u32(config_.model_capacity);
  w.str8(config_.firmware_version);
  w.str8(engine::version());
  w.str8(config_.board);
  w.str8(config_.tick_source);
  if (!w.ok()) return fail(ev, TFP_ERR_INTERNAL, "HELLO response does not fit");
  return respond(ev, w.size());
}

Reply Dispatcher::echo(const FrameEvent& ev) {
  if (ev.length > payload_room()) return fail(ev, TFP_ERR_PAYLOAD_TOO_LARGE, "ECHO payload too large");
  std::memcpy(payload_out(), ev.payload, ev.length);
  return respond(ev, ev.length);
}

Reply Dispatcher::model_begin(const FrameEvent& ev) {
  if (ev.length != TFP_MODEL_BEGIN_REQ_BYTES) {
    return fail(ev, TFP_ERR_MALFORMED, "MODEL_BEGIN wants size u32 + sha256 u8[32]");
  }
  const uint32_t size = load_u32(ev.payload + TFP_MODEL_BEGIN_REQ_SIZE_OFFSET);
  // A new upload always drops the previous model: the buffer is about to be overwritten.
  engine::unload();
  upload_ = Upload::kIdle;
  if (size == 0) return fail(ev, TFP_ERR_BAD_ARGUMENT, "model size is 0");
  if (size > config_.model_capacity) {
    scratch_ = Message();
    scratch_ << "model of " << size << " bytes exceeds max_model_bytes " << config_.model_capacity
             << " on " << config_.board;
    return fail(ev, TFP_ERR_MODEL_TOO_LARGE, scratch_.c_str());
  }
  std::memcpy(expected_sha_, ev.payload + TFP_MODEL_BEGIN_REQ_SHA256_OFFSET, sizeof(expected_sha_));
  model_size_ = size;
  received_ = 0;
  upload_ = Upload::kReceiving;
  return respond(ev, 0);
}

Reply Dispatcher::model_chunk(const FrameEvent& ev) {
  if (ev.length < TFP_MODEL_CHUNK_REQ_MIN_BYTES) {
    return fail(ev, TFP_ERR_MALFORMED, "MODEL_CHUNK wants offset u32 + data");
  }
  if (upload_ != Upload::kReceiving) {
    return fail(ev, TFP_ERR_BAD_STATE, "MODEL_CHUNK without MODEL_BEGIN");
  }
  const uint32_t offset = load_u32(ev.payload + TFP_MODEL_CHUNK_REQ_OFFSET_OFFSET);
  const uint32_t n = ev.length - TFP_MODEL_CHUNK_REQ_DATA_OFFSET;
  const uint64_t end = uint64_t{offset} + n;
  if (end <= received_ && offset < received_) {
    // wholly before the next expected offset: a duplicate, acknowledged again and ignored
  } else if (offset != received_) {
    scratch_ = Message();
    scratch_ << "chunk at offset " << offset << "; expected offset " << received_;
    return fail(ev, TFP_ERR_OUT_OF_ORDER, scratch_.c_str());
  } else if (end > model_size_) {
    scratch_ = Message();
    scratch_ << "chunk ends at " << static_cast<uint32_t>(end) << ", past the model size "
             << model_size_ << " given to MODEL_BEGIN";
    return fail(ev, TFP_ERR_BAD_ARGUMENT, scratch_.c_str());
  } else {
    std::memcpy(config_.model_buffer + offset, ev.payload + TFP_MODEL_CHUNK_REQ_DATA_OFFSET, n);
    received_ += n;
  }
  store_u32(payload_out() + TFP_MODEL_CHUNK_RSP_RECEIVED_OFFSET, received_);
  return respond(ev, TFP_MODEL_CHUNK_RSP_BYTES);
}

Reply Dispatcher::model_end(const FrameEvent& ev) {
  if (ev.length != TFP_MODEL_END_REQ_BYTES) return fail(ev, TFP_ERR_MALFORMED, "MODEL_END takes no payload");
  if (upload_ != Upload::kReceiving) return fail(ev, TFP_ERR_BAD_STATE, "MODEL_END without MODEL_BEGIN");
  if (received_ != model_size_) {
    scratch_ = Message();
    scratch_ << "MODEL_END after " << received_ << " of " << model_size_ << " bytes";
    return fail(ev, TFP_ERR_BAD_STATE, scratch_.c_str());
  }
  uint8_t digest[Sha256::kDigestBytes];
  Sha256::hash(config_.model_buffer, model_size_, digest);
  if (std::memcmp(digest, expected_sha_, sizeof(digest)) != 0) {
    upload_ = Upload::kIdle;
    scratch_ = Message();
    scratch_ << "SHA-256 of the " << model_size_
             << " received bytes differs from MODEL_BEGIN's; upload again";
    return fail(ev, TFP_ERR_HASH_MISMATCH, scratch_.c_str());
  }
  upload_ = Upload::kVerified;
  uint8_t status = TFP_MODEL_VERIFIED;
  uint8_t inputs = 0, outputs = 0;
  if (engine::available()) {
    const engine::Status st = engine::load(config_.model_buffer, model_size_, &inputs, &outputs);
    if (!st.ok()) return fail(ev, st.code, st.message);
    status |= TFP_MODEL_LOADED;
  }
  uint8_t* p = payload_out();
  p[TFP_MODEL_END_RSP_STATUS_OFFSET] = status;
  store_u32(p + TFP_MODEL_END_RSP_ARENA_USED_OFFSET, engine::arena_used());
  p[TFP_MODEL_END_RSP_INPUTS_OFFSET] = inputs;
  p[TFP_MODEL_END_RSP_OUTPUTS_OFFSET] = outputs;
  return respond(ev, TFP_MODEL_END_RSP_BYTES);
}

namespace {
// Engine-less builds answer NO_ENGINE before looking at anything else; with an engine, commands
// that need a model answer NO_MODEL until MODEL_END loaded one.
engine::Status engine_ready() { return engine::ready(); }
}  // namespace

Reply Dispatcher::tensor_info(const FrameEvent& ev) {
  const engine::Status ready = engine_ready();
  if (!ready.ok()) return fail(ev, ready.code, ready.message);
  if (ev.length != TFP_TENSOR_INFO_REQ_BYTES) {
    return fail(ev, TFP_ERR_MALFORMED, "TENSOR_INFO wants direction u8 + index u8");
  }
  engine::TensorInfo info{};
  const engine::Status st = engine::tensor_info(ev.payload[TFP_TENSOR_INFO_REQ_DIRECTION_OFFSET],
                                                ev.payload[TFP_TENSOR_INFO_REQ_INDEX_OFFSET], &info);
  if (!st.ok()) return fail(ev, st.code, st.message);
  Writer w(payload_out(), payload_room());
  w.u8(info.dtype);
  w.u32(info.bytes);
  w.f32(info.scale);
  w.i32(info.zero_point);
  w.u8(info.ndims);
  for (uint8_t i = 0; i < info.ndims && i < engine::kMaxDims; ++i) w.i32(info.dims[i]);
  if (!w.ok()) return fail(ev, TFP_ERR_INTERNAL, "TENSOR_INFO response does not fit");
  return respond(ev, w.size());
}

Reply Dispatcher::set_input(const FrameEvent& ev) {
  const engine::Status ready = engine_ready();
  if (!ready.ok()) return fail(ev, ready.code, ready.message);
  if (ev.length < TFP_SET_INPUT_REQ_MIN_BYTES) {
    return fail(ev, TFP_ERR_MALFORMED, "SET_INPUT wants index u8 + offset u32 + data");
  }
  const engine::Status st = engine::set_input(
      ev.payload[TFP_SET_INPUT_REQ_INDEX_OFFSET], load_u32(ev.payload + TFP_SET_INPUT_REQ_OFFSET_OFFSET),
      ev.payload + TFP_SET_INPUT_REQ_DATA_OFFSET, ev.length - TFP_SET_INPUT_REQ_DATA_OFFSET);
  if (!st.ok()) return fail(ev, st.code, st.message);
  return respond(ev, 0);
}

Reply Dispatcher::invoke(const FrameEvent& ev) {
  const engine::Status ready = engine_ready();
  if (!ready.ok()) return fail(ev, ready.code, ready.message);
  if (ev.length != TFP_INVOKE_REQ_BYTES) return fail(ev, TFP_ERR_MALFORMED, "INVOKE takes no payload");
  const uint64_t t0 = config_.ticks();
  const engine::Status st = engine::invoke();
  const uint64_t t1 = config_.ticks();
  if (!st.ok()) return fail(ev, st.code, st.message);
  store_u64(payload_out() + TFP_INVOKE_RSP_TICKS_OFFSET, t1 - t0);
  return respond(ev, TFP_INVOKE_RSP_BYTES);
}

Reply Dispatcher::get_output(const FrameEvent& ev) {
  const engine::Status ready = engine_ready();
  if (!ready.ok()) return fail(ev, ready.code, ready.message);
  if (ev.length != TFP_GET_OUTPUT_REQ_BYTES) {
    return fail(ev, TFP_ERR_MALFORMED, "GET_OUTPUT wants index u8 + offset u32 + length u16");
  }
  size_t want = load_u16(ev.payload + TFP_GET_OUTPUT_REQ_LENGTH_OFFSET);
  if (want > payload_room()) want = payload_room();
  size_t copied = 0;
  const engine::Status st =
      engine::get_output(ev.payload[TFP_GET_OUTPUT_REQ_INDEX_OFFSET],
                         load_u32(ev.payload + TFP_GET_OUTPUT_REQ_OFFSET_OFFSET), payload_out(), want,
                         &copied);
  if (!st.ok()) return fail(ev, st.code, st.message);
  return respond(ev, copied);
}

Reply Dispatcher::bench(const FrameEvent& ev) {
  const engine::Status ready = engine_ready();
  if (!ready.ok()) return fail(ev, ready.code, ready.message);
  if (ev.length != TFP_BENCH_REQ_BYTES) return fail(ev, TFP_ERR_MALFORMED, "BENCH wants warmup u32 + runs u32");
  const uint32_t warmup = load_u32(ev.payload + TFP_BENCH_REQ_WARMUP_OFFSET);
  const uint32_t runs = load_u32(ev.payload + TFP_BENCH_REQ_RUNS_OFFSET);
  const uint32_t max_runs = static_cast<uint32_t>((payload_room() - TFP_BENCH_RSP_MIN_BYTES) / 4);
  if (runs > max_runs) {
    scratch_ = Message();
    scratch_ << "runs " << runs << " > " << max_runs << " (what fits one response payload)";
    return fail(ev, TFP_ERR_BAD_ARGUMENT, scratch_.c_str());
  }
  for (uint32_t i = 0; i < warmup; ++i) {
    const engine::Status st = engine::invoke();
    if (!st.ok()) return fail(ev, st.code, st.message);
  }
  uint8_t* p = payload_out();
  store_u32(p + TFP_BENCH_RSP_COUNT_OFFSET, runs);
  for (uint32_t i = 0; i < runs; ++i) {
    const uint64_t t0 = config_.ticks();
    const engine::Status st = engine::invoke();
    const uint64_t dt = config_.ticks() - t0;
    if (!st.ok()) return fail(ev, st.code, st.message);
    store_u32(p + TFP_BENCH_RSP_TICKS_OFFSET + 4 * i,
              dt > 0xFFFFFFFFull ? 0xFFFFFFFFu : static_cast<uint32_t>(dt));
  }
  return respond(ev, TFP_BENCH_RSP_MIN_BYTES + 4 * size_t{runs});
}

Reply Dispatcher::arena(const FrameEvent& ev) {
  const engine::Status ready = engine_ready();
  if (!ready.ok()) return fail(ev, ready.code, ready.message);
  if (ev.length != TFP_ARENA_REQ_BYTES) return fail(ev, TFP_ERR_MALFORMED, "ARENA takes no payload");
  store_u32(payload_out() + TFP_ARENA_RSP_USED_OFFSET, engine::arena_used());
  store_u32(payload_out() + TFP_ARENA_RSP_CAPACITY_OFFSET, engine::arena_capacity());
  return respond(ev, TFP_ARENA_RSP_BYTES);
}

Reply Dispatcher::kernels(const FrameEvent& ev) {
  if (ev.length != TFP_KERNELS_REQ_BYTES) return fail(ev, TFP_ERR_MALFORMED, "KERNELS takes no payload");
  Writer w(payload_out(), payload_room());
  w.str8(engine::kernels());  // "none" in the engine-less build
  return respond(ev, w.size());
}

Reply Dispatcher::decompression(const FrameEvent& ev) {
  const engine::Status ready = engine_ready();
  if (!ready.ok()) return fail(ev, ready.code, ready.message);
  if (ev.length != TFP_DECOMPRESSION_REQ_BYTES) {
    return fail(ev, TFP_ERR_MALFORMED, "DECOMPRESSION takes no payload");
  }
  store_u32(payload_out() + TFP_DECOMPRESSION_RSP_USED_OFFSET, engine::decompression_used());
  store_u32(payload_out() + TFP_DECOMPRESSION_RSP_CAPACITY_OFFSET, engine::decompression_capacity());
  return respond(ev, TFP_DECOMPRESSION_RSP_BYTES);
}

Reply Dispatcher::preserve_tensors(const FrameEvent& ev) {
  if (ev.length != TFP_PRESERVE_TENSORS_REQ_BYTES) {
    return fail(ev, TFP_ERR_MALFORMED, "PRESERVE_TENSORS wants enable u8");
  }
  const uint8_t enable = ev.payload[TFP_PRESERVE_TENSORS_REQ_ENABLE_OFFSET];
  if (enable > 1) return fail(ev, TFP_ERR_BAD_ARGUMENT, "PRESERVE_TENSORS enable must be 0 or 1");
  engine::set_preserve(enable == 1);
  return respond(ev, TFP_PRESERVE_TENSORS_RSP_BYTES);
}

Reply Dispatcher::read_tensor(const FrameEvent& ev) {
  const engine::Status ready = engine_ready();
  if (!ready.ok()) return fail(ev, ready.code, ready.message);
  if (ev.length != TFP_READ_TENSOR_REQ_BYTES) {
    return fail(ev, TFP_ERR_MALFORMED, "READ_TENSOR wants index u32 + offset u32 + length u16");
  }
  const size_t room = payload_room() - TFP_READ_TENSOR_RSP_MIN_BYTES;
  size_t want = load_u16(ev.payload + TFP_READ_TENSOR_REQ_LENGTH_OFFSET);
  if (want > room) want = room;
  uint8_t* p = payload_out();
  size_t copied = 0;
  uint8_t dtype = 0;
  uint32_t bytes = 0;
  const engine::Status st = engine::read_tensor(
      load_u32(ev.payload + TFP_READ_TENSOR_REQ_INDEX_OFFSET),
      load_u32(ev.payload + TFP_READ_TENSOR_REQ_OFFSET_OFFSET), p + TFP_READ_TENSOR_RSP_DATA_OFFSET, want,
      &copied, &dtype, &bytes);
  if (!st.ok()) return fail(ev, st.code, st.message);
  p[TFP_READ_TENSOR_RSP_DTYPE_OFFSET] = dtype;
  store_u32(p + TFP_READ_TENSOR_RSP_BYTES_OFFSET, bytes);
  return respond(ev, TFP_READ_TENSOR_RSP_DATA_OFFSET + copied);
}

}  // namespace tf
