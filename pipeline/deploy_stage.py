"""Stage ``deploy``: the deployable model on a device, so ``tinyfarm run`` ends with on-device figures.

It uploads ``model_int8.tflite`` over the wire protocol to ``deploy.device`` (a TFLM twin by default;
any ``--device`` value works: ``qemu``, a farm name, a serial port), then measures on the device:
upload time and goodput, arena bytes, latency over ``runs`` invocations after ``warmup``, and the
accuracy on the test split with the share of outputs identical to the host TFLM (the device
reference: the firmware's kernels) and the agreement with LiteRT's reference kernels.

``deploy.emulator`` (default ``auto``) measures it a second time on the firmware users flash: with
``make firmware``'s QEMU TFLM build present, on the emulated Cortex-M4 (``--device qemu``), where
the figures are the accuracy, the identical share and the *instructions* per inference (QEMU counts
instructions, not cycles). The figures land in ``report.json`` under ``"deploy"`` and ``"emulator"``.
The stage talks to devices, so it always runs (no cache): a device's figures are only as fresh as
the last time it was asked.
"""

from __future__ import annotations

import logging
import shutil
from typing import Any

from device_harness.firmware_builds import engine_elf
from pipeline.run_context import StageContext
from tinyfarm.errors import DeviceError

logger = logging.getLogger(__name__)


def deploy_model(model: bytes, device: str, x, y, *, dataset: str, runs: int, warmup: int,
                 farm: str | None = None, board: str | None = None,
                 progress=None, reference: bytes | None = None) -> dict[str, Any]:
    """Upload ``model`` to ``device``, benchmark it and evaluate it on ``(x, y)``; figures as a dict.

    The "identical outputs" figure compares with the host TFLM running ``model`` (the device
    reference); ``reference`` is the model LiteRT's reference kernels run for the agreement figures
    (default: ``model``; the plain int8 model when ``model`` is stored for TFLM only: weight
    compression, single zero points — files LiteRT cannot read).
    """
    from device_harness.protocol import Capability
    from device_harness.session import DeviceSession

    with DeviceSession.for_device(device, board=board, farm=farm) as session:
        info = session.info
        upload = session.upload(model)
        used, capacity = session.arena()
        evaluation = session.evaluate(model, x, y, dataset=dataset, progress=progress,
                                      reference=reference if reference is not None else True)
        latency = session.bench(warmup=warmup, runs=runs)
        per_second = session.backend.instructions_per_second
    return {
        "device": device,
        "board": info.board,
        "firmware_version": info.firmware_version,
        "tflm_version": info.tflm_version,
        "kernels": info.kernels,
        "tick_source": info.tick_source,
        "line_paced": bool(info.capabilities & Capability.PACED),
        "tick_hz": info.tick_hz,
        "model_bytes": len(model),
        "upload_seconds": upload.seconds,
        "upload_bytes_per_second": upload.bytes_per_second,
        "arena_used_bytes": used,
        "arena_capacity_bytes": capacity,
        "latency": latency.as_dict(),
        # an emulator's ticks are emulated time: instructions, not cycles of a real core
        "instructions": (round(latency.median_ticks / info.tick_hz * per_second)
                         if per_second and info.tick_hz else None),
        "accuracy": evaluation.accuracy,
        "samples": evaluation.samples,
        "identical_share": evaluation.identical_share,
        "identical_outputs": evaluation.identical_outputs,
        "reference": evaluation.reference,
        "references": evaluation.references,  # per named reference: top-1, cosine, rel L2, max steps
    }


def emulator_device(setting: str | None, device: str) -> str | None:
    """The second device ``deploy.emulator`` names: ``auto`` = ``qemu`` when its TFLM engine build
    exists and QEMU is installed (None otherwise, and when it is the first device already)."""
    if setting == "auto":
        setting = "qemu" if engine_elf("qemu") and shutil.which("qemu-system-arm") else None
    return None if setting in (None, device) else setting


def run_deploy(ctx: StageContext) -> dict:
    from pipeline.progress import console, task

    cfg, data = ctx.section, ctx.data()
    deployable = ctx.deployable()
    if not deployable:
        return {"skipped": "no deployable int8 model"}
    model = ctx.path(deployable["path"]).read_bytes()
    reference = None
    if deployable.get("tflm_only"):
        variant = next(v for v in ctx.variants() if v["name"] == deployable["copy_of"])
        reference = ctx.path(variant["path"]).read_bytes()
    n = cfg.max_samples or len(data.x_test)
    x, y = data.x_test[:n], data.y_test[:n]
    report: dict[str, Any] = {}
    emulator = emulator_device(cfg.emulator, cfg.device)
    for key, device in (("deploy", cfg.device), ("emulator", emulator)):
        if device is None:
            continue
        logger.info("deploy: %s (%d B) to --device %s", deployable["path"], len(model), device)
        try:
            with task(f"on device ({device}): upload, evaluate, bench", total=len(x)) as progress:
                figures = deploy_model(model, device, x, y, dataset=ctx.config.dataset.name,
                                       runs=cfg.runs, warmup=cfg.warmup, farm=cfg.farm, board=cfg.board,
                                       progress=lambda i, total: progress.tick(1), reference=reference)
        except DeviceError as exc:
            if key == "deploy" or cfg.emulator != "auto":
                raise
            console.print(f"  [yellow]not measured on {device}[/]: {exc}")  # auto: best effort
            report[key] = {"device": device, "error": str(exc)}
            continue
        figures["model"] = deployable["path"]
        console.print(f"  on {figures['board']}: {summary_line(figures)}")
        report[key] = figures
    return {"deploy": report.get("deploy"), "report": report}


