// Cortex-M core helpers shared by every Cortex-M board: SysTick-based 64-bit tick counter,
// system reset through SCB->AIRCR, and a fault record that survives the reset.
#pragma once
#include <cstdint>

namespace cortex_m {

// SysTick from the processor clock, reload 2^24-1, wrap counted in the SysTick interrupt.
void systick_start();
uint64_t systick_ticks();

// DWT cycle counter (real silicon and Renode; reads 0 under QEMU).
bool dwt_start();
uint32_t dwt_cycles();

[[noreturn]] void system_reset();

// Text describing the fault that caused the last reset, or nullptr; clears the record.
const char* take_fault_report();

}  // namespace cortex_m
