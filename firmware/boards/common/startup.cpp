// Cortex-M start-up shared by the boards: vector table, .data copy, .bss zeroing, static
// constructors, then main(). Linker-script symbols: __stack_top, __data_load, __data_start,
// __data_end, __bss_start, __bss_end. .noinit (model buffer, arena, fault record) is left alone.
#include <cstdint>

extern "C" {
extern uint32_t __stack_top;
extern uint32_t __data_load, __data_start, __data_end, __bss_start, __bss_end;
void __libc_init_array();
int main();
void Fault_Handler();
void SysTick_Handler();
void board_irq_handler(uint32_t irq);  // weak: boards that use interrupts define it

__attribute__((weak)) void board_irq_handler(uint32_t) {
  for (;;) {
  }
}

// -nostartfiles drops crti.o; __libc_init_array still calls _init between the two arrays.
void _init() {}
void _fini() {}

void Default_Handler() {
  for (;;) {
  }
}

// Every external interrupt lands here; IPSR tells which one.
void External_IRQ_Handler() {
  uint32_t ipsr;
  __asm volatile("mrs %0, ipsr" : "=r"(ipsr));
  board_irq_handler((ipsr & 0x1FFu) - 16u);
}

__attribute__((noreturn)) void Reset_Handler() {
  for (uint32_t *src = &__data_load, *dst = &__data_start; dst < &__data_end;) *dst++ = *src++;
  for (uint32_t* dst = &__bss_start; dst < &__bss_end;) *dst++ = 0;
#if defined(__ARM_FP)
  // Cortex-M4F: enable CP10/CP11 (the FPU) before any float instruction runs.
  *reinterpret_cast<volatile uint32_t*>(0xE000ED88) |= (0xFu << 20);
  __asm volatile("dsb 0xF\nisb 0xF" ::: "memory");
#endif
  __libc_init_array();
  main();
  for (;;) {
  }
}

constexpr int kExternalIrqs = 96;  // covers the STM32F4 (82) and the MPS2 (48)
using Vector = void (*)();
struct VectorTable {
  uint32_t* stack_top;
  Vector core[15];
  Vector external[kExternalIrqs];
};

constexpr VectorTable make_table() {
  VectorTable t{&__stack_top,
                {Reset_Handler, Default_Handler /*NMI*/, Fault_Handler /*HardFault*/,
                 Fault_Handler /*MemManage*/, Fault_Handler /*BusFault*/,
                 Fault_Handler /*UsageFault*/, nullptr, nullptr, nullptr, nullptr,
                 Default_Handler /*SVCall*/, Default_Handler /*DebugMon*/, nullptr,
                 Default_Handler /*PendSV*/, SysTick_Handler},
                {}};
  for (int i = 0; i < kExternalIrqs; ++i) t.external[i] = External_IRQ_Handler;
  return t;
}

__attribute__((section(".isr_vector"), used)) const VectorTable g_vectors = make_table();

}  // extern "C"
