"""The firmware's protocol header is generated from spec.yaml and agrees with the host codec."""

from __future__ import annotations

import copy
import re

import pytest

from device_harness.protocol import codegen
from device_harness.protocol.spec import Capability, ErrorCode, Flag, ModelStatus, MsgType


def header_defines() -> dict[str, int]:
    text = codegen.HEADER_PATH.read_text()
    return {m[1]: int(m[2], 0) for m in re.finditer(r"#define (TFP_\w+) (0x[0-9A-Fa-f]+|\d+)u", text)}


def test_committed_header_matches_the_spec():
    expected = codegen.render_header(codegen.load_spec())
    assert codegen.HEADER_PATH.read_text() == expected, (
        "firmware/protocol/tinyfarm_protocol.h is stale: run python -m device_harness.protocol.codegen")
    assert codegen.main(["--check"]) == 0


def test_header_constants_equal_the_host_codec():
    d = header_defines()
    for enum, prefix in ((MsgType, "TFP_MSG_"), (ErrorCode, "TFP_ERR_"), (Flag, "TFP_FLAG_"),
                         (Capability, "TFP_CAP_"), (ModelStatus, "TFP_MODEL_")):
        for member in enum:
            assert d[prefix + member.name] == int(member), member
    assert d["TFP_HEADER_BYTES"] == 10 and d["TFP_TRAILER_BYTES"] == 4
    assert (d["TFP_SYNC0"], d["TFP_SYNC1"]) == (0xA5, 0x5A)
    # fixed layouts follow from the field list: HELLO's response strings start after 25 bytes
    assert d["TFP_HELLO_RSP_FIRMWARE_VERSION_OFFSET"] == 2 + 2 + 1 + 4 * 5
    assert d["TFP_MODEL_BEGIN_REQ_BYTES"] == 4 + 32
    assert d["TFP_TENSOR_INFO_RSP_DIMS_OFFSET"] == 1 + 4 + 4 + 4 + 1


def test_codegen_check_detects_a_stale_header(tmp_path):
    stale = tmp_path / "h.h"
    stale.write_text(codegen.HEADER_PATH.read_text().replace("TFP_MSG_ECHO 0x03u", "TFP_MSG_ECHO 0x04u"))
    assert codegen.main(["--check", "--out", str(stale)]) == 1


def test_inconsistent_spec_is_rejected():
    spec = copy.deepcopy(codegen.load_spec())
    spec["frame"]["header_bytes"] = 12
    with pytest.raises(ValueError, match="header_bytes"):
        codegen.render_header(spec)
    spec = copy.deepcopy(codegen.load_spec())
    spec["messages"]["ECHO"]["request"] = [{"name": "x", "type": "u24"}]
    with pytest.raises(ValueError, match="unknown field type"):
        codegen.render_header(spec)


def test_committed_error_classes_match_the_spec():
    from device_harness.protocol import device_errors

    assert codegen.ERRORS_PATH.read_text() == codegen.render_errors(codegen.load_spec()), (
        "device_harness/protocol/device_errors.py is stale: run python -m device_harness.protocol.codegen")
    for code in ErrorCode:
        if code != ErrorCode.OK:
            cls = device_errors.error_class(code)
            assert cls.code == int(code) and cls.name == code.name
            assert cls.retryable == codegen.load_spec()["errors"][code.name]["retryable"]
    assert not device_errors.ArenaTooSmallError.retryable and device_errors.DeviceFaultError.retryable


def test_an_error_without_a_retryable_flag_is_rejected():
    spec = copy.deepcopy(codegen.load_spec())
    del spec["errors"]["INTERNAL"]["retryable"]
    with pytest.raises(ValueError, match="retryable"):
        codegen.render_errors(spec)
