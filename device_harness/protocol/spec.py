"""spec.yaml, loaded once, as Python enums and constants.

Everything the codec knows about the wire comes from here, so host and firmware (whose C header is
generated from the same file) cannot drift apart silently.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

import yaml

SPEC_PATH = Path(__file__).with_name("spec.yaml")
SPEC: dict = yaml.safe_load(SPEC_PATH.read_text())

VERSION: int = SPEC["version"]
SYNC: bytes = bytes(SPEC["frame"]["sync"])
HEADER_BYTES: int = SPEC["frame"]["header_bytes"]
TRAILER_BYTES: int = SPEC["frame"]["trailer_bytes"]
MAX_PAYLOAD_LIMIT: int = SPEC["frame"]["max_payload_limit"]
MIN_PAYLOAD: int = SPEC["frame"]["min_payload"]
RESPONSE_MS: int = SPEC["timeouts"]["response_ms"]
RETRIES: int = SPEC["timeouts"]["retries"]
FRAME_OVERHEAD: int = HEADER_BYTES + TRAILER_BYTES

MsgType = enum.IntEnum("MsgType", {name: m["id"] for name, m in SPEC["messages"].items()})
Flag = enum.IntFlag("Flag", SPEC["flags"])
Capability = enum.IntFlag("Capability", SPEC["capabilities"])
ModelStatus = enum.IntFlag("ModelStatus", SPEC["model_status"])
DType = enum.IntEnum("DType", SPEC["dtypes"])
ErrorCode = enum.IntEnum("ErrorCode", {name: e["code"] for name, e in SPEC["errors"].items()})
ERROR_DOCS: dict[int, str] = {e["code"]: e["doc"] for e in SPEC["errors"].values()}

# numpy dtype names of the TfLiteType values (DType)
NUMPY_DTYPES: dict[int, str] = {
    DType.FLOAT32: "float32", DType.INT32: "int32", DType.UINT8: "uint8", DType.INT64: "int64",
    DType.BOOL: "bool", DType.INT16: "int16", DType.INT8: "int8", DType.FLOAT16: "float16",
}
DTYPE_OF_NUMPY: dict[str, int] = {v: k for k, v in NUMPY_DTYPES.items()}


@dataclass(frozen=True)
class Field:
    name: str
    type: str  # u8 u16 u32 u64 i32 f32 str8 bytes, "u8[32]" (fixed) or "i32[ndims]" (counted)


@dataclass(frozen=True)
class MessageSpec:
    name: str
    id: int
    doc: str
    request: tuple[Field, ...]
    response: tuple[Field, ...]


def _fields(items: list[dict]) -> tuple[Field, ...]:
    return tuple(Field(f["name"], f["type"]) for f in items or [])


MESSAGES: dict[int, MessageSpec] = {
    m["id"]: MessageSpec(name, m["id"], m.get("doc", "").strip(), _fields(m["request"]), _fields(m["response"]))
    for name, m in SPEC["messages"].items()
}
ERROR_PAYLOAD: tuple[Field, ...] = _fields(SPEC["error_payload"])
HEADER_FIELDS: tuple[Field, ...] = _fields(SPEC["frame"]["header"])
