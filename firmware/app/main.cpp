// Device main loop: bytes in from the UART -> frame parser -> dispatcher -> one response out.
#include "app/dispatcher.h"
#include "boards/board.h"
#include "protocol/frame.h"
#include "protocol/tinyfarm_protocol.h"

#ifndef TF_MAX_PAYLOAD
#error "TF_MAX_PAYLOAD must be defined by the board's CMake settings"
#endif

namespace {
// One frame buffer per direction (the protocol is stop-and-wait unless the board's rx_window says
// otherwise, and the UART back-pressures or buffers what arrives while a frame is processed).
alignas(4) uint8_t g_rx[TFP_FRAME_OVERHEAD + TF_MAX_PAYLOAD];
alignas(4) uint8_t g_tx[TFP_FRAME_OVERHEAD + TF_MAX_PAYLOAD];
}  // namespace

int main() {
  board::init();
  static tf::FrameParser parser(g_rx, sizeof(g_rx), TF_MAX_PAYLOAD);
  static tf::Dispatcher dispatcher(board::config(), parser, g_tx, sizeof(g_tx));
  if (const char* fault = board::take_fault_report()) dispatcher.report_fault(fault);

  for (;;) {
    const tf::FrameEvent ev = parser.next();
    if (ev.kind == tf::FrameEvent::kNeedMore) {
      uint8_t byte;
      while (!board::uart_read(&byte)) board::uart_wait();
      parser.push(byte);
      continue;
    }
    const tf::Reply reply = dispatcher.on_event(ev);
    if (reply.size != 0) board::uart_write(reply.data, reply.size);
    if (reply.reset_after) {
      board::uart_flush();
      board::system_reset();
    }
  }
}
