// TFLite Micro engine: a MicroInterpreter over a static tensor arena, built only with TFLM_ROOT.
//
// The op resolver covers every builtin of TFLM's kernels but ETHOSU (TF_ENGINE_OPS below), SVDF,
// TFLM's CIRCULAR_BUFFER / detection post-processing, the resource-variable ops and the signal
// library's custom ops included. A model with VAR_HANDLE operators gets a MicroResourceVariables
// from the arena, sized to its distinct variables, as TFLM's own examples create it.
// A model is checked before the interpreter sees it: flatbuffer verification (MODEL_INVALID), schema
// version, every operator present in the resolver (OP_UNSUPPORTED, naming the op), then
// AllocateTensors (ARENA_TOO_SMALL with TFLM's own message).
//
// TFLM weight compression (TF_TFLM_COMPRESSION, CMake option TINYFARM_TFLM_COMPRESSION): the
// resolver also has DECODE (the custom operator "TFLM_DECODE" that TFLM's compression tool inserts
// before each consumer of compressed weights), and a compressed model gets TF_DECOMPRESSION_BYTES
// of alternate decompression memory beside the arena, where DECODE writes what it decodes (what
// does not fit goes into the arena). Without the option a compressed model answers
// COMPRESSION_UNSUPPORTED.
#include <cstring>
#include <new>

#include "engine/engine.h"
#include "engine/tflm_platform.h"
#include "protocol/tinyfarm_protocol.h"
#include "protocol/wire.h"
#include "tensorflow/lite/micro/memory_helpers.h"
#include "tensorflow/lite/micro/micro_allocator.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/micro/micro_op_resolver.h"
#include "tensorflow/lite/micro/micro_resource_variable.h"
#include "tensorflow/lite/schema/schema_generated.h"
#if __has_include("tensorflow/compiler/mlir/lite/schema/schema_utils.h")
#include "tensorflow/compiler/mlir/lite/schema/schema_utils.h"  // TFLM 2024+
#else
#include "tensorflow/lite/schema/schema_utils.h"
#endif

#ifndef TF_ARENA_BYTES
#error "TF_ARENA_BYTES must be set by the board's CMake settings"
#endif
#ifndef TF_ARENA_SECTION
#define TF_ARENA_SECTION ".noinit.arena"
#endif
#ifndef TF_TFLM_COMPRESSION
#define TF_TFLM_COMPRESSION 0
#endif
#ifndef TF_DECOMPRESSION_BYTES
#define TF_DECOMPRESSION_BYTES 0u
#endif

