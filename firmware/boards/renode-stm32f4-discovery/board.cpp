// STM32F4-Discovery (STM32F407VG, Cortex-M4F) -- for Renode (stm32f4_discovery-kit + tinyfarm.repl)
// and the real board (USART2 on PA2/PA3, e.g. through a USB-serial adapter).
//
// Clock: the reset default, HSI 16 MHz (no PLL set-up: the figures stay comparable between Renode
// and the board). Ticks: the DWT cycle counter, extended to 64 bits; when DWT does not count (some
// emulators), SysTick at the core clock instead -- HELLO's tick_source says which.
// UART: USART2 at 115200 8N1; the RX interrupt fills a ring buffer so bytes are not lost while the
// main loop processes a frame (stop-and-wait: rx_window 1; the ring holds one whole frame).
// Memory: model buffer in the 128 KB main SRAM, tensor arena in the 64 KB CCM.
#include "boards/board.h"

#include "boards/common/cortex_m.h"
#include "protocol/tinyfarm_protocol.h"

namespace board {
namespace {

constexpr uint32_t kCoreHz = 16000000u;  // HSI after reset
constexpr uint32_t kBaud = 115200u;
constexpr uint32_t kUsart2Irq = 38;

template <uint32_t kAddress>
volatile uint32_t& reg() {
  return *reinterpret_cast<volatile uint32_t*>(kAddress);
}
constexpr uint32_t kRccAhb1enr = 0x40023830u, kRccApb1enr = 0x40023840u;
constexpr uint32_t kGpioaModer = 0x40020000u, kGpioaAfrl = 0x40020020u;
constexpr uint32_t kUsart2 = 0x40004400u;
constexpr uint32_t kSr = kUsart2 + 0x00, kDr = kUsart2 + 0x04, kBrr = kUsart2 + 0x08,
                   kCr1 = kUsart2 + 0x0C;
constexpr uint32_t kSrRxne = 1u << 5, kSrTc = 1u << 6, kSrTxe = 1u << 7, kSrOre = 1u << 3;
constexpr uint32_t kCr1Ue = 1u << 13, kCr1Rxneie = 1u << 5, kCr1Te = 1u << 3, kCr1Re = 1u << 2;

// RX ring: written by the interrupt, read by main(). It holds a whole frame of the largest payload:
// with stop-and-wait (rx_window 1) the host never sends more, so no byte is lost even when bytes
// arrive faster than main() drains them (Renode's USART delivers them unpaced, back to back, and the
// interrupt then starves main() until the frame is in). Power-of-two size, indices wrap naturally.
constexpr uint32_t ring_size_for(uint32_t bytes) {
  uint32_t size = 1;
  while (size < bytes) size <<= 1;
  return size;
}
constexpr uint32_t kRingSize = ring_size_for(TF_MAX_PAYLOAD + TFP_HEADER_BYTES + TFP_TRAILER_BYTES);
uint8_t g_ring[kRingSize];
volatile uint32_t g_head = 0;  // written by the ISR
volatile uint32_t g_tail = 0;  // written by main()
volatile uint32_t g_overruns = 0;

alignas(16) __attribute__((section(".noinit.model"))) uint8_t g_model[TF_MODEL_BUFFER_BYTES];

bool g_use_dwt = false;
uint32_t g_dwt_last = 0;
uint64_t g_dwt_high = 0;

uint64_t board_ticks() {
  if (!g_use_dwt) return cortex_m::systick_ticks();
  // Extend the 32-bit cycle counter; SysTick's interrupt calls this at least once per 2^24 cycles.
  uint32_t primask;
  __asm volatile("mrs %0, primask\ncpsid i" : "=r"(primask)::"memory");
  const uint32_t now = cortex_m::dwt_cycles();
  if (now < g_dwt_last) g_dwt_high += 1ull << 32;
  g_dwt_last = now;
  const uint64_t t = g_dwt_high | now;
  __asm volatile("msr primask, %0" ::"r"(primask) : "memory");
  return t;
}

tf::DeviceConfig g_config{
    /*board=*/"renode-stm32f4-discovery",
    /*firmware_version=*/TF_FIRMWARE_VERSION,
    /*tick_source=*/"systick",
    /*cpu_hz=*/kCoreHz,
    /*tick_hz=*/kCoreHz,
    /*max_payload=*/TF_MAX_PAYLOAD,
    /*rx_window=*/TF_RX_WINDOW,
    /*model_buffer=*/g_model,
    /*model_capacity=*/TF_MODEL_BUFFER_BYTES,
    /*ticks=*/&board_ticks,
};

}  // namespace

void init() {
  reg<kRccAhb1enr>() = reg<kRccAhb1enr>() | 1u;          // GPIOA clock
  reg<kRccApb1enr>() = reg<kRccApb1enr>() | (1u << 17);  // USART2 clock
  // PA2 (TX) and PA3 (RX): alternate function 7.
  reg<kGpioaModer>() = (reg<kGpioaModer>() & ~(0xFu << 4)) | (0xAu << 4);
  reg<kGpioaAfrl>() = (reg<kGpioaAfrl>() & ~(0xFFu << 8)) | (0x77u << 8);
  reg<kBrr>() = (kCoreHz + kBaud / 2) / kBaud;
  reg<kCr1>() = kCr1Ue | kCr1Te | kCr1Re | kCr1Rxneie;
  reg<0xE000E100u + 4 * (kUsart2Irq / 32)>() = 1u << (kUsart2Irq % 32);  // NVIC enable

  cortex_m::systick_start();
  if (cortex_m::dwt_start()) {
    const uint32_t a = cortex_m::dwt_cycles();
    for (volatile int i = 0; i < 100; i = i + 1) {
    }
    g_use_dwt = cortex_m::dwt_cycles() != a;
  }
  if (g_use_dwt) g_config.tick_source = "dwt";
}

bool uart_read(uint8_t* byte) {
  const uint32_t tail = g_tail;
  if (tail == g_head) return false;
  *byte = g_ring[tail % kRingSize];
  g_tail = tail + 1;
  return true;
}

void uart_wait() {
  __asm volatile("cpsid i" ::: "memory");
  if (g_tail == g_head) __asm volatile("wfi" ::: "memory");
  __asm volatile("cpsie i" ::: "memory");
}

void uart_write(const uint8_t* data, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    while ((reg<kSr>() & kSrTxe) == 0) {
    }
    reg<kDr>() = data[i];
  }
}

void uart_flush() {
  while ((reg<kSr>() & kSrTc) == 0) {
  }
}

uint64_t ticks() { return board_ticks(); }
const tf::DeviceConfig& config() { return g_config; }
void system_reset() { cortex_m::system_reset(); }
const char* take_fault_report() { return cortex_m::take_fault_report(); }

}  // namespace board

extern "C" void board_irq_handler(uint32_t irq) {
  using namespace board;
  if (irq != kUsart2Irq) return;
  const uint32_t sr = reg<kSr>();
  if (sr & (kSrRxne | kSrOre)) {
    const uint8_t byte = static_cast<uint8_t>(reg<kDr>());  // reading DR clears RXNE and ORE
    if (sr & kSrOre) g_overruns = g_overruns + 1;
    const uint32_t head = g_head;
    if (head - g_tail < kRingSize) {
      g_ring[head % kRingSize] = byte;
      g_head = head + 1;
    } else {
      g_overruns = g_overruns + 1;  // ring full: the frame CRC will catch the loss
    }
  }
}

// Keep the DWT extension fresh: SysTick fires every 2^24 cycles (~1 s at 16 MHz).
extern "C" void tf_board_systick_hook() { (void)board::ticks(); }
