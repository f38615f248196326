// What a board tells the application about itself (reported by HELLO) and lends it (buffers).
#pragma once
#include <cstddef>
#include <cstdint>

namespace tf {

struct DeviceConfig {
  const char* board;             // HELLO board
  const char* firmware_version;  // HELLO firmware_version
  const char* tick_source;       // HELLO tick_source: "systick", "dwt", "qemu-icount", ...
  uint32_t cpu_hz;
  uint32_t tick_hz;              // unit of every tick count the device reports
  uint16_t max_payload;          // largest payload the frame buffers hold
  uint8_t rx_window;             // requests the host may send before the first answer
  uint8_t* model_buffer;         // RAM the model is received into and run from (16-byte aligned)
  uint32_t model_capacity;
  uint64_t (*ticks)();           // free-running tick counter
};

}  // namespace tf
