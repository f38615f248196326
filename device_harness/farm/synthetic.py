"""Small, genuinely different int8 models for farm smoke tests and benchmarks — no TensorFlow.

A farm matrix wants several models that differ in size and cost. Training them would pull in
TensorFlow (8 s to import, minutes to train) for what is a transport and scheduling test, so these
are written directly as TFLite flatbuffers with the schema bindings the ``tflite-micro`` wheel
ships: an int8 MLP (FULLY_CONNECTED + RELU layers, SOFTMAX head) with seeded random weights. They
load and run on TFLM like any converter output; their accuracy means nothing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as tfl
import flatbuffers

from tinyfarm.atomic_files import write_bytes

FULLY_CONNECTED = tfl.BuiltinOperator.FULLY_CONNECTED
SOFTMAX = tfl.BuiltinOperator.SOFTMAX


def _quant(scale: float, zero_point: int) -> "tfl.QuantizationParametersT":
    q = tfl.QuantizationParametersT()
    q.scale = [float(scale)]
    q.zeroPoint = [int(zero_point)]
    return q


def mlp_int8(layers: list[int], seed: int = 0, name: str = "mlp") -> bytes:
    """An int8 MLP ``layers[0] -> ... -> layers[-1]`` with a softmax head, as .tflite bytes."""
    if len(layers) < 2:
        raise ValueError("an MLP needs at least an input and an output width")
    rng = np.random.default_rng(seed)
    model = tfl.ModelT()
    model.version = 3
    model.description = f"tinyfarm synthetic {name} {'x'.join(map(str, layers))} seed {seed}"
    model.buffers = [tfl.BufferT()]  # buffer 0: the empty sentinel
    tensors: list[tfl.TensorT] = []
    operators: list[tfl.OperatorT] = []

    def buffer(data: np.ndarray | None) -> int:
        buf = tfl.BufferT()
        if data is not None:
            buf.data = np.frombuffer(data.tobytes(), dtype=np.uint8)
        model.buffers.append(buf)
        return len(model.buffers) - 1

    def tensor(name_: str, shape: list[int], ttype: int, quant, data: np.ndarray | None = None) -> int:
        t = tfl.TensorT()
        t.name = name_
        t.shape = shape
        t.type = ttype
        t.buffer = buffer(data)
        t.quantization = quant
        tensors.append(t)
        return len(tensors) - 1

    act_scale, act_zp = 0.05, -128
    x = tensor("input", [1, layers[0]], tfl.TensorType.INT8, _quant(0.02, 0))
    in_scale = 0.02
    for i, (n_in, n_out) in enumerate(zip(layers[:-1], layers[1:])):
        last = i == len(layers) - 2
        w_scale = 1.0 / (127 * np.sqrt(n_in))
        w = rng.integers(-127, 128, size=(n_out, n_in), dtype=np.int8)
        b = rng.integers(-2000, 2000, size=(n_out,), dtype=np.int32)
        wt = tensor(f"dense{i}/weights", [n_out, n_in], tfl.TensorType.INT8, _quant(w_scale, 0), w)
        bt = tensor(f"dense{i}/bias", [n_out], tfl.TensorType.INT32,
                    _quant(in_scale * w_scale, 0), b)
        out_scale, out_zp = (0.1, 0) if last else (act_scale, act_zp)
        y = tensor(f"dense{i}/out", [1, n_out], tfl.TensorType.INT8, _quant(out_scale, out_zp))
        op = tfl.OperatorT()
        op.opcodeIndex = 0
        op.inputs, op.outputs = [x, wt, bt], [y]
        op.builtinOptionsType = tfl.BuiltinOptions.FullyConnectedOptions
        op.builtinOptions = tfl.FullyConnectedOptionsT()
        op.builtinOptions.fusedActivationFunction = (tfl.ActivationFunctionType.NONE if last
                                                      else tfl.ActivationFunctionType.RELU)
        operators.append(op)
        x, in_scale = y, out_scale
    probs = tensor("probs", [1, layers[-1]], tfl.TensorType.INT8, _quant(1 / 256, -128))
    op = tfl.OperatorT()
    op.opcodeIndex = 1
    op.inputs, op.outputs = [x], [probs]
    op.builtinOptionsType = tfl.BuiltinOptions.SoftmaxOptions
    op.builtinOptions = tfl.SoftmaxOptionsT()
    op.builtinOptions.beta = 1.0
    operators.append(op)

    codes = []
    for builtin, version in ((FULLY_CONNECTED, 4), (SOFTMAX, 2)):
        code = tfl.OperatorCodeT()
        code.builtinCode = builtin
        code.deprecatedBuiltinCode = builtin
        code.version = version
        codes.append(code)
    model.operatorCodes = codes
    sub = tfl.SubGraphT()
    sub.tensors, sub.operators = tensors, operators
    sub.inputs, sub.outputs = [0], [len(tensors) - 1]
    sub.name = "main"
    model.subgraphs = [sub]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


# Two shapes that differ from the TFLM examples and from each other (size and compute).
STANDARD = {
    "synthetic_mlp_small": ([40, 32, 10], 1),
    "synthetic_mlp_wide": ([64, 256, 128, 10], 2),
}


def write_standard_models(directory: str | Path) -> list[Path]:
    """Write the standard synthetic models into ``directory`` (idempotent, deterministic)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, (layers, seed) in STANDARD.items():
        path = directory / f"{name}.tflite"
        data = mlp_int8(layers, seed=seed, name=name)
        if not path.exists() or path.read_bytes() != data:
            write_bytes(path, data)
        paths.append(path)
    return paths
