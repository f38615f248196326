/* tinyfarm wire protocol constants for the firmware.
 *
 * GENERATED from device_harness/protocol/spec.yaml by
 * `python -m device_harness.protocol.codegen` -- do not edit by hand; a test fails when this
 * file and spec.yaml disagree. All integers on the wire are little-endian.
 */
#ifndef TINYFARM_PROTOCOL_H
#define TINYFARM_PROTOCOL_H

#define TFP_PROTOCOL_VERSION 1u

/* ---- frame layout ---- */
#define TFP_SYNC0 0xA5u
#define TFP_SYNC1 0x5Au
#define TFP_SYNC_BYTES 2u
#define TFP_HDR_TYPE_OFFSET 2u
#define TFP_HDR_TYPE_SIZE 1u
#define TFP_HDR_FLAGS_OFFSET 3u
#define TFP_HDR_FLAGS_SIZE 1u
#define TFP_HDR_SEQ_OFFSET 4u
#define TFP_HDR_SEQ_SIZE 2u
#define TFP_HDR_LENGTH_OFFSET 6u
#define TFP_HDR_LENGTH_SIZE 2u
#define TFP_HDR_HCRC_OFFSET 8u
#define TFP_HDR_HCRC_SIZE 2u
#define TFP_HEADER_BYTES 10u  /* sync + header */
#define TFP_TRAILER_BYTES 4u  /* CRC-32 */
#define TFP_FRAME_OVERHEAD 14u
#define TFP_MAX_PAYLOAD_LIMIT 65535u
#define TFP_MIN_PAYLOAD 256u
/* hcrc = low 16 bits of CRC-32 over the header bytes from `type` to `length` */
#define TFP_HCRC_SPAN_OFFSET 2u
#define TFP_HCRC_SPAN_BYTES 6u

/* ---- host timing (for reference on the device) ---- */
#define TFP_RESPONSE_TIMEOUT_MS 1000u
#define TFP_RETRIES 5u

/* ---- flags ---- */
#define TFP_FLAG_RESPONSE 0x01u
#define TFP_FLAG_ERROR 0x02u

/* ---- message types ---- */
#define TFP_MSG_HELLO 0x01u
#define TFP_MSG_KERNELS 0x04u
#define TFP_MSG_RESET 0x02u
#define TFP_MSG_ECHO 0x03u
#define TFP_MSG_MODEL_BEGIN 0x10u
#define TFP_MSG_MODEL_CHUNK 0x11u
#define TFP_MSG_MODEL_END 0x12u
#define TFP_MSG_TENSOR_INFO 0x20u
#define TFP_MSG_SET_INPUT 0x21u
#define TFP_MSG_INVOKE 0x22u
#define TFP_MSG_GET_OUTPUT 0x23u
#define TFP_MSG_BENCH 0x24u
#define TFP_MSG_ARENA 0x25u
#define TFP_MSG_DECOMPRESSION 0x26u
#define TFP_MSG_PRESERVE_TENSORS 0x27u
#define TFP_MSG_READ_TENSOR 0x28u

/* ---- error codes ---- */
#define TFP_ERR_OK 0u
#define TFP_ERR_UNKNOWN_COMMAND 1u
#define TFP_ERR_MALFORMED 2u
#define TFP_ERR_CRC_MISMATCH 3u
#define TFP_ERR_PAYLOAD_TOO_LARGE 4u
#define TFP_ERR_BAD_STATE 5u
#define TFP_ERR_MODEL_TOO_LARGE 6u
#define TFP_ERR_OUT_OF_ORDER 7u
#define TFP_ERR_HASH_MISMATCH 8u
#define TFP_ERR_NO_MODEL 9u
#define TFP_ERR_NO_ENGINE 10u
#define TFP_ERR_MODEL_INVALID 11u
#define TFP_ERR_OP_UNSUPPORTED 12u
#define TFP_ERR_ARENA_TOO_SMALL 13u
#define TFP_ERR_BAD_ARGUMENT 14u
#define TFP_ERR_INVOKE_FAILED 15u
#define TFP_ERR_DEVICE_FAULT 16u
#define TFP_ERR_INTERNAL 17u
#define TFP_ERR_COMPRESSION_UNSUPPORTED 18u
#define TFP_ERR_BUSY 19u

