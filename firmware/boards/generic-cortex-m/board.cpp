// Generic Cortex-M port -- a template. Fill in the three marked pieces for your part:
//   1. kCoreHz: the core clock after your clock set-up (SysTick counts it; every Cortex-M has one);
//   2. port_uart_init / port_uart_getc / port_uart_putc: your UART (polled is fine: the protocol is
//      stop-and-wait with rx_window 1, so the host never sends while the device is busy);
//   3. linker.ld next to this file: your flash and RAM.
// Then: cmake --preset generic-cortex-m -DTF_CPU_FLAGS="-mcpu=...;-mthumb;..." && cmake --build ...
// Everything else (protocol, upload + SHA-256 verification, engine, fault reporting) is shared.
#include "boards/board.h"

#include "boards/common/cortex_m.h"

namespace board {
namespace {

// ---- 1. the clock -------------------------------------------------------------------------------
constexpr uint32_t kCoreHz = 16000000u;  // TODO: your core clock in Hz

// ---- 2. two UART functions (and their init) ------------------------------------------------------
void port_uart_init() {
  // TODO: enable the UART's clock and pins, set 115200 8N1, enable TX and RX.
}

// Non-blocking: return true and set *byte when a byte was received.
bool port_uart_getc(uint8_t* byte) {
  (void)byte;  // TODO: e.g. if (UART->SR & RXNE) { *byte = UART->DR; return true; }
  return false;
}

// Blocking: send one byte.
void port_uart_putc(uint8_t byte) {
  (void)byte;  // TODO: e.g. while (!(UART->SR & TXE)) {} UART->DR = byte;
}
// ---- end of the part to fill in ------------------------------------------------------------------

alignas(16) __attribute__((section(".noinit.model"))) uint8_t g_model[TF_MODEL_BUFFER_BYTES];

const tf::DeviceConfig kConfig{
    /*board=*/"generic-cortex-m",
    /*firmware_version=*/TF_FIRMWARE_VERSION,
    /*tick_source=*/"systick",
    /*cpu_hz=*/kCoreHz,
    /*tick_hz=*/kCoreHz,
    /*max_payload=*/TF_MAX_PAYLOAD,
    /*rx_window=*/TF_RX_WINDOW,
    /*model_buffer=*/g_model,
    /*model_capacity=*/TF_MODEL_BUFFER_BYTES,
    /*ticks=*/&cortex_m::systick_ticks,
};

}  // namespace

void init() {
  port_uart_init();
  cortex_m::systick_start();
}
bool uart_read(uint8_t* byte) { return port_uart_getc(byte); }
void uart_wait() {}  // polled port: main() simply asks again
void uart_write(const uint8_t* data, size_t n) {
  for (size_t i = 0; i < n; ++i) port_uart_putc(data[i]);
}
void uart_flush() {
  // A polled putc returns once the data register took the byte; wait a character time or poll your
  // UART's "transmission complete" flag here before a reset.
  const uint64_t until = ticks() + kCoreHz / 1000u;
  while (ticks() < until) {
  }
}
uint64_t ticks() { return cortex_m::systick_ticks(); }
const tf::DeviceConfig& config() { return kConfig; }
void system_reset() { cortex_m::system_reset(); }
const char* take_fault_report() { return cortex_m::take_fault_report(); }

}  // namespace board