namespace tf {
namespace engine {
namespace {

// The op resolver's contents: one list, so its capacity is its length (no hand count).
// Every builtin TFLM's kernels provide (micro_mutable_op_resolver.h, TFLM 90b983c2) except ETHOSU
// (an NPU): what the tinyfarm pipeline emits, what converted Keras models use, every op of TFLM's
// examples (hello_world, micro_speech and its audio preprocessor, person_detection, mnist_lstm,
// memory_footprint's keyword-spotting model with SVDF), the resource-variable ops (VAR_HANDLE,
// READ_VARIABLE, ASSIGN_VARIABLE, CALL_ONCE: the interpreter gets a MicroResourceVariables sized
// to the model's variables, below) and, when the TFLM tree has its signal library
// (TF_TFLM_SIGNAL, set by cmake/engine.cmake), the signal library's custom ops (TF_ENGINE_SIGNAL_OPS).
// -DTINYFARM_TFLM_OPS="Conv2D;FullyConnected;..." (CMake) replaces both lists for a part whose
// flash cannot hold every kernel. TF_OP(name) is defined at each use of the lists.
#ifndef TF_TFLM_SIGNAL
#define TF_TFLM_SIGNAL 0
#endif
#ifndef TF_ENGINE_SIGNAL_OPS
#if TF_TFLM_SIGNAL
// tflm_signal::Register_*: custom ops "SignalWindow", "SignalRfft", ... (TFLM's signal/micro/kernels)
#define TF_ENGINE_SIGNAL_OPS                                                                      \
  TF_OP(Delay) TF_OP(Energy) TF_OP(FftAutoScale) TF_OP(FilterBank) TF_OP(FilterBankLog)           \
  TF_OP(FilterBankSquareRoot) TF_OP(FilterBankSpectralSubtraction) TF_OP(Framer) TF_OP(Irfft)     \
  TF_OP(OverlapAdd) TF_OP(PCAN) TF_OP(Rfft) TF_OP(Stacker) TF_OP(Window)
#else
#define TF_ENGINE_SIGNAL_OPS
#endif
#endif
#ifndef TF_ENGINE_OPS
#define TF_ENGINE_OPS                                                                             \
  /* what the tinyfarm pipeline emits */                                                          \
  TF_OP(Conv2D) TF_OP(DepthwiseConv2D) TF_OP(FullyConnected) TF_OP(MaxPool2D)                     \
  TF_OP(AveragePool2D) TF_OP(Reshape) TF_OP(Softmax) TF_OP(Quantize) TF_OP(Dequantize)            \
  TF_OP(Mean) TF_OP(Add) TF_OP(Mul) TF_OP(Pad) TF_OP(Concatenation) TF_OP(Logistic) TF_OP(Tanh)   \
  TF_OP(Relu) TF_OP(Relu6) TF_OP(UnidirectionalSequenceLSTM)                                      \
  /* keyword spotting and TFLM's examples */                                                      \
  TF_OP(Svdf) TF_OP(CircularBuffer) TF_OP(Cast) TF_OP(StridedSlice) TF_OP(Maximum) TF_OP(Minimum) \
  TF_OP(Div) TF_OP(DetectionPostprocess)                                                          \
  /* the other builtins of TFLM's kernels */                                                      \
  TF_OP(Abs) TF_OP(AddN) TF_OP(ArgMax) TF_OP(ArgMin) TF_OP(BatchMatMul) TF_OP(BatchToSpaceNd)     \
  TF_OP(BroadcastArgs) TF_OP(BroadcastTo) TF_OP(Ceil) TF_OP(Cos) TF_OP(CumSum)                    \
  TF_OP(DepthToSpace) TF_OP(DynamicUpdateSlice) TF_OP(EmbeddingLookup) TF_OP(Elu) TF_OP(Equal)    \
  TF_OP(Exp) TF_OP(ExpandDims) TF_OP(Fill) TF_OP(Floor) TF_OP(FloorDiv) TF_OP(FloorMod)           \
  TF_OP(Gather) TF_OP(GatherNd) TF_OP(Greater) TF_OP(GreaterEqual) TF_OP(HardSwish) TF_OP(If)     \
  TF_OP(L2Normalization) TF_OP(L2Pool2D) TF_OP(LeakyRelu) TF_OP(Less) TF_OP(LessEqual) TF_OP(Log) \
  TF_OP(LogicalAnd) TF_OP(LogicalNot) TF_OP(LogicalOr) TF_OP(LogSoftmax) TF_OP(MirrorPad)         \
  TF_OP(Neg) TF_OP(NotEqual) TF_OP(Pack) TF_OP(PadV2) TF_OP(Prelu) TF_OP(ReduceAll)               \
  TF_OP(ReduceMax) TF_OP(ReduceMin) TF_OP(ResizeBilinear) TF_OP(ResizeNearestNeighbor)            \
  TF_OP(ReverseV2) TF_OP(Round) TF_OP(Rsqrt) TF_OP(SelectV2) TF_OP(Shape) TF_OP(Sin) TF_OP(Slice) \
  TF_OP(SpaceToBatchNd) TF_OP(SpaceToDepth) TF_OP(Split) TF_OP(SplitV) TF_OP(Sqrt) TF_OP(Square)  \
  TF_OP(SquaredDifference) TF_OP(Squeeze) TF_OP(Sub) TF_OP(Sum) TF_OP(Transpose)                  \
  TF_OP(TransposeConv) TF_OP(Unpack) TF_OP(While) TF_OP(ZerosLike)                               \
  /* resource variables (MicroResourceVariables) */                                               \
  TF_OP(VarHandle) TF_OP(ReadVariable) TF_OP(AssignVariable) TF_OP(CallOnce)                      \
  TF_ENGINE_SIGNAL_OPS
#endif

#define TF_OP(name) +1
constexpr int kListedOps = 0 TF_ENGINE_OPS;
#undef TF_OP
constexpr int kMaxOps = kListedOps + (TF_TFLM_COMPRESSION ? 1 : 0);
using Resolver = tflite::MicroMutableOpResolver<kMaxOps>;
constexpr char kDecodeOp[] = "TFLM_DECODE";  // custom code of TFLM's DECODE operator
constexpr size_t kDecodeAlignment = 16;      // MicroArenaBufferAlignment(): each DECODE output's start

alignas(16) __attribute__((section(TF_ARENA_SECTION))) uint8_t g_arena[TF_ARENA_BYTES];
#if TF_TFLM_COMPRESSION && TF_DECOMPRESSION_BYTES > 0
constexpr uint32_t kDecompressionBytes = TF_DECOMPRESSION_BYTES;
alignas(16) __attribute__((section(".noinit.decompression"))) uint8_t g_decompression[TF_DECOMPRESSION_BYTES];
// must outlive every interpreter that uses it (SetDecompressionMemory keeps the pointer)
const tflite::MicroContext::AlternateMemoryRegion g_decompression_region{g_decompression,
                                                                         TF_DECOMPRESSION_BYTES};
#else
constexpr uint32_t kDecompressionBytes = 0;
#endif
uint32_t g_decompression_used = 0;
alignas(Resolver) uint8_t g_resolver_storage[sizeof(Resolver)];
alignas(tflite::MicroInterpreter) uint8_t g_interpreter_storage[sizeof(tflite::MicroInterpreter)];
Resolver* g_resolver = nullptr;
tflite::MicroInterpreter* g_interpreter = nullptr;
Message g_message;  // text of the last error (static storage for Status::message)
#ifndef TF_TENSOR_DEBUG
#define TF_TENSOR_DEBUG 0
#endif
bool g_preserve = false;     // set_preserve(): the next loads keep every tensor
bool g_preserved = false;    // the loaded model keeps every tensor
bool g_invoked = false;      // an invoke since the model was loaded
uint32_t g_tensor_count = 0; // tensors of the loaded model's subgraph 0

const Resolver& resolver() {
  if (g_resolver == nullptr) {
    Resolver* r = new (g_resolver_storage) Resolver();
    // kMaxOps counts the list, so no registration runs out of room
#define TF_OP(name) r->Add##name();
    TF_ENGINE_OPS
#undef TF_OP
#if TF_TFLM_COMPRESSION
    r->AddDecode();  // the custom operator "TFLM_DECODE"
#endif
    g_resolver = r;
  }
  return *g_resolver;
}

Status error(uint16_t code, const char* what) {
  g_message = Message();
  g_message << what;
  if (const char* log = tflm_last_log(); log[0] != '\0') g_message << ": " << log;
  return Status{code, g_message.c_str()};
}

constexpr Status kOk{TFP_ERR_OK, ""};

// Bytes per element of a TfLiteType / tflite::TensorType value (int4 decodes to one byte each).
size_t element_bytes(int type) {
  switch (type) {
    case 0: case 2: case 15: return 4;            // FLOAT32 INT32 UINT32
    case 1: case 7: case 16: case 18: return 2;   // FLOAT16 INT16 UINT16 BFLOAT16
    case 4: case 8: case 10: case 12: return 8;   // INT64 COMPLEX64 FLOAT64 UINT64
    case 11: return 16;                           // COMPLEX128
    default: return 1;                            // UINT8 BOOL INT8 INT4 ...
  }
}

bool is_decode(const tflite::OperatorCode* code) {
  return tflite::GetBuiltinCode(code) == tflite::BuiltinOperator_CUSTOM && code->custom_code() &&
         std::strcmp(code->custom_code()->c_str(), kDecodeOp) == 0;
}

// What DECODE outputs take of `capacity` bytes of decompression memory, placed as TFLM's DECODE
// kernel places them: each DECODE operator starts the memory afresh and lays its outputs out one
// after the other, each aligned; an output that does not fit goes into the arena instead.
[[maybe_unused]] uint32_t decompression_need(const tflite::Model* m, size_t capacity) {
  const auto* codes = m->operator_codes();
  const auto* subgraphs = m->subgraphs();
  if (codes == nullptr || subgraphs == nullptr) return 0;
  size_t need = 0;
  for (const tflite::SubGraph* sg : *subgraphs) {
    if (sg->operators() == nullptr || sg->tensors() == nullptr) continue;
    for (const tflite::Operator* op : *sg->operators()) {
      if (op->opcode_index() >= codes->size() || !is_decode(codes->Get(op->opcode_index()))) continue;
      if (op->outputs() == nullptr) continue;
      size_t end = 0;
      for (const int32_t index : *op->outputs()) {
        if (index < 0 || static_cast<uint32_t>(index) >= sg->tensors()->size()) continue;
        const tflite::Tensor* t = sg->tensors()->Get(static_cast<uint32_t>(index));
        size_t bytes = element_bytes(static_cast<int>(t->type()));
        if (t->shape()) {
          for (const int32_t d : *t->shape()) bytes *= d > 0 ? static_cast<size_t>(d) : 0u;
        }
        const size_t start = (end + kDecodeAlignment - 1) / kDecodeAlignment * kDecodeAlignment;
        if (start + bytes <= capacity) end = start + bytes;
      }
      if (end > need) need = end;
    }
  }
  return static_cast<uint32_t>(need);
}

const char* str_or_empty(const flatbuffers::String* s) { return s ? s->c_str() : ""; }

// Distinct resource variables of a model: VAR_HANDLE operators with distinct (container,
// shared_name), as MicroResourceVariables::CreateIdIfNoneFound tells them apart. 0: no variables.
int resource_variables(const tflite::Model* m) {
  const auto* codes = m->operator_codes();
  const auto* subgraphs = m->subgraphs();
  if (codes == nullptr || subgraphs == nullptr) return 0;
  const tflite::VarHandleOptions* seen[64];
  int count = 0;
  int overflow = 0;  // past `seen`: counted without deduplication (an upper bound is safe)
  for (const tflite::SubGraph* sg : *subgraphs) {
    if (sg->operators() == nullptr) continue;
    for (const tflite::Operator* op : *sg->operators()) {
      if (op->opcode_index() >= codes->size() ||
          tflite::GetBuiltinCode(codes->Get(op->opcode_index())) != tflite::BuiltinOperator_VAR_HANDLE) {
        continue;
      }
      const tflite::VarHandleOptions* o = op->builtin_options_as_VarHandleOptions();
      const char* container = o ? str_or_empty(o->container()) : "";
      const char* name = o ? str_or_empty(o->shared_name()) : "";
      bool known = false;
      for (int i = 0; i < count && !known; ++i) {
        known = std::strcmp(str_or_empty(seen[i]->container()), container) == 0 &&
                std::strcmp(str_or_empty(seen[i]->shared_name()), name) == 0;
      }
      if (known) continue;
      if (o != nullptr && count < static_cast<int>(sizeof(seen) / sizeof(seen[0]))) {
        seen[count++] = o;
      } else {
        ++overflow;
      }
    }
  }
  return count + overflow;
}

TfLiteTensor* tensor(uint8_t direction, uint8_t index) {
  if (g_interpreter == nullptr) return nullptr;
  if (direction == 0) return index < g_interpreter->inputs_size() ? g_interpreter->input(index) : nullptr;
  if (direction == 1) return index < g_interpreter->outputs_size() ? g_interpreter->output(index) : nullptr;
  return nullptr;
}

}  // namespace

bool available() { return true; }
#ifndef TF_TFLM_VERSION
#define TF_TFLM_VERSION "tflite-micro"
#endif
const char* version() { return TF_TFLM_VERSION; }
#ifndef TF_TFLM_KERNELS
#define TF_TFLM_KERNELS "reference"
#endif
const char* kernels() { return TF_TFLM_KERNELS; }
uint32_t arena_capacity() { return TF_ARENA_BYTES; }
uint32_t arena_used() {
  return g_interpreter ? static_cast<uint32_t>(g_interpreter->arena_used_bytes()) : 0u;
}
bool decodes() { return TF_TFLM_COMPRESSION != 0; }
uint32_t decompression_capacity() { return kDecompressionBytes; }
uint32_t decompression_used() { return g_interpreter ? g_decompression_used : 0u; }
bool loaded() { return g_interpreter != nullptr; }

Status ready() {
  if (g_interpreter == nullptr) return Status{TFP_ERR_NO_MODEL, "no verified model is loaded; upload one first"};
  return kOk;
}

void unload() {
  if (g_interpreter != nullptr) {
    g_interpreter->~MicroInterpreter();
    g_interpreter = nullptr;
  }
}

Status load(const uint8_t* model, size_t size, uint8_t* inputs, uint8_t* outputs) {
  unload();
  tflm_clear_log();
  *inputs = *outputs = 0;
  flatbuffers::Verifier verifier(model, size);
  if (!tflite::VerifyModelBuffer(verifier)) {
    return error(TFP_ERR_MODEL_INVALID, "not a valid TFLite flatbuffer");
  }
  const tflite::Model* m = tflite::GetModel(model);
  if (m->version() != TFLITE_SCHEMA_VERSION) {
    g_message = Message();
    g_message << "model schema version " << m->version() << ", this TFLM reads "
              << uint32_t{TFLITE_SCHEMA_VERSION};
    return Status{TFP_ERR_MODEL_INVALID, g_message.c_str()};
  }
  const Resolver& ops = resolver();
  bool compressed = false;
  if (const auto* codes = m->operator_codes()) {
    for (const tflite::OperatorCode* code : *codes) {
      const tflite::BuiltinOperator op = tflite::GetBuiltinCode(code);
      if (is_decode(code)) {
        compressed = true;
        if (TF_TFLM_COMPRESSION) continue;
        return Status{TFP_ERR_COMPRESSION_UNSUPPORTED,
                      "the model uses TFLM weight compression (TFLM_DECODE operators); this firmware "
                      "was built without it: rebuild with -DTINYFARM_TFLM_COMPRESSION=ON (firmware/README.md)"};
      }
      if (op == tflite::BuiltinOperator_CUSTOM) {
        // TFLM's own custom kernels (CIRCULAR_BUFFER, TFLite_Detection_PostProcess) are registered
        if (code->custom_code() != nullptr && ops.FindOp(code->custom_code()->c_str()) != nullptr) continue;
        g_message = Message();
        g_message << "custom operator " << (code->custom_code() ? code->custom_code()->c_str() : "?")
                  << " is not in this firmware's op resolver";
        return Status{TFP_ERR_OP_UNSUPPORTED, g_message.c_str()};
      }
      if (ops.FindOp(op) == nullptr) {
        g_message = Message();
        g_message << "operator " << tflite::EnumNameBuiltinOperator(op) << " (builtin "
                  << static_cast<uint32_t>(op) << ") is not in this firmware's op resolver";
        return Status{TFP_ERR_OP_UNSUPPORTED, g_message.c_str()};
      }
    }
  }
  g_preserved = TF_TENSOR_DEBUG && g_preserve;
  g_invoked = false;
  g_tensor_count = (m->subgraphs() && m->subgraphs()->size() > 0 && m->subgraphs()->Get(0)->tensors())
                       ? m->subgraphs()->Get(0)->tensors()->size()
                       : 0u;
  // The allocator first, so that the resource variables (a model with VAR_HANDLE operators) come
  // from the same arena, as in TFLM's examples; preserve_all_tensors is the linear planner.
  tflite::MicroAllocator* allocator = tflite::MicroAllocator::Create(
      g_arena, TF_ARENA_BYTES,
      g_preserved ? tflite::MemoryPlannerType::kLinear : tflite::MemoryPlannerType::kGreedy);
  if (allocator == nullptr) return error(TFP_ERR_ARENA_TOO_SMALL, "MicroAllocator::Create failed");
  tflite::MicroResourceVariables* variables = nullptr;
  if (const int n = resource_variables(m); n > 0) {
    // Create() does not check its two allocations: leave room for them (a generous bound of the
    // object and of n five-field records, alignment included)
    if (allocator->used_bytes() + 64u + 32u * static_cast<size_t>(n) > TF_ARENA_BYTES) {
      return error(TFP_ERR_ARENA_TOO_SMALL, "no room in the arena for the model's resource variables");
    }
    variables = tflite::MicroResourceVariables::Create(allocator, n);
  }
  g_interpreter = new (g_interpreter_storage) tflite::MicroInterpreter(m, ops, allocator, variables);
  g_decompression_used = 0;
#if TF_TFLM_COMPRESSION && TF_DECOMPRESSION_BYTES > 0
  // only for a compressed model: the region's bookkeeping takes a few bytes of the arena
  if (compressed) {
    if (g_interpreter->SetDecompressionMemory(&g_decompression_region, 1) != kTfLiteOk) {
      unload();
      return error(TFP_ERR_ARENA_TOO_SMALL, "no room in the arena for the decompression memory's bookkeeping");
    }
    g_decompression_used = decompression_need(m, kDecompressionBytes);
  }
#else
  (void)compressed;
#endif
  if (g_interpreter->AllocateTensors() != kTfLiteOk) {
    unload();
    return error(TFP_ERR_ARENA_TOO_SMALL, "AllocateTensors failed");
  }
  *inputs = static_cast<uint8_t>(g_interpreter->inputs_size());
  *outputs = static_cast<uint8_t>(g_interpreter->outputs_size());
  return kOk;
}

Status tensor_info(uint8_t direction, uint8_t index, TensorInfo* out) {
  const TfLiteTensor* t = tensor(direction, index);
  if (t == nullptr) return Status{TFP_ERR_BAD_ARGUMENT, "no such tensor (direction 0/1, index < count)"};
  out->dtype = static_cast<uint8_t>(t->type);
  out->bytes = static_cast<uint32_t>(t->bytes);
  out->scale = t->params.scale;
  out->zero_point = t->params.zero_point;
  const int n = t->dims ? t->dims->size : 0;
  out->ndims = static_cast<uint8_t>(n < static_cast<int>(kMaxDims) ? n : kMaxDims);
  for (uint8_t i = 0; i < out->ndims; ++i) out->dims[i] = t->dims->data[i];
  return kOk;
}

Status set_input(uint8_t index, uint32_t offset, const uint8_t* data, size_t n) {
  TfLiteTensor* t = tensor(0, index);
  if (t == nullptr) return Status{TFP_ERR_BAD_ARGUMENT, "no such input tensor"};
  if (offset > t->bytes || n > t->bytes - offset) {
    return Status{TFP_ERR_BAD_ARGUMENT, "input bytes past the end of the tensor"};
  }
  std::memcpy(t->data.raw + offset, data, n);
  return kOk;
}

Status invoke() {
  if (g_interpreter == nullptr) return ready();
  tflm_clear_log();
  if (g_interpreter->Invoke() != kTfLiteOk) return error(TFP_ERR_INVOKE_FAILED, "Invoke failed");
  g_invoked = true;
  return kOk;
}

Status get_output(uint8_t index, uint32_t offset, uint8_t* out, size_t max_len, size_t* copied) {
  *copied = 0;
  const TfLiteTensor* t = tensor(1, index);
  if (t == nullptr) return Status{TFP_ERR_BAD_ARGUMENT, "no such output tensor"};
  if (offset > t->bytes) return Status{TFP_ERR_BAD_ARGUMENT, "offset past the end of the tensor"};
  const size_t n = (t->bytes - offset) < max_len ? t->bytes - offset : max_len;
  std::memcpy(out, t->data.raw + offset, n);
  *copied = n;
  return kOk;
}

bool reads_tensors() { return TF_TENSOR_DEBUG != 0; }
void set_preserve(bool enable) { g_preserve = enable; }

Status read_tensor(uint32_t index, uint32_t offset, uint8_t* out, size_t max_len, size_t* copied,
                   uint8_t* dtype, uint32_t* bytes) {
  *copied = 0;
  if (g_interpreter == nullptr) return ready();
  if (!g_preserved) {
    return Status{TFP_ERR_BAD_STATE, "the model was not loaded with PRESERVE_TENSORS 1 (send it before the upload)"};
  }
  if (!g_invoked) return Status{TFP_ERR_BAD_STATE, "no INVOKE since the model was loaded"};
  if (index >= g_tensor_count) {
    g_message = Message();
    g_message << "tensor " << index << " of " << g_tensor_count;
    return Status{TFP_ERR_BAD_ARGUMENT, g_message.c_str()};
  }
  const TfLiteEvalTensor* t = g_interpreter->GetTensor(static_cast<int>(index), 0);
  size_t n = 0;
  if (t == nullptr || tflite::TfLiteEvalTensorByteLength(t, &n) != kTfLiteOk) {
    return error(TFP_ERR_INTERNAL, "GetTensor failed");
  }
  if (offset > n) return Status{TFP_ERR_BAD_ARGUMENT, "offset past the end of the tensor"};
  *dtype = static_cast<uint8_t>(t->type);
  *bytes = static_cast<uint32_t>(n);
  const size_t k = (n - offset) < max_len ? n - offset : max_len;
  if (k > 0 && t->data.raw != nullptr) std::memcpy(out, static_cast<const uint8_t*>(t->data.data) + offset, k);
  *copied = k;
  return kOk;
}

}  // namespace engine
}  // namespace tf
