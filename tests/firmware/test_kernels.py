"""The engine's op list and kernel library as a user meets them: the op resolver's capacity is the
length of one list (no hand count) that covers TFLM's example models' builtins (SVDF included), and
the KERNELS handshake names the kernel library ("none" without an engine, "reference" on the twin)."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from device_harness.protocol import (
    Capability,
    ErrorCode,
    MsgType,
    pack_request,
    unpack_error,
    unpack_response,
)
from device_harness.protocol.frame import FrameDecoder, encode_frame

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware"
ENGINE = FIRMWARE / "engine" / "engine_tflm.cpp"


def _block(name: str) -> str:
    """The body of the first ``#define NAME`` ... up to the next line that starts with ``#``."""
    block = re.search(rf"#define {name}\b(.*?)\n#", ENGINE.read_text(), re.DOTALL)
    assert block, f"engine_tflm.cpp has no {name} list"
    return block.group(1)


def _listed_ops() -> list[str]:
    """Every op of the resolver's list: TF_ENGINE_OPS and the signal ops it expands to."""
    ops = re.findall(r"TF_OP\((\w+)\)", _block("TF_ENGINE_OPS"))
    assert "TF_ENGINE_SIGNAL_OPS" in _block("TF_ENGINE_OPS")
    return ops + _signal_ops()


def _signal_ops() -> list[str]:
    return re.findall(r"TF_OP\((\w+)\)", _block("TF_ENGINE_SIGNAL_OPS"))


def test_op_resolver_capacity_is_the_length_of_its_one_list():
    text = ENGINE.read_text()
    ops = _listed_ops()
    assert len(ops) == len(set(ops)), sorted({o for o in ops if ops.count(o) > 1})
    # capacity derived from the list (+ DECODE with compression), never a hand-written count
    assert re.search(r"#define TF_OP\(name\) \+1\nconstexpr int kListedOps = 0 TF_ENGINE_OPS;", text)
    assert re.search(r"constexpr int kMaxOps = kListedOps \+ \(TF_TFLM_COMPRESSION \? 1 : 0\);", text)
    assert re.search(r"#define TF_OP\(name\) r->Add##name\(\);\n\s*TF_ENGINE_OPS\n", text)
    assert not re.search(r"r->Add(?!Decode|##)\w*\(", text), "an op registered outside the list"
    assert len(ops) >= 110  # 102 builtins + 14 signal ops at TFLM 90b983c2
    # the signal ops only where the tree has the signal library (cmake/engine.cmake: TF_TFLM_SIGNAL)
    assert re.search(r"#if TF_TFLM_SIGNAL\n(//.*\n)?#define TF_ENGINE_SIGNAL_OPS\b", text)
    assert re.search(r"#else\n#define TF_ENGINE_SIGNAL_OPS\n#endif", text)


def test_resource_variables_come_from_the_arena_allocator():
    """VAR_HANDLE & co. need a MicroResourceVariables: created from the interpreter's own
    MicroAllocator (so it lives in the arena) and handed to the MicroInterpreter, as in TFLM's
    examples, sized to the model's distinct variables."""
    text = ENGINE.read_text()
    assert {"VarHandle", "ReadVariable", "AssignVariable", "CallOnce"} <= set(_listed_ops())
    alloc = re.search(r"tflite::MicroAllocator\* (\w+) = tflite::MicroAllocator::Create\(\s*g_arena, TF_ARENA_BYTES", text)
    assert alloc, "the allocator is not created over the arena"
    var = re.search(rf"(\w+) = tflite::MicroResourceVariables::Create\({alloc.group(1)}, (\w+)\)", text)
    assert var, "MicroResourceVariables not created from that allocator"
    assert re.search(rf"tflite::MicroInterpreter\(m, ops, {alloc.group(1)}, {var.group(1)}\)", text)
    assert re.search(r"resource_variables\(m\)", text) and "BuiltinOperator_VAR_HANDLE" in text


