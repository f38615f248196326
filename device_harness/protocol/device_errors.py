"""Device errors: one class per error code of the wire protocol.

GENERATED from device_harness/protocol/spec.yaml by `python -m device_harness.protocol.codegen`
-- do not edit by hand; a test fails when this file and spec.yaml disagree.
"""

from __future__ import annotations

from tinyfarm.errors import DeviceReplyError


class UnknownCommandError(DeviceReplyError):
    """UNKNOWN_COMMAND: the message type is not known to this device."""

    code = 1
    name = "UNKNOWN_COMMAND"
    retryable = True


class MalformedError(DeviceReplyError):
    """MALFORMED: the payload does not match the message layout."""

    code = 2
    name = "MALFORMED"
    retryable = True


class CrcMismatchError(DeviceReplyError):
    """CRC_MISMATCH: the frame's payload CRC failed; retransmit."""

    code = 3
    name = "CRC_MISMATCH"
    retryable = True


class PayloadTooLargeError(DeviceReplyError):
    """PAYLOAD_TOO_LARGE: length exceeds the negotiated maximum payload."""

    code = 4
    name = "PAYLOAD_TOO_LARGE"
    retryable = False


class BadStateError(DeviceReplyError):
    """BAD_STATE: the command is not valid now (e.g. MODEL_CHUNK before MODEL_BEGIN)."""

    code = 5
    name = "BAD_STATE"
    retryable = True


class ModelTooLargeError(DeviceReplyError):
    """MODEL_TOO_LARGE: the model is larger than max_model_bytes."""

    code = 6
    name = "MODEL_TOO_LARGE"
    retryable = False


class OutOfOrderError(DeviceReplyError):
    """OUT_OF_ORDER: chunk offset is not the next expected one; message holds the expected offset."""

    code = 7
    name = "OUT_OF_ORDER"
    retryable = True


class HashMismatchError(DeviceReplyError):
    """HASH_MISMATCH: the received model's SHA-256 differs from MODEL_BEGIN's."""

    code = 8
    name = "HASH_MISMATCH"
    retryable = True


class NoModelError(DeviceReplyError):
    """NO_MODEL: no verified model is loaded."""

    code = 9
    name = "NO_MODEL"
    retryable = True


class NoEngineError(DeviceReplyError):
    """NO_ENGINE: this firmware was built without a TFLM engine (protocol-conformance build)."""

    code = 10
    name = "NO_ENGINE"
    retryable = False


class ModelInvalidError(DeviceReplyError):
    """MODEL_INVALID: the bytes are not a usable TFLite flatbuffer (schema version."""

    code = 11
    name = "MODEL_INVALID"
    retryable = False


class OpUnsupportedError(DeviceReplyError):
    """OP_UNSUPPORTED: the model uses an operator the device's op resolver lacks."""

    code = 12
    name = "OP_UNSUPPORTED"
    retryable = False


class ArenaTooSmallError(DeviceReplyError):
    """ARENA_TOO_SMALL: the tensor arena cannot hold the model's tensors."""

    code = 13
    name = "ARENA_TOO_SMALL"
    retryable = False


class BadArgumentError(DeviceReplyError):
    """BAD_ARGUMENT: an argument is out of range (tensor index, offset, run count)."""

    code = 14
    name = "BAD_ARGUMENT"
    retryable = False


class InvokeFailedError(DeviceReplyError):
    """INVOKE_FAILED: the interpreter returned an error during Invoke."""

    code = 15
    name = "INVOKE_FAILED"
    retryable = False


class DeviceFaultError(DeviceReplyError):
    """DEVICE_FAULT: the device crashed (HardFault, twin's TFLM process died) and was reset."""

    code = 16
    name = "DEVICE_FAULT"
    retryable = True


class InternalError(DeviceReplyError):
    """INTERNAL: an unexpected device-side failure."""

    code = 17
    name = "INTERNAL"
    retryable = True


class CompressionUnsupportedError(DeviceReplyError):
    """COMPRESSION_UNSUPPORTED: the model uses TFLM weight compression (DECODE operators) and the device was built without it (no DECODE capability)."""

    code = 18
    name = "COMPRESSION_UNSUPPORTED"
    retryable = False


class BusyError(DeviceReplyError):
    """BUSY: another host holds the device (a shared twin or serial server); the message names it; try again when it is released."""

    code = 19
    name = "BUSY"
    retryable = True


BY_CODE: dict[int, type[DeviceReplyError]] = {
    1: UnknownCommandError,
    2: MalformedError,
    3: CrcMismatchError,
    4: PayloadTooLargeError,
    5: BadStateError,
    6: ModelTooLargeError,
    7: OutOfOrderError,
    8: HashMismatchError,
    9: NoModelError,
    10: NoEngineError,
    11: ModelInvalidError,
    12: OpUnsupportedError,
    13: ArenaTooSmallError,
    14: BadArgumentError,
    15: InvokeFailedError,
    16: DeviceFaultError,
    17: InternalError,
    18: CompressionUnsupportedError,
    19: BusyError,
}


def error_class(code: int) -> type[DeviceReplyError]:
    """The class for an error code (the generic base for a code this host does not know)."""
    return BY_CODE.get(int(code), DeviceReplyError)
