// QEMU mps2-an386 (Arm MPS2 FPGA image AN386: Cortex-M4 at 25 MHz).
//
// UART: CMSDK APB UART0 at 0x40004000. QEMU's character backend delivers a byte only when the
// UART's one-byte RX register is free, so the host side of the TCP socket is back-pressured while a
// frame is processed and nothing is lost: rx_window can be larger than 1. The CPU sleeps (WFI)
// until the RX interrupt instead of polling: every register poll takes QEMU's global lock and
// starves the thread that feeds the UART (measured: polling ~2 KB/s; WFI ~8 KB/s on a loaded
// 2-core host -- QEMU hands over one byte per main-loop wake-up, see benchmarks/).
// Clock: SysTick from the 25 MHz system clock. Under `-icount shift=0` QEMU's virtual time
// advances one nanosecond per instruction, so ticks count emulated instruction time, not cycles of
// real silicon; tick_source says so ("qemu-icount"). The DWT cycle counter reads 0 under QEMU.
// Memory (QEMU hw/arm/mps2.c): 4 MB ZBT SSRAM1 at 0x00000000 (code), 4 MB SSRAM2/3 at
// 0x20000000 (data: model buffer, arena, stack).
#include "boards/board.h"

#include "boards/common/cortex_m.h"
#include "protocol/tinyfarm_protocol.h"

#ifndef TF_MODEL_BUFFER_BYTES
#define TF_MODEL_BUFFER_BYTES (1024u * 1024u)
#endif
#ifndef TF_MAX_PAYLOAD
#define TF_MAX_PAYLOAD 4096u
#endif
#ifndef TF_RX_WINDOW
#define TF_RX_WINDOW 4u
#endif
#ifndef TF_FIRMWARE_VERSION
#define TF_FIRMWARE_VERSION "0.0.0-dev"
#endif

namespace board {
namespace {

constexpr uint32_t kSysClockHz = 25000000u;
constexpr uint32_t kBaud = 115200u;

struct CmsdkUart {
  volatile uint32_t data;
  volatile uint32_t state;      // bit0 TX full, bit1 RX full
  volatile uint32_t ctrl;       // bit0 TX enable, bit1 RX enable, bit3 RX interrupt enable
  volatile uint32_t intstatus;  // write 1 to clear; bit1 RX
  volatile uint32_t bauddiv;
};
constexpr uint32_t kCtrlEnable = 0x3u;
constexpr uint32_t kCtrlRxIrq = 0x8u;
constexpr uint32_t kStateRxFull = 0x2u;
constexpr uint32_t kUart0RxIrq = 0;  // AN385/AN386: UART0 RX is external interrupt 0
volatile uint32_t& nvic_iser0() { return *reinterpret_cast<volatile uint32_t*>(0xE000E100u); }
CmsdkUart& uart0() { return *reinterpret_cast<CmsdkUart*>(0x40004000u); }

alignas(16) __attribute__((section(".noinit.model"))) uint8_t g_model[TF_MODEL_BUFFER_BYTES];

const tf::DeviceConfig kConfig{
    /*board=*/"qemu-mps2-an386",
    /*firmware_version=*/TF_FIRMWARE_VERSION,
    /*tick_source=*/"qemu-icount",
    /*cpu_hz=*/kSysClockHz,
    /*tick_hz=*/kSysClockHz,
    /*max_payload=*/TF_MAX_PAYLOAD,
    /*rx_window=*/TF_RX_WINDOW,
    /*model_buffer=*/g_model,
    /*model_capacity=*/TF_MODEL_BUFFER_BYTES,
    /*ticks=*/&cortex_m::systick_ticks,
};

}  // namespace

void init() {
  uart0().bauddiv = kSysClockHz / kBaud;
  uart0().ctrl = kCtrlEnable;
  nvic_iser0() = 1u << kUart0RxIrq;
  cortex_m::systick_start();
}

void uart_wait() {
  // With interrupts masked, arm the RX interrupt and re-check: a byte that arrives after the check
  // leaves the interrupt pending, and WFI returns at once on a pending interrupt even when masked.
  __asm volatile("cpsid i" ::: "memory");
  uart0().ctrl = kCtrlEnable | kCtrlRxIrq;
  if ((uart0().state & kStateRxFull) == 0) __asm volatile("wfi" ::: "memory");
  __asm volatile("cpsie i" ::: "memory");
}

bool uart_read(uint8_t* byte) {
  if ((uart0().state & kStateRxFull) == 0) return false;
  *byte = static_cast<uint8_t>(uart0().data);
  return true;
}

void uart_write(const uint8_t* data, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    while (uart0().state & 0x1u) {
    }
    uart0().data = data[i];
  }
}

void uart_flush() {
  while (uart0().state & 0x1u) {
  }
}

uint64_t ticks() { return cortex_m::systick_ticks(); }
const tf::DeviceConfig& config() { return kConfig; }
void system_reset() { cortex_m::system_reset(); }
const char* take_fault_report() { return cortex_m::take_fault_report(); }

}  // namespace board

extern "C" void board_irq_handler(uint32_t irq) {
  using namespace board;
  if (irq == kUart0RxIrq) {
    uart0().ctrl = kCtrlEnable;  // disarm; main() reads the byte
    uart0().intstatus = kStateRxFull;
  }
}