def test_op_list_covers_what_keras_models_and_tflm_examples_use():
    ops = set(_listed_ops())
    # TFLM's examples: hello_world, micro_speech (model part), person_detection, mnist_lstm,
    # memory_footprint (keyword spotting with SVDF); and what converted Keras models emit
    examples = {"FullyConnected", "Reshape", "Softmax", "DepthwiseConv2D", "Conv2D", "AveragePool2D",
                "UnidirectionalSequenceLSTM", "Svdf", "Quantize", "Dequantize", "StridedSlice",
                "Maximum", "Minimum", "Mul", "Add", "Div", "Cast", "Concatenation", "Logistic"}
    keras = {"MaxPool2D", "Mean", "Pad", "Relu", "Relu6", "Tanh", "HardSwish", "LeakyRelu", "Transpose",
             "BatchMatMul", "Gather", "Pack", "Unpack", "Split", "SplitV", "Slice", "Squeeze",
             "ExpandDims", "Shape", "ResizeBilinear", "ResizeNearestNeighbor", "TransposeConv",
             "Sub", "Exp", "Sqrt", "Rsqrt", "Square", "SquaredDifference", "Sum", "ReduceMax",
             "ArgMax", "Elu", "Prelu", "L2Normalization", "LogSoftmax", "Greater", "Less", "Equal",
             "SelectV2", "Fill", "ZerosLike", "MirrorPad", "CumSum", "BroadcastTo"}
    assert examples <= ops, sorted(examples - ops)
    assert keras <= ops, sorted(keras - ops)


def test_op_list_names_only_methods_of_tflms_resolver():
    """Against the TFLM tree the engine builds compile ($TFLM_ROOT, else ../shared/tflm): every listed
    op is an Add<Op>() of MicroMutableOpResolver, and every builtin it offers is listed or
    deliberately left out."""
    from device_harness.firmware_builds import tflm_missing, tflm_root

    if tflm_missing():
        pytest.skip(tflm_missing())
    header = tflm_root() / "tensorflow/lite/micro/micro_mutable_op_resolver.h"
    offered = set(re.findall(r"TfLiteStatus Add(\w+)\(", header.read_text()))
    ops = set(_listed_ops())
    assert ops <= offered, sorted(ops - offered)
    left_out = {"Custom", "Builtin", "EthosU", "Decode"}  # not ops / NPU / with compression only
    assert offered - left_out <= ops, sorted(offered - left_out - ops)
    # the signal ops: exactly those the resolver registers from tflm_signal
    text = header.read_text()
    signal = set(re.findall(r"TfLiteStatus Add(\w+)\([^;]*?tflm_signal::Register_", text, re.DOTALL))
    assert signal and set(_signal_ops()) == signal, sorted(set(_signal_ops()) ^ signal)


def _run(fuzz_binary: Path, frames: list[bytes], *args: str) -> list:
    stream = b"".join(frames)
    proc = subprocess.run([str(fuzz_binary), *args], input=struct.pack("<I", len(stream)) + stream,
                          capture_output=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-3000:]
    replies = [bytes.fromhex(l.split()[1]) for l in proc.stdout.decode().splitlines() if l.startswith("R ")]
    return [FrameDecoder().feed(r)[0] for r in replies]


def _hello(seq: int) -> bytes:
    return encode_frame(MsgType.HELLO, seq, pack_request(MsgType.HELLO, protocol_version=1, max_payload=1024))


def test_engine_less_firmware_names_no_kernel_library(fuzz_binary):
    hello, kernels, bad = _run(fuzz_binary, [_hello(1), encode_frame(MsgType.KERNELS, 2, b""),
                                             encode_frame(MsgType.KERNELS, 3, b"x")])
    caps = unpack_response(MsgType.HELLO, hello.payload)["capabilities"]
    assert caps & Capability.KERNELS and not caps & Capability.ENGINE
    assert not kernels.is_error and unpack_response(MsgType.KERNELS, kernels.payload) == {"kernels": "none"}
    assert bad.is_error and unpack_error(bad.payload)["code"] == ErrorCode.MALFORMED


def test_kernels_after_a_fault_leaves_the_fault_report_for_the_next_command(fuzz_binary):
    """The host sends KERNELS as part of the handshake: like HELLO, it does not consume the
    DEVICE_FAULT report, which the user's first command gets."""
    hello, kernels, echo = _run(fuzz_binary, [_hello(1), encode_frame(MsgType.KERNELS, 2, b""),
                                              encode_frame(MsgType.ECHO, 3, b"y")], "--after-fault")
    assert not hello.is_error and not kernels.is_error
    assert echo.is_error and unpack_error(echo.payload)["code"] == ErrorCode.DEVICE_FAULT


