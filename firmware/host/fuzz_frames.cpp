// Host harness for the firmware's frame parser + dispatcher (built with ASan/UBSan by the host-fuzz
// preset). Reads cases from stdin -- each a u32 little-endian length and that many bytes -- runs
// each through a fresh parser and dispatcher, and prints what the device would do:
//   E <kind> <type> <flags> <seq> <length>   a parser event (1 frame, 2 CRC mismatch, 3 too large)
//   R <hex>                                  the reply frame the device would send
//   END <case> <frames> <crc_errors> <header_errors> <skipped>
// With the argument --after-fault, each case starts as after a HardFault reset (report_fault).
// A crash, a sanitizer report or a hang is a bug; tests/firmware checks the output too.
#include <cstdio>
#include <cstring>
#include <vector>

#include "app/dispatcher.h"
#include "protocol/frame.h"

namespace {

uint64_t g_ticks = 0;
uint64_t host_ticks() { return g_ticks += 1000; }

alignas(16) uint8_t g_model[64 * 1024];

const tf::DeviceConfig kConfig{"host-fuzz", "0.0.0-fuzz", "host-counter", 1000000, 1000000,
                               TF_MAX_PAYLOAD, 1, g_model, sizeof(g_model), &host_ticks};

bool read_exact(uint8_t* out, size_t n) { return std::fread(out, 1, n, stdin) == n; }

}  // namespace

int main(int argc, char** argv) {
  const bool after_fault = argc > 1 && std::strcmp(argv[1], "--after-fault") == 0;
  std::vector<uint8_t> rx(TFP_FRAME_OVERHEAD + TF_MAX_PAYLOAD);
  std::vector<uint8_t> tx(TFP_FRAME_OVERHEAD + TF_MAX_PAYLOAD);
  std::vector<uint8_t> input;
  unsigned case_no = 0;
  for (;;) {
    uint8_t len_bytes[4];
    if (!read_exact(len_bytes, 4)) break;
    const uint32_t len = tf::load_u32(len_bytes);
    input.resize(len);
    if (len != 0 && !read_exact(input.data(), len)) return 2;

    tf::FrameParser parser(rx.data(), rx.size(), TF_MAX_PAYLOAD);
    tf::Dispatcher dispatcher(kConfig, parser, tx.data(), tx.size());
    if (after_fault) dispatcher.report_fault("device fault (HardFault) and reset: pc=0x00000000");
    size_t pos = 0;
    for (;;) {
      const tf::FrameEvent ev = parser.next();
      if (ev.kind == tf::FrameEvent::kNeedMore) {
        if (pos == input.size()) break;
        parser.push(input[pos++]);
        continue;
      }
      if (ev.kind == tf::FrameEvent::kFrame &&
          (ev.payload < rx.data() || ev.payload + ev.length > rx.data() + rx.size())) {
        std::fprintf(stderr, "payload outside the frame buffer\n");
        return 3;
      }
      std::printf("E %d %u %u %u %u\n", static_cast<int>(ev.kind), ev.type, ev.flags, ev.seq,
                  ev.length);
      const tf::Reply reply = dispatcher.on_event(ev);
      if (reply.size != 0) {
        std::printf("R ");
        for (size_t i = 0; i < reply.size; ++i) std::printf("%02x", reply.data[i]);
        std::printf("\n");
      }
      if (reply.reset_after) {
        // a device reboots here; keep going with the same objects to stress state handling
      }
    }
    const tf::ParserStats& st = parser.stats();
    std::printf("END %u %u %u %u %u\n", case_no++, static_cast<unsigned>(st.frames),
                static_cast<unsigned>(st.crc_errors), static_cast<unsigned>(st.header_errors),
                static_cast<unsigned>(st.skipped_bytes));
  }
  return 0;
}
