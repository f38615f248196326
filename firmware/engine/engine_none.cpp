// Protocol-conformance build: the firmware speaks the whole protocol (HELLO, ECHO, RESET, verified
// upload) but has no TFLM engine. Every engine call answers NO_ENGINE with a message that says how
// to get one, so a user never mistakes this build for a broken model.
#include "engine/engine.h"
#include "protocol/tinyfarm_protocol.h"

namespace tf {
namespace engine {
namespace {
constexpr Status kNoEngine{TFP_ERR_NO_ENGINE,
                           "no inference engine: this is the protocol-conformance build; "
                           "rebuild the firmware with -DTFLM_ROOT=<tflite-micro tree>"};
}  // namespace

bool available() { return false; }
const char* version() { return "none"; }
const char* kernels() { return "none"; }
uint32_t arena_capacity() { return 0; }
uint32_t arena_used() { return 0; }
bool decodes() { return false; }
uint32_t decompression_capacity() { return 0; }
uint32_t decompression_used() { return 0; }
Status load(const uint8_t*, size_t, uint8_t* inputs, uint8_t* outputs) {
  *inputs = 0;
  *outputs = 0;
  return kNoEngine;
}
void unload() {}
bool loaded() { return false; }
Status ready() { return kNoEngine; }
Status tensor_info(uint8_t, uint8_t, TensorInfo*) { return kNoEngine; }
Status set_input(uint8_t, uint32_t, const uint8_t*, size_t) { return kNoEngine; }
Status invoke() { return kNoEngine; }
Status get_output(uint8_t, uint32_t, uint8_t*, size_t, size_t* copied) {
  *copied = 0;
  return kNoEngine;
}
bool reads_tensors() { return false; }  // no TENSORS capability without an engine
void set_preserve(bool) {}
Status read_tensor(uint32_t, uint32_t, uint8_t*, size_t, size_t* copied, uint8_t*, uint32_t*) {
  *copied = 0;
  return kNoEngine;
}

}  // namespace engine
}  // namespace tf