def test_twin_names_the_wheels_reference_kernels():
    from device_harness.boards import get_board
    from device_harness.client import DeviceClient
    from device_harness.twin.server import TwinServer

    with TwinServer(get_board("mps2-an386")) as twin, DeviceClient.open(twin.url) as dev:
        info = dev.hello()
    assert info.kernels == "reference" and info.capabilities & Capability.KERNELS
    assert info.as_dict()["kernels"] == "reference"


@pytest.mark.emulator
def test_qemu_engine_less_build_reports_kernels_none(qemu_elf):
    from device_harness.backends.qemu import QemuBackend
    from device_harness.client import DeviceClient

    if shutil.which("qemu-system-arm") is None:
        pytest.skip("qemu-system-arm not on PATH")
    with QemuBackend(qemu_elf) as qemu, DeviceClient.open(qemu.url, baud=qemu.baud) as dev:
        info = dev.hello()
    assert info.tflm_version == "none" and info.kernels == "none"


def _fake_tflm(root: Path, *, cmsis: bool = False, signal: bool = False, kissfft: bool = True) -> Path:
    """A TFLM-shaped tree of empty files: enough for CMake to configure (nothing is compiled)."""
    files = ["tensorflow/lite/micro/micro_interpreter.h", "tensorflow/lite/micro/micro_interpreter.cc",
             "tensorflow/lite/micro/debug_log.cc", "tensorflow/lite/micro/test_helpers.cc",
             "tensorflow/lite/micro/kernels/conv.cc", "tensorflow/lite/micro/kernels/conv_test.cc",
             "tensorflow/lite/micro/kernels/svdf.cc", "tensorflow/lite/micro/kernels/cmsis_nn/conv.cc",
             "tensorflow/lite/micro/examples/hello_world/main.cc", "tensorflow/lite/array.cc",
             "tensorflow/lite/core/api/flatbuffer_conversions.cc",
             "tensorflow/lite/micro/tools/make/downloads/flatbuffers/include/flatbuffers/flatbuffers.h",
             "tensorflow/lite/micro/tools/make/downloads/gemmlowp/fixedpoint/fixedpoint.h",
             "tensorflow/lite/micro/tools/make/downloads/ruy/ruy/profiler/instrumentation.h"]
    if cmsis:
        files += ["dl/cmsis/CMSIS/Core/Include/cmsis_compiler.h", "dl/cmsis_nn/Include/arm_nnfunctions.h",
                  "dl/cmsis_nn/Source/ConvolutionFunctions/arm_convolve_s8.c",
                  "dl/cmsis_nn/Source/ConvolutionFunctions/arm_convolve_f32.c"]
    if signal:
        files += ["signal/micro/kernels/window.cc", "signal/micro/kernels/window_test.cc",
                  "signal/micro/kernels/window_flexbuffers_generated_data.cc", "signal/src/window.cc",
                  "signal/src/kiss_fft_wrappers/kiss_fft_int16.cc"]
        if kissfft:
            files += ["tensorflow/lite/micro/tools/make/downloads/kissfft/kiss_fft.c"]
    for f in files:
        (root / f).parent.mkdir(parents=True, exist_ok=True)
        (root / f).write_text("")
    return root


