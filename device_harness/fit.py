"""What a board will take: flash, RAM and an estimated latency of a ``.tflite`` per board profile.

``tinyfarm fit`` (:mod:`device_harness.fit_command`) prints :func:`fit` for every profile of
``boards.yaml``. Nothing runs on a device; every figure is either measured here, read from the model,
or an estimate whose constant names its source in ``cost_model.yaml``:

- **flash**: the model's bytes + the firmware's own footprint (measured on the engine-less build,
  ``firmware_flash_bytes``) + TFLM's code (measured by hand with the full op list, per kernel
  library; a library without a figure is left out and said so);
- **RAM**: the firmware's RAM (``firmware_ram_bytes``, engine-less) + the tensor arena *estimated* for
  a 32-bit target from the twin's host figure (:func:`arena_32bit`), in two cases: the model linked
  into flash by an application (no RAM for the model) and the harness firmware, which receives the
  model into a RAM buffer of ``max_model_bytes``; and whether the model and the arena fit the
  harness's own buffers (``max_model_bytes``, ``arena_bytes``);
- **latency**: the model's MACs per operator (:func:`tinyfarm.tflite_macs.op_costs`) x cycles per MAC
  for the board's core and kernel library and the operator's class, / the core clock. An operator
  the cost model does not know gets no estimate and is named.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from tinyfarm import safe_yaml
from tinyfarm.errors import ConfigError
from tinyfarm.tflite_macs import OpCost, op_costs

from .boards import BoardProfile

COST_MODEL_PATH = Path(__file__).with_name("cost_model.yaml")
KERNELS = ("reference", "cmsis-nn")

#: operator -> class of cost_model.yaml's cycles_per_mac (every other known operator: "other")
OP_CLASSES = {
    "CONV_2D": "conv", "CONV_3D": "conv", "TRANSPOSE_CONV": "conv",
    "DEPTHWISE_CONV_2D": "depthwise_conv",
    "FULLY_CONNECTED": "fully_connected", "BATCH_MATMUL": "fully_connected",
}


@lru_cache(maxsize=None)
def cost_model(path: str = str(COST_MODEL_PATH)) -> dict[str, Any]:
    """``cost_model.yaml``, parsed once."""
    return safe_yaml.load(Path(path).read_text(), source=str(path))


@dataclass(frozen=True)
class Constant:
    """One cycles-per-MAC figure and where it came from."""

    value: float
    source: str


def cycles_per_mac(cpu: str, kernels: str) -> dict[str, Constant] | None:
    """The cycles per MAC of each operator class for ``cpu`` with ``kernels`` (``None``: the cost
    model has no figures for that core, e.g. the host profile)."""
    if kernels not in KERNELS:
        raise ConfigError(f"unknown kernel library {kernels!r} (known: {', '.join(KERNELS)})")
    table = cost_model()["cycles_per_mac"]
    entry = table.get(cpu, {}).get(kernels)
    if entry is None:
        return None
    if "same_as" in entry:  # another core's figures (times a factor, when given), under this entry's source
        base = cycles_per_mac(entry["same_as"], kernels) or {}
        factor = float(entry.get("factor", 1.0))
        return {k: Constant(c.value * factor, f"{_one(entry['source'])}; {entry['same_as']}: {c.source}")
                for k, c in base.items()}
    if "scale_from" in entry:  # another kernel library's figures times a factor per operator class
        base = cycles_per_mac(cpu, entry["scale_from"]) or {}
        factors = {k: _factor(entry, k) for k in base}
        return {k: Constant(c.value * factors[k][0],
                            f"x {factors[k][0]:g}: {factors[k][1]}; {entry['scale_from']}: {c.source}")
                for k, c in base.items()}
    return {k: Constant(float(v["value"]), _one(v["source"]))
            for k, v in entry.items() if isinstance(v, dict) and "value" in v}


def _factor(entry: dict[str, Any], cls: str) -> tuple[float, str]:
    """The factor of operator class ``cls`` in a ``scale_from`` entry: ``factors.<cls>`` (value and
    source) or one ``factor`` for every class (under the entry's ``source``)."""
    per_class = (entry.get("factors") or {}).get(cls)
    if per_class is not None:
        return float(per_class["value"]), _one(per_class["source"])
    return float(entry["factor"]), _one(entry["source"])


def summary(cpu: str, kernels: str) -> str:
    """The one-line provenance of ``cpu``/``kernels``'s figures ("" when there are none)."""
    entry = cost_model()["cycles_per_mac"].get(cpu, {}).get(kernels) or {}
    return _one(entry.get("summary", ""))


def _one(text: Any) -> str:
    return " ".join(str(text).split())


def arena_32bit(host_bytes: int, tensors: int, ops: int) -> int:
    """The tensor arena a 32-bit target needs, *estimated* from the twin's 64-bit host figure:
    minus the pointer-size difference of TFLM's per-tensor and per-operator structures (fitted to
    two measured pairs, see ``cost_model.yaml`` ``arena_32bit``); never below 0 or above the host."""
    c = cost_model()["arena_32bit"]
    delta = float(c["constant_bytes"]) + float(c["scale"]) * (
        int(c["per_tensor_bytes"]) * tensors + int(c["per_op_bytes"]) * ops)
    return max(0, min(host_bytes, round(host_bytes - delta)))


def tflm_flash(kernels: str) -> tuple[int | None, str]:
    entry = cost_model()["tflm_flash_bytes"][kernels]
    value = entry.get("value")
    return (None if value is None else int(value)), _one(entry["source"])


@dataclass
class ModelFacts:
    """What :func:`fit` needs from a model: its size, structure, MACs and host arena."""

    name: str
    model_bytes: int
    tensors: int
    ops: list[OpCost]
    host_arena_bytes: int | None = None  # smallest arena on the twin (64-bit host); None: unknown
    arena_error: str = ""
    arena_bytes_32bit: int | None = field(default=None)
    decompression_bytes: int = 0  # alternate decompression memory DECODE writes weights into
    float_ops: int = 0  # operators whose first input is float32 (the constants are int8 figures)

    @property
    def macs(self) -> int:
        return sum(c.macs for c in self.ops)

    @property
    def unknown_ops(self) -> list[str]:
        return [f"{c.op} (operator {c.index})" for c in self.ops if not c.known]


def model_facts(model: bytes, name: str = "model", *, host_arena: bool = True) -> ModelFacts:
    """Read ``model`` (:class:`~tinyfarm.errors.ModelError` if it is not a ``.tflite``) and, with
    ``host_arena``, find its smallest arena on the twin's TFLM (a model TFLM cannot load gives no
    arena and the reason, not an exception)."""
    costs = op_costs(model)
    tensors, float_ops = _structure(model)
    from tinyfarm.tflite_file import decompression_bytes  # noqa: PLC0415

    facts = ModelFacts(name, len(model), tensors, costs, float_ops=float_ops,
                       decompression_bytes=decompression_bytes(model))
    if host_arena:
        from .twin.host_check import find_arena  # noqa: PLC0415 - starts TFLM only when asked

        found = find_arena(model, decompression_bytes=facts.decompression_bytes)
        facts.host_arena_bytes, facts.arena_error = found.arena_bytes, found.error or ""
        if found.arena_bytes is not None:
            facts.arena_bytes_32bit = arena_32bit(found.arena_bytes, facts.tensors, len(costs))
    return facts


def _structure(model: bytes) -> tuple[int, int]:
    """Subgraph 0's tensor count and how many operators take a float32 first input."""
    from ai_edge_litert import schema_py_generated as schema  # noqa: PLC0415

    try:
        sg = schema.Model.GetRootAs(bytearray(model), 0).Subgraphs(0)
        floats = 0
        for i in range(sg.OperatorsLength()):
            op = sg.Operators(i)
            first = op.Inputs(0) if op.InputsLength() else -1
            floats += first >= 0 and sg.Tensors(first).Type() == schema.TensorType.FLOAT32
        return int(sg.TensorsLength()), int(floats)
    except Exception:  # noqa: BLE001 - op_costs already refused what is not a .tflite
        return 0, 0


def latency(ops: list[OpCost], cpu: str, cpu_hz: int, kernels: str) -> dict[str, Any]:
    """Estimated cycles and milliseconds of one inference (``None`` when the core has no figures)."""
    table = cycles_per_mac(cpu, kernels)
    unknown = [f"{c.op} (operator {c.index})" for c in ops if not c.known]
    if table is None or cpu_hz <= 0:
        return {"cycles": None, "ms": None, "kernels": kernels, "unknown_ops": unknown,
                "note": f"no cycles-per-MAC figures for cpu {cpu!r}"}
    cycles, macs_by_class = 0.0, {}
    for c in ops:
        if not c.known:
            continue
        cls = OP_CLASSES.get(c.op, "other")
        macs_by_class[cls] = macs_by_class.get(cls, 0) + c.macs
        cycles += c.macs * table[cls].value
    return {"cycles": round(cycles), "ms": round(cycles / cpu_hz * 1e3, 3), "kernels": kernels,
            "unknown_ops": unknown, "macs_by_class": macs_by_class,
            "cycles_per_mac": {k: round(table[k].value, 3) for k in macs_by_class},
            "sources": {k: table[k].source for k in macs_by_class}}


def _check(need: int | None, capacity: int) -> dict[str, Any]:
    if need is None:
        return {"need": None, "capacity": capacity, "fits": None, "margin": None}
    return {"need": need, "capacity": capacity, "fits": need <= capacity, "margin": capacity - need}


def fit_board(facts: ModelFacts, board: BoardProfile, kernels: str | None = None) -> dict[str, Any]:
    """Flash, RAM, harness buffers and latency of ``facts`` on ``board`` (see the module docstring)."""
    kernels = kernels or board.kernels
    notes: list[str] = []
    fw_flash, fw_ram = board.firmware_flash_bytes, board.firmware_ram_bytes
    if fw_flash is None or fw_ram is None:
        notes.append("firmware footprint not measured for this profile (model and arena only)")
    engine, engine_source = tflm_flash(kernels) if board.cpu != "host" else (None, "")
    if engine is None and engine_source:
        notes.append(f"TFLM's code is left out of flash: {engine_source}")
    flash_need = facts.model_bytes + (fw_flash or 0) + (engine or 0)
    arena = facts.arena_bytes_32bit
    if arena is None:
        notes.append(f"arena unknown: {facts.arena_error or 'not searched'}")
    ram_app = None if arena is None else (fw_ram or 0) + arena + facts.decompression_bytes
    if facts.decompression_bytes:
        notes.append(f"+ {facts.decompression_bytes:,} B of decompression memory for the compressed "
                     "weights (TFLM DECODE)")
    ram_harness = None if ram_app is None else ram_app + board.max_model_bytes
    lat = latency(facts.ops, board.cpu, board.cpu_hz, kernels)
    if facts.float_ops and lat["ms"] is not None:
        notes.append(f"{facts.float_ops} float32 operator(s): the cycles-per-MAC figures are from int8 "
                     "models (assumed the same for float)")
    if lat["unknown_ops"]:
        notes.append("no latency estimate for " + ", ".join(lat["unknown_ops"])
                     + " (the estimate covers the other operators)")
    return {
        "board": board.name, "cpu": board.cpu, "cpu_hz": board.cpu_hz, "kernels": kernels,
        "flash": {**_check(flash_need, board.flash_bytes), "model": facts.model_bytes,
                  "firmware": fw_flash, "firmware_build": board.firmware_build,
                  "tflm_estimate": engine, "tflm_source": engine_source},
        "ram": {"firmware": fw_ram, "arena_estimate_32bit": arena, "model_buffer": board.max_model_bytes,
                "decompression": facts.decompression_bytes,
                "model_in_flash": _check(ram_app, board.ram_bytes),
                "model_in_ram": _check(ram_harness, board.ram_bytes)},
        "harness": {"model_buffer": _check(facts.model_bytes, board.max_model_bytes),
                    "arena": _check(arena, board.arena_bytes)},
        "latency": lat, "notes": notes,
    }


def fit(facts: ModelFacts, boards: list[BoardProfile], kernels: str | None = None) -> dict[str, Any]:
    """:func:`fit_board` for every board, with the model's own figures."""
    return {
        "model": facts.name, "model_bytes": facts.model_bytes, "tensors": facts.tensors,
        "operators": len(facts.ops), "macs": facts.macs, "unknown_ops": facts.unknown_ops,
        "float_operators": facts.float_ops,
        "host_arena_bytes": facts.host_arena_bytes, "arena_estimate_32bit": facts.arena_bytes_32bit,
        "arena_error": facts.arena_error or None,
        "boards": [fit_board(facts, b, kernels) for b in boards],
    }


# ---- text ------------------------------------------------------------------------------------------

def _b(n: int | None) -> str:
    return "?" if n is None else f"{n:,}"


def _verdict(check: dict[str, Any]) -> str:
    if check["fits"] is None:
        return "unknown "
    margin, word = check["margin"], "fits     " if check["fits"] else "NO       "
    return (f"{word}{_b(check['need'])} of {_b(check['capacity'])} B "
            f"({'margin' if margin >= 0 else 'over by'} {_b(abs(margin))} B)")


def _overall(checks: dict[str, dict[str, Any]]) -> str:
    failed = [name for name, c in checks.items() if c["fits"] is False]
    unknown = [name for name, c in checks.items() if c["fits"] is None]
    if failed:
        return "NO (" + ", ".join(failed) + ")"
    return f"unknown ({', '.join(unknown)})" if unknown else "fits"


def format_text(result: dict[str, Any]) -> str:
    """``result`` of :func:`fit` as the lines ``tinyfarm fit`` prints."""
    arena = (f"arena {_b(result['host_arena_bytes'])} B on the twin (64-bit host) -> "
             f"~{_b(result['arena_estimate_32bit'])} B on a 32-bit target (estimated)"
             if result["host_arena_bytes"] is not None else f"arena unknown: {result['arena_error']}")
    lines = [(f"{result['model']}: {_b(result['model_bytes'])} B, {result['operators']} operators, "
              f"{result['tensors']} tensors, {_b(result['macs'])} MACs; {arena}")]
    if result["unknown_ops"]:
        lines.append("  operators the cost model does not know (no MACs, no latency): "
                     + ", ".join(result["unknown_ops"]))
    sources: dict[str, str] = {}
    for b in result["boards"]:
        fl, ram, har, lat = b["flash"], b["ram"], b["harness"], b["latency"]
        mhz = f"{b['cpu_hz'] / 1e6:g} MHz" if b["cpu_hz"] else "host clock"
        lines.append(f"{b['board']} ({b['cpu']} @ {mhz}, {b['kernels']} kernels)")
        parts = [f"model {_b(fl['model'])}"]
        if fl["firmware"] is not None:
            parts.append(f"firmware {_b(fl['firmware'])} (engine-less, measured)")
        if fl["tflm_estimate"] is not None:
            parts.append(f"TFLM ~{_b(fl['tflm_estimate'])} (estimate)")
        lines.append(f"  flash          {_verdict(fl)}: {' + '.join(parts)}")
        fw = "" if ram["firmware"] is None else f"firmware {_b(ram['firmware'])} + "
        lines.append(f"  RAM, app       {_verdict(ram['model_in_flash'])}: {fw}arena "
                     f"~{_b(ram['arena_estimate_32bit'])} (model linked into flash)")
        lines.append(f"  RAM, harness   {_verdict(ram['model_in_ram'])}: + model buffer "
                     f"{_b(ram['model_buffer'])} (max_model_bytes: the harness receives the model into RAM)")
        lines.append(f"  model buffer   {_verdict(har['model_buffer'])} (max_model_bytes)")
        lines.append(f"  arena buffer   {_verdict(har['arena'])} (the profile's arena_bytes)")
        app = _overall({"flash": fl, "RAM": ram["model_in_flash"]})
        harness = _overall({"flash": fl, "RAM": ram["model_in_ram"], "model buffer": har["model_buffer"],
                            "arena buffer": har["arena"]})
        lines.append(f"  verdict        application (model in flash): {app}; harness firmware: {harness}")
        if lat["ms"] is None:
            lines.append(f"  latency        n/a: {lat['note']}")
        else:
            cpm = ", ".join(f"{k} {v:g}" for k, v in lat["cycles_per_mac"].items())
            lines.append(f"  latency        ~{lat['ms']:,.3f} ms estimated ({_b(lat['cycles'])} cycles; "
                         f"cycles/MAC: {cpm})")
            sources[f"{b['cpu']}/{b['kernels']}"] = summary(b["cpu"], b["kernels"])
        lines += [f"  note: {n}" for n in b["notes"]]
    lines.append("firmware figures: measured on the engine-less builds (boards.yaml firmware_build); TFLM's "
                 "static RAM (interpreter, op resolver) is not included")
    if sources:
        lines.append("cycles per MAC (sources of each figure: device_harness/cost_model.yaml; --json lists them):")
        lines += [f"  {k}: {s}" for k, s in sorted(sources.items())]
    return "\n".join(lines)
