"""The wire protocol, generated at import time from ``spec.yaml`` (the single source of truth).

``spec`` holds the enums and constants, ``frame`` the frame codec, ``payload`` the generic
per-message pack/unpack. The firmware's C header comes from the same file (``codegen``).
"""

from device_harness.protocol.frame import CrcError, Frame, FrameDecoder, encode_frame, encode_frame_parts
from device_harness.protocol.payload import (
    PayloadError, pack_error, pack_request, pack_response, unpack_error, unpack_request,
    unpack_response,
)
from device_harness.protocol.spec import (
    FRAME_OVERHEAD, MESSAGES, MIN_PAYLOAD, MAX_PAYLOAD_LIMIT, VERSION, Capability, DType,
    ErrorCode, Flag, ModelStatus, MsgType,
)

__all__ = [
    "CrcError", "Frame", "FrameDecoder", "encode_frame", "encode_frame_parts", "PayloadError", "pack_error",
    "pack_request", "pack_response", "unpack_error", "unpack_request", "unpack_response",
    "FRAME_OVERHEAD", "MESSAGES", "MIN_PAYLOAD", "MAX_PAYLOAD_LIMIT", "VERSION", "Capability",
    "DType", "ErrorCode", "Flag", "ModelStatus", "MsgType",
]