def _configure(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    if shutil.which("cmake") is None or shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("cmake or arm-none-eabi-gcc not on PATH")
    return subprocess.run(["cmake", "--preset", "qemu-mps2-an386", "-B", str(tmp_path / "build"), *args],
                          cwd=FIRMWARE, capture_output=True, text=True, timeout=300, check=False)


def _compiled(tmp_path: Path) -> dict[str, str]:
    import json

    commands = json.loads((tmp_path / "build" / "compile_commands.json").read_text())
    return {c["file"]: c["command"] for c in commands}


def test_tflm_root_alone_compiles_tflm_with_the_presets_cpu_flags(tmp_path):
    tree = _fake_tflm(tmp_path / "tflm")
    proc = _configure(tmp_path, f"-DTFLM_ROOT={tree}")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    compiled = _compiled(tmp_path)
    k = tree / "tensorflow/lite/micro/kernels"
    assert str(k / "conv.cc") in compiled and str(k / "svdf.cc") in compiled
    assert str(tree / "tensorflow/lite/core/api/flatbuffer_conversions.cc") in compiled
    for left_out in (k / "conv_test.cc", k / "cmsis_nn/conv.cc", tree / "tensorflow/lite/micro/debug_log.cc",
                     tree / "tensorflow/lite/micro/test_helpers.cc", tree / "tensorflow/lite/array.cc",
                     tree / "tensorflow/lite/micro/examples/hello_world/main.cc"):
        assert str(left_out) not in compiled, left_out
    conv = compiled[str(k / "conv.cc")]
    # the preset's hard-float flags, as the firmware's own sources get them
    assert "-mcpu=cortex-m4" in conv and "-mfloat-abi=hard" in conv and "-mfpu=fpv4-sp-d16" in conv
    assert "-DTF_LITE_STATIC_MEMORY" in conv
    engine = next(c for f, c in compiled.items() if f.endswith("engine/engine_tflm.cpp"))
    assert '-DTF_TFLM_KERNELS=\\"reference\\"' in engine
    assert "-DTF_TFLM_SIGNAL=0" in engine  # a tree without the signal library: no signal ops
    assert not any("/signal/" in f for f in compiled)


def test_a_tree_with_the_signal_library_compiles_it_and_registers_its_ops(tmp_path):
    tree = _fake_tflm(tmp_path / "tflm", signal=True)
    proc = _configure(tmp_path, f"-DTFLM_ROOT={tree}")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    compiled = _compiled(tmp_path)
    for source in ("signal/micro/kernels/window.cc", "signal/src/window.cc",
                   "signal/src/kiss_fft_wrappers/kiss_fft_int16.cc"):
        assert str(tree / source) in compiled, source
    for left_out in ("signal/micro/kernels/window_test.cc",
                     "signal/micro/kernels/window_flexbuffers_generated_data.cc"):
        assert str(tree / left_out) not in compiled, left_out
    window = compiled[str(tree / "signal/micro/kernels/window.cc")]
    assert "-mfloat-abi=hard" in window and "downloads/kissfft" in window  # kiss_fft.c is #included
    engine = next(c for f, c in compiled.items() if f.endswith("engine/engine_tflm.cpp"))
    assert "-DTF_TFLM_SIGNAL=1" in engine


def test_the_signal_library_without_kissfft_says_what_is_missing(tmp_path):
    tree = _fake_tflm(tmp_path / "tflm", signal=True, kissfft=False)
    proc = _configure(tmp_path, f"-DTFLM_ROOT={tree}")
    assert proc.returncode != 0
    assert "FFTs need kissfft (kiss_fft.c" in " ".join((proc.stdout + proc.stderr).split()), proc.stderr[-2000:]


def test_cmsis_nn_kernels_replace_the_reference_ones(tmp_path):
    tree = _fake_tflm(tmp_path / "tflm", cmsis=True)
    proc = _configure(tmp_path, f"-DTFLM_ROOT={tree}", "-DTINYFARM_TFLM_KERNELS=cmsis-nn",
                      f"-DCMSIS_ROOT={tree}/dl/cmsis", f"-DCMSIS_NN_ROOT={tree}/dl/cmsis_nn")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    compiled = _compiled(tmp_path)
    k = tree / "tensorflow/lite/micro/kernels"
    assert str(k / "cmsis_nn/conv.cc") in compiled and str(k / "conv.cc") not in compiled
    assert str(k / "svdf.cc") in compiled  # no CMSIS-NN version in this tree: the reference one
    src = tree / "dl/cmsis_nn/Source/ConvolutionFunctions"
    assert str(src / "arm_convolve_s8.c") in compiled and str(src / "arm_convolve_f32.c") not in compiled
    assert "-DCMSIS_NN" in compiled[str(k / "cmsis_nn/conv.cc")]
    engine = next(c for f, c in compiled.items() if f.endswith("engine/engine_tflm.cpp"))
    assert '-DTF_TFLM_KERNELS=\\"cmsis-nn\\"' in engine


@pytest.mark.parametrize(("args", "message"), [
    (["-DTINYFARM_TFLM_KERNELS=fast"], "use reference or cmsis-nn"),
    (["-DTINYFARM_TFLM_KERNELS=cmsis-nn"], "needs CMSIS"),
    (["-DTFLM_DOWNLOADS=/nonexistent"], "flatbuffers/flatbuffers.h"),
    (["-DTINYFARM_TFLM_OPS=Conv2D;Fully-Connected"], "'Fully-Connected' is not an op name"),
])
def test_tflm_configuration_errors_say_what_is_missing(tmp_path, args, message):
    tree = _fake_tflm(tmp_path / "tflm")
    proc = _configure(tmp_path, f"-DTFLM_ROOT={tree}", *args)
    assert proc.returncode != 0
    assert message in " ".join((proc.stdout + proc.stderr).split()), proc.stderr[-2000:]


def _engine_command(tmp_path: Path) -> str:
    return next(c for f, c in _compiled(tmp_path).items() if f.endswith("engine/engine_tflm.cpp"))


def _tflm_version(tmp_path: Path) -> str:
    """HELLO's tflm_version as the engine is compiled with it (however CMake quoted the define)."""
    return re.search(r'TF_TFLM_VERSION=[\\"]*([^\\"]*)', _engine_command(tmp_path)).group(1)


def _git(*args: str, cwd: Path) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t")
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True).stdout


