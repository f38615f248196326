"""Multiply-accumulates of a ``.tflite``, operator by operator, read from the flatbuffer alone.

:func:`op_costs` lists every operator of subgraph 0 in execution order with its cost;
:func:`total_macs` sums them. Shapes are the flatbuffer's (static, batch included). The cost model:

- ``CONV_2D``: ``N*out_h*out_w*out_c * k_h*k_w*in_c/groups`` (the filter's last dimension is
  ``in_c/groups``); ``CONV_3D`` likewise with ``k_d``; ``DEPTHWISE_CONV_2D``:
  ``N*out_h*out_w*out_c * k_h*k_w``; ``TRANSPOSE_CONV``: ``N*in_h*in_w*in_c * k_h*k_w*out_c`` (every
  input pixel is scattered through the whole filter);
- ``FULLY_CONNECTED``: output elements times the filter's input depth; ``BATCH_MATMUL``: output
  elements times the contracted dimension (``adj_x`` honoured);
- pooling (``AVERAGE_POOL_2D``, ``MAX_POOL_2D``, ``L2_POOL_2D``): one MAC per output element per
  window element (``out_elements * filter_h * filter_w``); reductions (``MEAN``, ``SUM``,
  ``REDUCE_MAX``, ``ARG_MAX``, ...): one per *input* element;
- elementwise ops (activations, ``ADD``, ``MUL``, ``QUANTIZE``, ``SOFTMAX``, comparisons, ...): one
  per output element; ``RESIZE_BILINEAR``: four per output element; TFLM's ``DECODE`` (weight
  compression): one per decoded element;
- data movement (``RESHAPE``, ``CONCATENATION``, ``PAD``, ``TRANSPOSE``, ``GATHER``, ...): zero,
  known;
- anything else (``CUMSUM``, ``LSTM``, custom ops, ...): ``known=False`` with ``macs=0``, named
  (``CUSTOM:<name>`` for custom ops); a malformed operator is unknown too, never an exception.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

from tinyfarm.errors import ModelError
from tinyfarm.tflite_file import check_tflite

_ELEMENTWISE = frozenset((
    "ADD", "SUB", "MUL", "DIV", "SQUARED_DIFFERENCE", "MAXIMUM", "MINIMUM", "POW", "FLOOR_DIV",
    "FLOOR_MOD", "ADD_N", "RELU", "RELU6", "RELU_N1_TO_1", "RELU_0_TO_1", "LEAKY_RELU", "PRELU",
    "LOGISTIC", "TANH", "HARD_SWISH", "ELU", "GELU", "EXP", "LOG", "SQRT", "RSQRT", "ABS", "NEG",
    "SQUARE", "SIN", "COS", "FLOOR", "CEIL", "ROUND", "SIGN", "QUANTIZE", "DEQUANTIZE", "CAST",
    "SOFTMAX", "LOG_SOFTMAX", "L2_NORMALIZATION", "LESS", "GREATER", "EQUAL", "NOT_EQUAL",
    "LESS_EQUAL", "GREATER_EQUAL", "LOGICAL_AND", "LOGICAL_OR", "LOGICAL_NOT", "SELECT",
    "SELECT_V2", "ZEROS_LIKE"))
_REDUCTIONS = frozenset((
    "MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD", "REDUCE_ANY", "REDUCE_ALL", "ARG_MAX",
    "ARG_MIN"))
_POOLS = frozenset({"AVERAGE_POOL_2D", "MAX_POOL_2D", "L2_POOL_2D"})
_MOVES = frozenset((
    "RESHAPE", "SQUEEZE", "EXPAND_DIMS", "CONCATENATION", "PAD", "PADV2", "MIRROR_PAD", "TRANSPOSE",
    "STRIDED_SLICE", "SLICE", "GATHER", "GATHER_ND", "SPLIT", "SPLIT_V", "PACK", "UNPACK", "TILE",
    "BROADCAST_TO", "SPACE_TO_DEPTH", "DEPTH_TO_SPACE", "SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND",
    "SHAPE", "FILL", "RESIZE_NEAREST_NEIGHBOR", "REVERSE_V2"))


@dataclass(frozen=True)
class OpCost:
    """One operator: its position in subgraph 0, its name, its MACs and whether the cost model
    knows it (``known=False``: ``macs`` is 0, not an estimate)."""

    index: int
    op: str
    macs: int
    known: bool


def op_costs(model: bytes) -> list[OpCost]:
    """The cost of every operator of subgraph 0, in execution order (see the module docstring).

    Raises :class:`ModelError` only for something that is not a ``.tflite``; an operator the cost
    model does not know (or cannot read) gives ``known=False``.
    """
    from ai_edge_litert import schema_py_generated as schema

    check_tflite(bytes(model))
    try:
        m = schema.ModelT.InitFromPackedBuf(bytearray(model), 0)
    except Exception as exc:  # noqa: BLE001 - a damaged flatbuffer fails in many ways
        raise ModelError(f"cannot parse the .tflite flatbuffer: {exc}") from None
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    sg = m.subgraphs[0]
    tensors = sg.tensors or []

    def shape(index: int) -> list[int]:
        t = tensors[index]
        return [] if t.shape is None else [max(int(d), 1) for d in t.shape]

    costs = []
    for i, op in enumerate(sg.operators or []):
        code = m.operatorCodes[op.opcodeIndex]
        builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
        if builtin == schema.BuiltinOperator.CUSTOM:
            custom = code.customCode.decode(errors="replace") if code.customCode else "?"
            name = f"CUSTOM:{custom}"
        else:
            name = names.get(builtin, f"BUILTIN_{builtin}")
        inputs = [int(x) for x in op.inputs] if op.inputs is not None else []
        outputs = [int(x) for x in op.outputs] if op.outputs is not None else []
        try:
            macs = _macs(name, op.builtinOptions, [shape(x) if x >= 0 else [] for x in inputs],
                         [shape(x) for x in outputs])
        except (IndexError, ValueError, TypeError, AttributeError):
            macs = None  # a malformed operator: unknown rather than a crash
        costs.append(OpCost(i, name, macs or 0, macs is not None))
    return costs


def total_macs(model: bytes) -> int:
    """The sum of :func:`op_costs` (unknown operators count 0)."""
    return sum(c.macs for c in op_costs(model))


def _macs(name: str, options, ins: list[list[int]], outs: list[list[int]]) -> int | None:
    """MACs of one operator from its input/output shapes, ``None`` when the model does not know it."""
    out = prod(outs[0]) if outs else 0
    if name == "CONV_2D":  # filter [out_c, k_h, k_w, in_c / groups]
        return out * prod(ins[1][1:4])
    if name == "CONV_3D":  # filter [k_d, k_h, k_w, in_c, out_c]
        return out * prod(ins[1][0:4])
    if name == "DEPTHWISE_CONV_2D":  # filter [1, k_h, k_w, out_c]
        return out * prod(ins[1][1:3])
    if name == "TRANSPOSE_CONV":  # inputs: output shape, filter [out_c, k_h, k_w, in_c], input
        return prod(ins[2]) * prod(ins[1][0:3])
    if name == "FULLY_CONNECTED":  # filter [units, depth]
        return out * ins[1][-1]
    if name == "BATCH_MATMUL":
        a = ins[0]
        return out * (a[-2] if getattr(options, "adjX", False) else a[-1])
    if name in _POOLS:
        return out * int(options.filterHeight) * int(options.filterWidth)
    if name in _REDUCTIONS:
        return prod(ins[0])
    if name == "RESIZE_BILINEAR":
        return 4 * out
    if name in _ELEMENTWISE or name == "CUSTOM:TFLM_DECODE":  # DECODE: one table read per weight
        return sum(prod(o) for o in outs)
    if name in _MOVES:
        return 0
    return None