/* ---- capabilities ---- */
#define TFP_CAP_ENGINE 0x01u
#define TFP_CAP_PACED 0x02u
#define TFP_CAP_DECODE 0x04u
#define TFP_CAP_KERNELS 0x08u
#define TFP_CAP_TENSORS 0x10u

/* ---- model status bits (MODEL_END) ---- */
#define TFP_MODEL_VERIFIED 0x01u
#define TFP_MODEL_LOADED 0x02u

/* ---- tensor dtypes (TfLiteType numbering) ---- */
#define TFP_DTYPE_FLOAT32 1u
#define TFP_DTYPE_INT32 2u
#define TFP_DTYPE_UINT8 3u
#define TFP_DTYPE_INT64 4u
#define TFP_DTYPE_BOOL 6u
#define TFP_DTYPE_INT16 7u
#define TFP_DTYPE_INT8 9u
#define TFP_DTYPE_FLOAT16 10u

/* ---- payload layouts ----
 * <MSG>_<REQ|RSP>_<FIELD>_OFFSET and _SIZE for every fixed-position field;
 * <MSG>_<REQ|RSP>_BYTES = exact size of a fixed payload, _MIN_BYTES = size of the
 * fixed part of a payload that ends in variable fields (str8, bytes, arrays). */
#define TFP_ERROR_PAYLOAD_CODE_OFFSET 0u
#define TFP_ERROR_PAYLOAD_CODE_SIZE 2u
#define TFP_ERROR_PAYLOAD_MESSAGE_OFFSET 2u
#define TFP_ERROR_PAYLOAD_MIN_BYTES 2u  /* fixed part before the first variable field */

#define TFP_HELLO_REQ_PROTOCOL_VERSION_OFFSET 0u
#define TFP_HELLO_REQ_PROTOCOL_VERSION_SIZE 2u
#define TFP_HELLO_REQ_MAX_PAYLOAD_OFFSET 2u
#define TFP_HELLO_REQ_MAX_PAYLOAD_SIZE 2u
#define TFP_HELLO_REQ_BYTES 4u  /* exact payload size */
#define TFP_HELLO_RSP_PROTOCOL_VERSION_OFFSET 0u
#define TFP_HELLO_RSP_PROTOCOL_VERSION_SIZE 2u
#define TFP_HELLO_RSP_MAX_PAYLOAD_OFFSET 2u
#define TFP_HELLO_RSP_MAX_PAYLOAD_SIZE 2u
#define TFP_HELLO_RSP_RX_WINDOW_OFFSET 4u
#define TFP_HELLO_RSP_RX_WINDOW_SIZE 1u
#define TFP_HELLO_RSP_CAPABILITIES_OFFSET 5u
#define TFP_HELLO_RSP_CAPABILITIES_SIZE 4u
#define TFP_HELLO_RSP_CPU_HZ_OFFSET 9u
#define TFP_HELLO_RSP_CPU_HZ_SIZE 4u
#define TFP_HELLO_RSP_TICK_HZ_OFFSET 13u
#define TFP_HELLO_RSP_TICK_HZ_SIZE 4u
#define TFP_HELLO_RSP_ARENA_BYTES_OFFSET 17u
#define TFP_HELLO_RSP_ARENA_BYTES_SIZE 4u
#define TFP_HELLO_RSP_MAX_MODEL_BYTES_OFFSET 21u
#define TFP_HELLO_RSP_MAX_MODEL_BYTES_SIZE 4u
#define TFP_HELLO_RSP_FIRMWARE_VERSION_OFFSET 25u
#define TFP_HELLO_RSP_MIN_BYTES 25u  /* fixed part before the first variable field */

#define TFP_KERNELS_REQ_BYTES 0u  /* exact payload size */
#define TFP_KERNELS_RSP_KERNELS_OFFSET 0u
#define TFP_KERNELS_RSP_MIN_BYTES 0u  /* fixed part before the first variable field */

#define TFP_RESET_REQ_BYTES 0u  /* exact payload size */
#define TFP_RESET_RSP_BYTES 0u  /* exact payload size */

#define TFP_ECHO_REQ_DATA_OFFSET 0u
#define TFP_ECHO_REQ_MIN_BYTES 0u  /* fixed part before the first variable field */
#define TFP_ECHO_RSP_DATA_OFFSET 0u
#define TFP_ECHO_RSP_MIN_BYTES 0u  /* fixed part before the first variable field */

