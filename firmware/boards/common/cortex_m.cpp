#include "boards/common/cortex_m.h"

#include "protocol/wire.h"

namespace cortex_m {
namespace {

template <uint32_t kAddress>
struct Reg {
  static volatile uint32_t& ref() { return *reinterpret_cast<volatile uint32_t*>(kAddress); }
};
using SYST_CSR = Reg<0xE000E010>;
using SYST_RVR = Reg<0xE000E014>;
using SYST_CVR = Reg<0xE000E018>;
using SCB_AIRCR = Reg<0xE000ED0C>;
using SCB_CFSR = Reg<0xE000ED28>;
using SCB_HFSR = Reg<0xE000ED2C>;
using SCB_MMFAR = Reg<0xE000ED34>;
using SCB_BFAR = Reg<0xE000ED38>;
using DEMCR = Reg<0xE000EDFC>;
using DWT_CTRL = Reg<0xE0001000>;
using DWT_CYCCNT = Reg<0xE0001004>;

constexpr uint32_t kReload = 0x00FFFFFFu;
volatile uint32_t g_wraps = 0;

// Survives a system reset: the startup code zeroes .bss, not .noinit.
struct FaultRecord {
  uint32_t magic;
  uint32_t pc, lr, cfsr, hfsr, mmfar, bfar;
};
constexpr uint32_t kFaultMagic = 0x46415554u;  // "FAUT"
__attribute__((section(".noinit"))) FaultRecord g_fault;
tf::Message g_fault_text;

}  // namespace

void systick_start() {
  SYST_RVR::ref() = kReload;
  SYST_CVR::ref() = 0;
  SYST_CSR::ref() = 0x7u;  // processor clock, interrupt on wrap, enable
}

uint64_t systick_ticks() {
  uint32_t hi, val;
  do {
    hi = g_wraps;
    val = SYST_CVR::ref();
  } while (hi != g_wraps);
  return (uint64_t{hi} << 24) | (kReload - val);
}

bool dwt_start() {
  DEMCR::ref() = DEMCR::ref() | (1u << 24);  // TRCENA
  DWT_CYCCNT::ref() = 0;
  DWT_CTRL::ref() = DWT_CTRL::ref() | 1u;
  return (DWT_CTRL::ref() & 1u) != 0;
}

uint32_t dwt_cycles() { return DWT_CYCCNT::ref(); }

void system_reset() {
  __asm volatile("dsb 0xF" ::: "memory");
  SCB_AIRCR::ref() = (0x5FAu << 16) | (1u << 2);  // VECTKEY | SYSRESETREQ
  __asm volatile("dsb 0xF" ::: "memory");
  for (;;) {
  }
}

const char* take_fault_report() {
  if (g_fault.magic != kFaultMagic) return nullptr;
  g_fault.magic = 0;
  g_fault_text = tf::Message();
  g_fault_text << "device fault (HardFault) and reset: pc=";
  g_fault_text.hex(g_fault.pc);
  g_fault_text << " lr=";
  g_fault_text.hex(g_fault.lr);
  g_fault_text << " cfsr=";
  g_fault_text.hex(g_fault.cfsr);
  g_fault_text << " hfsr=";
  g_fault_text.hex(g_fault.hfsr);
  return g_fault_text.c_str();
}

}  // namespace cortex_m

extern "C" {

// Boards that extend another counter (DWT) from SysTick define this; the default does nothing.
__attribute__((weak)) void tf_board_systick_hook() {}

void SysTick_Handler() {
  cortex_m::g_wraps = cortex_m::g_wraps + 1;
  tf_board_systick_hook();
}

// Called by the fault vector with the exception stack frame: r0 r1 r2 r3 r12 lr pc xpsr.
__attribute__((used)) void tf_fault_record(const uint32_t* frame) {
  using namespace cortex_m;
  g_fault.pc = frame[6];
  g_fault.lr = frame[5];
  g_fault.cfsr = SCB_CFSR::ref();
  g_fault.hfsr = SCB_HFSR::ref();
  g_fault.mmfar = SCB_MMFAR::ref();
  g_fault.bfar = SCB_BFAR::ref();
  g_fault.magic = kFaultMagic;
  system_reset();
}

__attribute__((naked)) void Fault_Handler() {
  __asm volatile(
      "tst lr, #4\n"
      "ite eq\n"
      "mrseq r0, msp\n"
      "mrsne r0, psp\n"
      "b tf_fault_record\n");
}

}  // extern "C"
