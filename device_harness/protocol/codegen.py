"""Generate the firmware's C/C++ protocol header and the host's error classes from ``spec.yaml``.

The wire protocol has one source of truth (``spec.yaml``); the firmware must not restate it by hand.
This module reads the YAML directly (it does not go through the host codec, so a bug there cannot
hide a disagreement) and writes ``firmware/protocol/tinyfarm_protocol.h``: sync bytes, header and
trailer sizes, message ids, flags, error codes, dtypes, capabilities, model status, the protocol
version, and the byte offsets/sizes of every fixed-layout part of every payload.

    python -m device_harness.protocol.codegen            # rewrite both files
    python -m device_harness.protocol.codegen --check    # exit 1 when a committed file is stale

The error classes (``device_harness/protocol/device_errors.py``) are plain Python, one class per
error code with its ``retryable`` flag, so host code names them statically (``except
ArenaTooSmallError``) and a retry decision reads one attribute.

The output is C-compatible (``#define`` only) so a generic board port written in C can include it.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import yaml

SPEC_PATH = Path(__file__).resolve().with_name("spec.yaml")
REPO_ROOT = Path(__file__).resolve().parents[2]
HEADER_PATH = REPO_ROOT / "firmware" / "protocol" / "tinyfarm_protocol.h"
ERRORS_PATH = Path(__file__).resolve().with_name("device_errors.py")

# Scalar wire types and their sizes in bytes (all little-endian).
SCALAR_SIZES = {"u8": 1, "u16": 2, "u32": 4, "u64": 8, "i32": 4, "f32": 4}
_ARRAY = re.compile(r"^(?P<elem>u8|u16|u32|u64|i32|f32)\[(?P<count>[A-Za-z0-9_]+)\]$")


def load_spec(path: Path = SPEC_PATH) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _ident(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def field_size(ftype: str) -> int | None:
    """Wire size of a field type, or None when it is variable (str8, bytes, counted arrays)."""
    if ftype in SCALAR_SIZES:
        return SCALAR_SIZES[ftype]
    match = _ARRAY.match(ftype)
    if match and match["count"].isdigit():
        return SCALAR_SIZES[match["elem"]] * int(match["count"])
    if ftype in ("str8", "bytes") or match:
        return None
    raise ValueError(f"spec.yaml: unknown field type {ftype!r}")


def _layout_lines(prefix: str, fields: list[dict[str, Any]]) -> list[str]:
    """Offsets/sizes of the fixed-layout prefix of a payload, then its fixed size or minimum size.

    Fields after the first variable-size one have no fixed offset, so only the first variable
    field gets an offset (where it starts); its size is not defined.
    """
    lines: list[str] = []
    offset = 0
    fixed = True
    for fld in fields:
        name = f"{prefix}_{_ident(fld['name'])}"
        size = field_size(fld["type"])
        if not fixed:
            continue
        lines.append(f"#define {name}_OFFSET {offset}u")
        if size is None:
            fixed = False
            continue
        lines.append(f"#define {name}_SIZE {size}u")
        offset += size
    if fixed:
        lines.append(f"#define {prefix}_BYTES {offset}u  /* exact payload size */")
    else:
        lines.append(f"#define {prefix}_MIN_BYTES {offset}u  /* fixed part before the first "
                     "variable field */")
    return lines


def render_header(spec: dict[str, Any]) -> str:
    """The header text for a parsed spec (pure function: same spec, same bytes)."""
    frame = spec["frame"]
    out: list[str] = [
        "/* tinyfarm wire protocol constants for the firmware.",
        " *",
        " * GENERATED from device_harness/protocol/spec.yaml by",
        " * `python -m device_harness.protocol.codegen` -- do not edit by hand; a test fails when this",
        " * file and spec.yaml disagree. All integers on the wire are little-endian.",
        " */",
        "#ifndef TINYFARM_PROTOCOL_H",
        "#define TINYFARM_PROTOCOL_H",
        "",
        f"#define TFP_PROTOCOL_VERSION {int(spec['version'])}u",
        "",
        "/* ---- frame layout ---- */",
    ]
    sync = frame["sync"]
    for i, byte in enumerate(sync):
        out.append(f"#define TFP_SYNC{i} 0x{int(byte):02X}u")
    out.append(f"#define TFP_SYNC_BYTES {len(sync)}u")
    offset = len(sync)
    for fld in frame["header"]:
        size = field_size(fld["type"])
        assert size is not None, "header fields must be fixed-size"
        name = _ident(fld["name"])
        out.append(f"#define TFP_HDR_{name}_OFFSET {offset}u")
        out.append(f"#define TFP_HDR_{name}_SIZE {size}u")
        offset += size
    if offset != int(frame["header_bytes"]):
        raise ValueError(f"spec.yaml: header fields add up to {offset} bytes, "
                         f"header_bytes says {frame['header_bytes']}")
    trailer = sum(field_size(f["type"]) or 0 for f in frame["trailer"])
    if trailer != int(frame["trailer_bytes"]):
        raise ValueError(f"spec.yaml: trailer fields add up to {trailer} bytes, "
                         f"trailer_bytes says {frame['trailer_bytes']}")
    out += [
        f"#define TFP_HEADER_BYTES {int(frame['header_bytes'])}u  /* sync + header */",
        f"#define TFP_TRAILER_BYTES {int(frame['trailer_bytes'])}u  /* CRC-32 */",
        f"#define TFP_FRAME_OVERHEAD {int(frame['header_bytes']) + int(frame['trailer_bytes'])}u",
        f"#define TFP_MAX_PAYLOAD_LIMIT {int(frame['max_payload_limit'])}u",
        f"#define TFP_MIN_PAYLOAD {int(frame['min_payload'])}u",
        "/* hcrc = low 16 bits of CRC-32 over the header bytes from `type` to `length` */",
        f"#define TFP_HCRC_SPAN_OFFSET {len(sync)}u",
        f"#define TFP_HCRC_SPAN_BYTES {int(frame['header_bytes']) - len(sync) - 2}u",
        "",
        "/* ---- host timing (for reference on the device) ---- */",
        f"#define TFP_RESPONSE_TIMEOUT_MS {int(spec['timeouts']['response_ms'])}u",
        f"#define TFP_RETRIES {int(spec['timeouts']['retries'])}u",
        "",
    ]

    def table(title: str, prefix: str, items: dict[str, Any], key: str | None = None,
              hexfmt: bool = True) -> None:
        out.append(f"/* ---- {title} ---- */")
        for name, value in items.items():
            val = int(value[key] if key else value)
            text = f"0x{val:02X}u" if hexfmt else f"{val}u"
            out.append(f"#define {prefix}{_ident(name)} {text}")
        out.append("")

    table("flags", "TFP_FLAG_", spec["flags"])
    table("message types", "TFP_MSG_", {n: m["id"] for n, m in spec["messages"].items()})
    table("error codes", "TFP_ERR_", spec["errors"], key="code", hexfmt=False)
    table("capabilities", "TFP_CAP_", spec["capabilities"])
    table("model status bits (MODEL_END)", "TFP_MODEL_", spec["model_status"])
    table("tensor dtypes (TfLiteType numbering)", "TFP_DTYPE_", spec["dtypes"], hexfmt=False)

    out.append("/* ---- payload layouts ----")
    out.append(" * <MSG>_<REQ|RSP>_<FIELD>_OFFSET and _SIZE for every fixed-position field;")
    out.append(" * <MSG>_<REQ|RSP>_BYTES = exact size of a fixed payload, _MIN_BYTES = size of the")
    out.append(" * fixed part of a payload that ends in variable fields (str8, bytes, arrays). */")
    out += _layout_lines("TFP_ERROR_PAYLOAD", spec["error_payload"])
    out.append("")
    for name, msg in spec["messages"].items():
        for part, tag in (("request", "REQ"), ("response", "RSP")):
            out += _layout_lines(f"TFP_{_ident(name)}_{tag}", msg.get(part) or [])
        out.append("")
    out.append("#endif /* TINYFARM_PROTOCOL_H */")
    return "\n".join(out) + "\n"


def error_class_name(name: str) -> str:
    """``ARENA_TOO_SMALL`` -> ``ArenaTooSmallError``."""
    return "".join(part.title() for part in name.split("_")) + "Error"


def render_errors(spec: dict[str, Any]) -> str:
    """The Python module of device error classes for a parsed spec (pure function)."""
    out = [
        '"""Device errors: one class per error code of the wire protocol.',
        "",
        "GENERATED from device_harness/protocol/spec.yaml by `python -m device_harness.protocol.codegen`",
        "-- do not edit by hand; a test fails when this file and spec.yaml disagree.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "from tinyfarm.errors import DeviceReplyError",
        "",
    ]
    names = []
    for name, entry in spec["errors"].items():
        if int(entry["code"]) == 0:
            continue  # OK is not an error
        if not isinstance(entry.get("retryable"), bool):
            raise ValueError(f"spec.yaml: error {name} needs retryable: true|false")
        cls = error_class_name(name)
        names.append((int(entry["code"]), cls))
        doc = str(entry["doc"]).replace('"', "'")
        out += ["", f"class {cls}(DeviceReplyError):", f'    """{name}: {doc}."""', "",
                f"    code = {int(entry['code'])}", f'    name = "{name}"',
                f"    retryable = {bool(entry['retryable'])}", ""]
    out += ["", "BY_CODE: dict[int, type[DeviceReplyError]] = {"]
    out += [f"    {code}: {cls}," for code, cls in names]
    out += ["}", "", "",
            "def error_class(code: int) -> type[DeviceReplyError]:",
            '    """The class for an error code (the generic base for a code this host does not know)."""',
            "    return BY_CODE.get(int(code), DeviceReplyError)", ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=SPEC_PATH)
    parser.add_argument("--out", type=Path, default=HEADER_PATH, help="the C header")
    parser.add_argument("--errors-out", type=Path, default=ERRORS_PATH, help="the Python error classes")
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 when a file differs from the spec")
    args = parser.parse_args(argv)
    spec = load_spec(args.spec)
    outputs = ((args.out, render_header(spec)), (args.errors_out, render_errors(spec)))
    if args.check:
        stale = [path for path, text in outputs
                 if (path.read_text(encoding="utf-8") if path.exists() else "") != text]
        for path in stale:
            print(f"{path} is stale: run python -m device_harness.protocol.codegen", file=sys.stderr)
        return 1 if stale else 0
    for path, text in outputs:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
