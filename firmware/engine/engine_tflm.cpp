// TFLite Micro engine: a MicroInterpreter over a static tensor arena, built only with TFLM_ROOT.
//
// The op resolver covers what tinyfarm's pipeline emits (conv/depthwise/dense/pool/reshape/softmax,
// quantize/dequantize, mean, add/mul, pad, concatenation, activations, LSTM) plus common builtins.
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
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/micro/micro_op_resolver.h"
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

constexpr int kMaxOps = 48 + (TF_TFLM_COMPRESSION ? 1 : 0);
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

const Resolver& resolver() {
  if (g_resolver == nullptr) {
    Resolver* r = new (g_resolver_storage) Resolver();
    // what the tinyfarm pipeline emits
    r->AddConv2D();
    r->AddDepthwiseConv2D();
    r->AddFullyConnected();
    r->AddMaxPool2D();
    r->AddAveragePool2D();
    r->AddReshape();
    r->AddSoftmax();
    r->AddQuantize();
    r->AddDequantize();
    r->AddMean();
    r->AddAdd();
    r->AddMul();
    r->AddPad();
    r->AddConcatenation();
    r->AddLogistic();
    r->AddTanh();
    r->AddRelu();
    r->AddRelu6();
    r->AddUnidirectionalSequenceLSTM();
    // common builtins of small models
    r->AddSub();
    r->AddPadV2();
    r->AddSqueeze();
    r->AddExpandDims();
    r->AddShape();
    r->AddStridedSlice();
    r->AddPack();
    r->AddUnpack();
    r->AddTranspose();
    r->AddGather();
    r->AddSplit();
    r->AddSplitV();
    r->AddSlice();
    r->AddLeakyRelu();
    r->AddHardSwish();
    r->AddMaximum();
    r->AddMinimum();
    r->AddSum();
    r->AddReduceMax();
    r->AddRsqrt();
    r->AddSquaredDifference();
    r->AddResizeNearestNeighbor();
    r->AddSpaceToBatchNd();
    r->AddBatchToSpaceNd();
    r->AddTransposeConv();
    r->AddL2Normalization();
    r->AddLogSoftmax();
    r->AddPrelu();
    r->AddDiv();
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
  g_interpreter = new (g_interpreter_storage) tflite::MicroInterpreter(m, ops, g_arena, TF_ARENA_BYTES);
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

}  // namespace engine
}  // namespace tf