#define TFP_MODEL_BEGIN_REQ_SIZE_OFFSET 0u
#define TFP_MODEL_BEGIN_REQ_SIZE_SIZE 4u
#define TFP_MODEL_BEGIN_REQ_SHA256_OFFSET 4u
#define TFP_MODEL_BEGIN_REQ_SHA256_SIZE 32u
#define TFP_MODEL_BEGIN_REQ_BYTES 36u  /* exact payload size */
#define TFP_MODEL_BEGIN_RSP_BYTES 0u  /* exact payload size */

#define TFP_MODEL_CHUNK_REQ_OFFSET_OFFSET 0u
#define TFP_MODEL_CHUNK_REQ_OFFSET_SIZE 4u
#define TFP_MODEL_CHUNK_REQ_DATA_OFFSET 4u
#define TFP_MODEL_CHUNK_REQ_MIN_BYTES 4u  /* fixed part before the first variable field */
#define TFP_MODEL_CHUNK_RSP_RECEIVED_OFFSET 0u
#define TFP_MODEL_CHUNK_RSP_RECEIVED_SIZE 4u
#define TFP_MODEL_CHUNK_RSP_BYTES 4u  /* exact payload size */

#define TFP_MODEL_END_REQ_BYTES 0u  /* exact payload size */
#define TFP_MODEL_END_RSP_STATUS_OFFSET 0u
#define TFP_MODEL_END_RSP_STATUS_SIZE 1u
#define TFP_MODEL_END_RSP_ARENA_USED_OFFSET 1u
#define TFP_MODEL_END_RSP_ARENA_USED_SIZE 4u
#define TFP_MODEL_END_RSP_INPUTS_OFFSET 5u
#define TFP_MODEL_END_RSP_INPUTS_SIZE 1u
#define TFP_MODEL_END_RSP_OUTPUTS_OFFSET 6u
#define TFP_MODEL_END_RSP_OUTPUTS_SIZE 1u
#define TFP_MODEL_END_RSP_BYTES 7u  /* exact payload size */

#define TFP_TENSOR_INFO_REQ_DIRECTION_OFFSET 0u
#define TFP_TENSOR_INFO_REQ_DIRECTION_SIZE 1u
#define TFP_TENSOR_INFO_REQ_INDEX_OFFSET 1u
#define TFP_TENSOR_INFO_REQ_INDEX_SIZE 1u
#define TFP_TENSOR_INFO_REQ_BYTES 2u  /* exact payload size */
#define TFP_TENSOR_INFO_RSP_DTYPE_OFFSET 0u
#define TFP_TENSOR_INFO_RSP_DTYPE_SIZE 1u
#define TFP_TENSOR_INFO_RSP_BYTES_OFFSET 1u
#define TFP_TENSOR_INFO_RSP_BYTES_SIZE 4u
#define TFP_TENSOR_INFO_RSP_SCALE_OFFSET 5u
#define TFP_TENSOR_INFO_RSP_SCALE_SIZE 4u
#define TFP_TENSOR_INFO_RSP_ZERO_POINT_OFFSET 9u
#define TFP_TENSOR_INFO_RSP_ZERO_POINT_SIZE 4u
#define TFP_TENSOR_INFO_RSP_NDIMS_OFFSET 13u
#define TFP_TENSOR_INFO_RSP_NDIMS_SIZE 1u
#define TFP_TENSOR_INFO_RSP_DIMS_OFFSET 14u
#define TFP_TENSOR_INFO_RSP_MIN_BYTES 14u  /* fixed part before the first variable field */

#define TFP_SET_INPUT_REQ_INDEX_OFFSET 0u
#define TFP_SET_INPUT_REQ_INDEX_SIZE 1u
#define TFP_SET_INPUT_REQ_OFFSET_OFFSET 1u
#define TFP_SET_INPUT_REQ_OFFSET_SIZE 4u
#define TFP_SET_INPUT_REQ_DATA_OFFSET 5u
#define TFP_SET_INPUT_REQ_MIN_BYTES 5u  /* fixed part before the first variable field */
#define TFP_SET_INPUT_RSP_BYTES 0u  /* exact payload size */