def test_hello_names_the_trees_own_tflm_commit_never_an_enclosing_repositorys(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git not on PATH")
    outer = tmp_path / "outer"
    tree = _fake_tflm(outer / "shared" / "tflm")
    _git("init", "-q", cwd=outer)
    _git("add", "-A", cwd=outer)
    _git("commit", "-qm", "outer", cwd=outer)
    assert _configure(tmp_path, f"-DTFLM_ROOT={tree}").returncode == 0
    assert _tflm_version(tmp_path) == "tflite-micro"  # not the enclosing repository's commit
    # a prepared offline tree records its TFLM commit in TREE.md (prepare-tflm-tree.sh)
    (tree / "TREE.md").write_text("| component | upstream | revision |\n|---|---|---|\n"
                                  "| TFLM | github.com/tensorflow/tflite-micro | `90b983c2b3f1480642e040bbd2ddb37b998f3424` |\n")
    assert _configure(tmp_path, f"-DTFLM_ROOT={tree}").returncode == 0
    assert _tflm_version(tmp_path) == "tflite-micro 90b983c2"
    # a TFLM checkout of its own: its revision
    _git("init", "-q", cwd=tree)
    _git("add", "-A", cwd=tree)
    _git("commit", "-qm", "tflm", cwd=tree)
    rev = _git("describe", "--always", "--dirty", cwd=tree).strip()
    assert _configure(tmp_path, f"-DTFLM_ROOT={tree}").returncode == 0
    assert _tflm_version(tmp_path) == f"tflite-micro {rev}"


def test_the_tflm_presets_take_tflm_root_from_the_environment_and_compress(tmp_path):
    tree = _fake_tflm(tmp_path / "tflm")
    (tree / "tensorflow/lite/micro/kernels/decode.cc").write_text("")
    if shutil.which("cmake") is None or shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("cmake or arm-none-eabi-gcc not on PATH")
    proc = subprocess.run(["cmake", "--preset", "qemu-mps2-an386-tflm-cmsis-nn", "-B", str(tmp_path / "build"),
                           f"-DCMSIS_ROOT={tree}/dl/cmsis", f"-DCMSIS_NN_ROOT={tree}/dl/cmsis_nn"],
                          cwd=FIRMWARE, capture_output=True, text=True, timeout=300, check=False,
                          env=dict(os.environ, TFLM_ROOT=str(_fake_tflm(tree, cmsis=True))))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    engine = _engine_command(tmp_path)
    assert "-DTF_TFLM_COMPRESSION=1" in engine and '-DTF_TFLM_KERNELS=\\"cmsis-nn\\"' in engine
    assert f"-isystem {tree}" in engine


def test_a_part_with_little_flash_can_name_its_ops(tmp_path):
    tree = _fake_tflm(tmp_path / "tflm")
    proc = _configure(tmp_path, f"-DTFLM_ROOT={tree}", "-DTINYFARM_TFLM_OPS=Conv2D;Svdf")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    engine = next(c for f, c in _compiled(tmp_path).items() if f.endswith("engine/engine_tflm.cpp"))
    assert "TF_ENGINE_OPS=" in engine and "TF_OP(Conv2D) TF_OP(Svdf)" in engine
