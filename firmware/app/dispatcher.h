// Command dispatcher: turns each parsed request frame into exactly one response frame.
//
// Owns the upload state machine (MODEL_BEGIN/CHUNK/END into the board's model buffer, verified by
// SHA-256 before the engine ever sees it) and the retransmission memory: the last request's
// (type, seq) and its response, so a repeated request gets the same bytes again without being
// executed twice.
#pragma once
#include <cstddef>
#include <cstdint>

#include "app/device_config.h"
#include "protocol/frame.h"
#include "protocol/wire.h"

namespace tf {

struct Reply {
  const uint8_t* data = nullptr;  // complete frame to send (nullptr: send nothing)
  size_t size = 0;
  bool reset_after = false;       // RESET: send, drain the UART, then reset the device
};

class Dispatcher {
 public:
  // `tx` must hold TFP_FRAME_OVERHEAD + config.max_payload bytes.
  Dispatcher(const DeviceConfig& config, FrameParser& parser, uint8_t* tx, size_t tx_capacity);

  Reply on_event(const FrameEvent& ev);

  // After a fault reset: the next request other than HELLO/RESET answers DEVICE_FAULT with this.
  void report_fault(const char* message);

 private:
  enum class Upload : uint8_t { kIdle, kReceiving, kVerified };

  Reply handle(const FrameEvent& ev);
  Reply respond(const FrameEvent& ev, size_t payload_len);
  Reply fail(const FrameEvent& ev, uint16_t code, const char* message);
  Reply nak(const FrameEvent& ev, uint16_t code, const char* message);
  size_t error_frame(uint8_t* frame, size_t cap, const FrameEvent& ev, uint16_t code,
                     const char* message);
  uint8_t* payload_out() { return tx_ + TFP_HEADER_BYTES; }
  size_t payload_room() const;

  Reply hello(const FrameEvent& ev);
  Reply echo(const FrameEvent& ev);
  Reply model_begin(const FrameEvent& ev);
  Reply model_chunk(const FrameEvent& ev);
  Reply model_end(const FrameEvent& ev);
  Reply tensor_info(const FrameEvent& ev);
  Reply set_input(const FrameEvent& ev);
  Reply invoke(const FrameEvent& ev);
  Reply get_output(const FrameEvent& ev);
  Reply bench(const FrameEvent& ev);
  Reply arena(const FrameEvent& ev);
  Reply decompression(const FrameEvent& ev);
  Reply kernels(const FrameEvent& ev);
  Reply preserve_tensors(const FrameEvent& ev);
  Reply read_tensor(const FrameEvent& ev);

  const DeviceConfig& config_;
  FrameParser& parser_;
  uint8_t* tx_;
  size_t tx_capacity_;
  uint16_t negotiated_payload_;

  bool have_last_ = false;
  uint8_t last_type_ = 0;
  uint16_t last_seq_ = 0;
  size_t last_size_ = 0;

  Upload upload_ = Upload::kIdle;
  uint32_t model_size_ = 0;
  uint32_t received_ = 0;
  uint8_t expected_sha_[32] = {};

  bool fault_pending_ = false;
  Message fault_message_;
  Message scratch_;  // text of the current error response
  // NAKs (CRC_MISMATCH, PAYLOAD_TOO_LARGE) go out of their own buffer: they must not overwrite
  // the remembered response, because the request they refuse was never executed.
  uint8_t nak_[TFP_FRAME_OVERHEAD + TFP_ERROR_PAYLOAD_MIN_BYTES + 1 + Message::kCapacity];
};

}  // namespace tf