#define TFP_INVOKE_REQ_BYTES 0u  /* exact payload size */
#define TFP_INVOKE_RSP_TICKS_OFFSET 0u
#define TFP_INVOKE_RSP_TICKS_SIZE 8u
#define TFP_INVOKE_RSP_BYTES 8u  /* exact payload size */

#define TFP_GET_OUTPUT_REQ_INDEX_OFFSET 0u
#define TFP_GET_OUTPUT_REQ_INDEX_SIZE 1u
#define TFP_GET_OUTPUT_REQ_OFFSET_OFFSET 1u
#define TFP_GET_OUTPUT_REQ_OFFSET_SIZE 4u
#define TFP_GET_OUTPUT_REQ_LENGTH_OFFSET 5u
#define TFP_GET_OUTPUT_REQ_LENGTH_SIZE 2u
#define TFP_GET_OUTPUT_REQ_BYTES 7u  /* exact payload size */
#define TFP_GET_OUTPUT_RSP_DATA_OFFSET 0u
#define TFP_GET_OUTPUT_RSP_MIN_BYTES 0u  /* fixed part before the first variable field */

#define TFP_BENCH_REQ_WARMUP_OFFSET 0u
#define TFP_BENCH_REQ_WARMUP_SIZE 4u
#define TFP_BENCH_REQ_RUNS_OFFSET 4u
#define TFP_BENCH_REQ_RUNS_SIZE 4u
#define TFP_BENCH_REQ_BYTES 8u  /* exact payload size */
#define TFP_BENCH_RSP_COUNT_OFFSET 0u
#define TFP_BENCH_RSP_COUNT_SIZE 4u
#define TFP_BENCH_RSP_TICKS_OFFSET 4u
#define TFP_BENCH_RSP_MIN_BYTES 4u  /* fixed part before the first variable field */

#define TFP_ARENA_REQ_BYTES 0u  /* exact payload size */
#define TFP_ARENA_RSP_USED_OFFSET 0u
#define TFP_ARENA_RSP_USED_SIZE 4u
#define TFP_ARENA_RSP_CAPACITY_OFFSET 4u
#define TFP_ARENA_RSP_CAPACITY_SIZE 4u
#define TFP_ARENA_RSP_BYTES 8u  /* exact payload size */

#define TFP_DECOMPRESSION_REQ_BYTES 0u  /* exact payload size */
#define TFP_DECOMPRESSION_RSP_USED_OFFSET 0u
#define TFP_DECOMPRESSION_RSP_USED_SIZE 4u
#define TFP_DECOMPRESSION_RSP_CAPACITY_OFFSET 4u
#define TFP_DECOMPRESSION_RSP_CAPACITY_SIZE 4u
#define TFP_DECOMPRESSION_RSP_BYTES 8u  /* exact payload size */

#define TFP_PRESERVE_TENSORS_REQ_ENABLE_OFFSET 0u
#define TFP_PRESERVE_TENSORS_REQ_ENABLE_SIZE 1u
#define TFP_PRESERVE_TENSORS_REQ_BYTES 1u  /* exact payload size */
#define TFP_PRESERVE_TENSORS_RSP_BYTES 0u  /* exact payload size */

#define TFP_READ_TENSOR_REQ_INDEX_OFFSET 0u
#define TFP_READ_TENSOR_REQ_INDEX_SIZE 4u
#define TFP_READ_TENSOR_REQ_OFFSET_OFFSET 4u
#define TFP_READ_TENSOR_REQ_OFFSET_SIZE 4u
#define TFP_READ_TENSOR_REQ_LENGTH_OFFSET 8u
#define TFP_READ_TENSOR_REQ_LENGTH_SIZE 2u
#define TFP_READ_TENSOR_REQ_BYTES 10u  /* exact payload size */
#define TFP_READ_TENSOR_RSP_DTYPE_OFFSET 0u
#define TFP_READ_TENSOR_RSP_DTYPE_SIZE 1u
#define TFP_READ_TENSOR_RSP_BYTES_OFFSET 1u
#define TFP_READ_TENSOR_RSP_BYTES_SIZE 4u
#define TFP_READ_TENSOR_RSP_DATA_OFFSET 5u
#define TFP_READ_TENSOR_RSP_MIN_BYTES 5u  /* fixed part before the first variable field */

#endif /* TINYFARM_PROTOCOL_H */
