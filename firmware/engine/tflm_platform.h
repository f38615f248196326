// TFLM platform glue: the UART carries the protocol, so TFLM's log goes to a buffer whose last line
// is appended to the engine's error messages (e.g. why AllocateTensors failed).
#pragma once

namespace tf {
namespace engine {
const char* tflm_last_log();
void tflm_clear_log();
}  // namespace engine
}  // namespace tf
