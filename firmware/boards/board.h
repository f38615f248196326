// Board support interface: what the application needs from a board, nothing more.
//
// A port implements these in boards/<name>/board.cpp (see boards/generic-cortex-m/ for a template
// that only needs two UART functions and a clock).
#pragma once
#include <cstddef>
#include <cstdint>

#include "app/device_config.h"

namespace board {

// Clocks, UART, tick counter. Called once before anything else.
void init();

// Non-blocking: true and *byte set when a received byte was waiting.
bool uart_read(uint8_t* byte);
// Sleep until a received byte may be waiting (WFI on an RX interrupt; may return early).
void uart_wait();
// Blocking until every byte has been handed to the UART.
void uart_write(const uint8_t* data, size_t n);
// Blocking until the last byte has left the UART (before a reset).
void uart_flush();

// Free-running tick counter in units of config().tick_hz.
uint64_t ticks();

// What HELLO reports and the buffers the application may use.
const tf::DeviceConfig& config();

// Reset the whole device (RESET command, after a fault).
[[noreturn]] void system_reset();

// Why the device last reset, when it was a fault (nullptr otherwise); cleared by the call.
const char* take_fault_report();

}  // namespace board