def summary_line(figures: dict[str, Any]) -> str:
    """The console's one line of on-device figures."""
    if figures.get("instructions"):
        speed = f"{figures['instructions']:,} instructions per inference (emulated: not cycles)"
    else:
        speed = (f"median {_us(figures['latency'].get('median_us'))}"
                 f"{' (estimated board time)' if figures['tick_source'] == 'estimate' else ''}")
    return (f"accuracy {figures['accuracy']:.4f}, {speed}, arena {figures['arena_used_bytes']} B, "
            f"identical to {_reference(figures)} {figures['identical_share']:.1%}")


def _reference(figures: dict[str, Any]) -> str:
    from device_harness.measure import REFERENCE_NAMES

    name = figures.get("reference") or "litert-reference"
    return REFERENCE_NAMES.get(name, name)


def _us(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.1f} µs"


def render_deploy(figures: dict[str, Any], title: str = "On the device") -> list[str]:
    """Markdown lines for the report."""
    if figures.get("error"):
        return [f"## {title}", "", f"Not measured on `--device {figures['device']}`: {figures['error']}"]
    lat = figures.get("latency", {})
    if figures.get("instructions"):
        speed = (f"| instructions per inference (median; emulated, not cycles) | "
                 f"{figures['instructions']:,} ({lat.get('median_ticks', 0):,.0f} ticks) |")
    else:
        speed = (f"| latency median / p90{' (estimated, not measured)' if figures['tick_source'] == 'estimate' else ''}"
                 f" | {_us(lat.get('median_us'))} / {_us(lat.get('p90_us'))} |")
    lines = [
        f"## {title}",
        "",
        f"`{figures['model']}` on **{figures['board']}** (`--device {figures['device']}`, "
        f"firmware {figures['firmware_version']}, TFLM {figures['tflm_version']}, "
        f"kernels {figures.get('kernels', 'unknown')}, ticks from {figures['tick_source']}).",
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| accuracy on device ({figures['samples']} test samples) | {figures['accuracy']:.4f} |",
        f"| outputs identical to {_reference(figures)} | {figures['identical_share']:.1%} |",
        speed,
        f"| arena used / capacity (B) | {figures['arena_used_bytes']} / {figures['arena_capacity_bytes']} |",
        f"| upload | {figures['model_bytes']} B in {figures['upload_seconds']:.3f} s |",
    ]
    for name, ref in (figures.get("references") or {}).items():
        for m in ref.get("outputs", []):
            lines.append(f"| vs {name}, output {m['output']}: top-1 / cosine / rel L2 / max steps | "
                         f"{100 * (m['top1_agreement'] or 0):.2f}% / {m['cosine']:.6f} / "
                         f"{m['rel_l2'] if m['rel_l2'] is not None else '—'} / {m['max_steps']} |")
        if ref.get("error"):
            lines.append(f"| vs {name} | not run: {ref['error'][:120]} |")
    twin = ("This is a twin: TFLM's own kernels ran on this host, so accuracy is what they compute; "
            "the arena figure is from a 64-bit host build of TFLM, and latency is ")
    unpaced = "." if figures.get("line_paced") else ", and the upload crossed an unpaced pty, not the board's UART."
    if figures["tick_source"] == "estimate":
        lines += ["", twin + "the board's *estimated* time (the cost model's cycles for this model at the "
                  "board's clock, as `tinyfarm fit` computes them), not a measurement: it is the same for "
                  "every input" + unpaced]
    elif figures["tick_source"] == "host-ns":
        lines += ["", twin + "host CPU time, not the board's cycles" + unpaced]
    elif figures.get("instructions"):
        clock = ("QEMU runs with `-icount shift=0`, one instruction per ns of emulated time"
                 if figures["tick_source"] == "qemu-icount" else
                 "the emulator runs the core at a fixed number of instructions per second of emulated time")
        lines += ["", "This is the firmware users flash (TFLM compiled for Cortex-M4F) on an emulator: "
                  f"outputs and arena are the device's own. An emulator counts *instructions*, not cycles ({clock}); "
                  "a real Cortex-M4's cycles also depend on its pipeline, flash wait states and memory."]
    return lines
