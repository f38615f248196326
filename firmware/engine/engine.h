// The inference engine seen by the dispatcher. Two implementations:
//   engine_tflm.cpp -- TFLite Micro MicroInterpreter (built only when TFLM_ROOT is given);
//   engine_none.cpp -- the protocol-conformance build: no engine, every call answers NO_ENGINE.
#pragma once
#include <cstddef>
#include <cstdint>

namespace tf {
namespace engine {

struct Status {
  uint16_t code;        // TFP_ERR_* (TFP_ERR_OK on success)
  const char* message;  // human readable; static storage
  bool ok() const { return code == 0; }
};

constexpr size_t kMaxDims = 8;

struct TensorInfo {
  uint8_t dtype;        // TfLiteType numbering (TFP_DTYPE_*)
  uint32_t bytes;
  float scale;
  int32_t zero_point;
  uint8_t ndims;
  int32_t dims[kMaxDims];
};

// True when a real engine is linked (HELLO's ENGINE capability).
bool available();
// TFLM version string for HELLO ("none" in the engine-less build).
const char* version();
// The kernel library the engine was built with: "reference" (TFLM's portable kernels), "cmsis-nn"
// (TFLM's CMSIS-NN kernels), ... ("none" in the engine-less build). Outputs and ticks depend on it.
const char* kernels();
// Tensor arena capacity in bytes (0 without an engine).
uint32_t arena_capacity();
// Bytes of the arena the loaded model uses (0 when nothing is loaded).
uint32_t arena_used();
// True when the engine runs TFLM-compressed models: TFLM's DECODE operator is registered
// (HELLO's DECODE capability; built with -DTINYFARM_TFLM_COMPRESSION=ON).
bool decodes();
// Alternate decompression memory where DECODE writes decoded weights outside the arena: its size
// (0 without one) and what the loaded model's DECODE outputs take of it (0 when not compressed).
uint32_t decompression_capacity();
uint32_t decompression_used();

// Intermediate tensors (HELLO's TENSORS capability; only a build with -DTINYFARM_TENSOR_DEBUG=ON and
// an engine): set_preserve(true) makes the following load()s build the interpreter with TFLM's
// preserve_all_tensors (every tensor keeps its own arena space; sticky until set_preserve(false)),
// and read_tensor() then copies tensor `index` (subgraph 0) after an invoke: its type, its whole
// size, and up to `max_len` bytes from `offset`. BAD_STATE when the model was not loaded preserving
// or not invoked since, BAD_ARGUMENT for an index past the model's tensors or an offset past the end.
bool reads_tensors();
void set_preserve(bool enable);
Status read_tensor(uint32_t index, uint32_t offset, uint8_t* out, size_t max_len, size_t* copied,
                   uint8_t* dtype, uint32_t* bytes);

// Build an interpreter for a verified model that stays at `model` for as long as it is loaded.
Status load(const uint8_t* model, size_t size, uint8_t* inputs, uint8_t* outputs);
// Drop the interpreter (RESET, a new upload).
void unload();
bool loaded();
// OK when a model is loaded and commands can run; NO_ENGINE / NO_MODEL otherwise.
Status ready();

Status tensor_info(uint8_t direction, uint8_t index, TensorInfo* out);
Status set_input(uint8_t index, uint32_t offset, const uint8_t* data, size_t n);
Status invoke();
// Copies up to `max_len` bytes of output `index` from `offset`; `*copied` gets the count.
Status get_output(uint8_t index, uint32_t offset, uint8_t* out, size_t max_len, size_t* copied);

}  // namespace engine
}  // namespace tf
