"""Stage ``deploy``: the deployable model on a device, so ``tinyfarm run`` ends with on-device figures.

It uploads ``model_int8.tflite`` over the wire protocol to ``deploy.device`` (a TFLM twin by default;
any ``--device`` value works: ``qemu``, a farm name, a serial port), then measures on the device:
upload time and goodput, arena bytes, latency over ``runs`` invocations after ``warmup``, and the
accuracy on the test split with the share of outputs identical to LiteRT's reference kernels.
The figures land in ``report.json`` under ``"deploy"``. The stage talks to hardware, so it always runs
(no cache): a device's figures are only as fresh as the last time it was asked.
"""

from __future__ import annotations

import logging
from typing import Any

from pipeline.run_context import StageContext

logger = logging.getLogger(__name__)


def deploy_model(model: bytes, device: str, x, y, *, dataset: str, runs: int, warmup: int,
                 farm: str | None = None, board: str | None = None,
                 progress=None, reference: bytes | None = None) -> dict[str, Any]:
    """Upload ``model`` to ``device``, benchmark it and evaluate it on ``(x, y)``; figures as a dict.

    ``reference`` is the model LiteRT's reference kernels run for the "identical outputs" figure
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
    return {
        "device": device,
        "board": info.board,
        "firmware_version": info.firmware_version,
        "tflm_version": info.tflm_version,
        "tick_source": info.tick_source,
        "line_paced": bool(info.capabilities & Capability.PACED),
        "tick_hz": info.tick_hz,
        "model_bytes": len(model),
        "upload_seconds": upload.seconds,
        "upload_bytes_per_second": upload.bytes_per_second,
        "arena_used_bytes": used,
        "arena_capacity_bytes": capacity,
        "latency": latency.as_dict(),
        "accuracy": evaluation.accuracy,
        "samples": evaluation.samples,
        "identical_share": evaluation.identical_share,
        "identical_outputs": evaluation.identical_outputs,
        "reference": evaluation.reference,
        "references": evaluation.references,  # per named reference: top-1, cosine, rel L2, max steps
    }


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
    logger.info("deploy: %s (%d B) to --device %s", deployable["path"], len(model), cfg.device)
    n = cfg.max_samples or len(data.x_test)
    x, y = data.x_test[:n], data.y_test[:n]
    with task(f"on device ({cfg.device}): upload, evaluate, bench", total=len(x)) as progress:
        figures = deploy_model(model, cfg.device, x, y, dataset=ctx.config.dataset.name,
                               runs=cfg.runs, warmup=cfg.warmup, farm=cfg.farm, board=cfg.board,
                               progress=lambda i, total: progress.tick(1), reference=reference)
    figures["model"] = deployable["path"]
    console.print(f"  on {figures['board']}: accuracy {figures['accuracy']:.4f}, "
                  f"median {_us(figures['latency'].get('median_us'))}"
                  f"{' (estimated board time)' if figures['tick_source'] == 'estimate' else ''}, "
                  f"arena {figures['arena_used_bytes']} B, "
                  f"identical to {_reference(figures)} {figures['identical_share']:.1%}")
    return {"deploy": figures, "report": {"deploy": figures}}


def _reference(figures: dict[str, Any]) -> str:
    from device_harness.measure import REFERENCE_NAMES

    name = figures.get("reference") or "litert-reference"
    return REFERENCE_NAMES.get(name, name)


def _us(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.1f} µs"


def render_deploy(figures: dict[str, Any]) -> list[str]:
    """Markdown lines for the report."""
    lat = figures.get("latency", {})
    lines = [
        "## On the device",
        "",
        f"`{figures['model']}` on **{figures['board']}** (`--device {figures['device']}`, "
        f"firmware {figures['firmware_version']}, TFLM {figures['tflm_version']}, "
        f"ticks from {figures['tick_source']}).",
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| accuracy on device ({figures['samples']} test samples) | {figures['accuracy']:.4f} |",
        f"| outputs identical to {_reference(figures)} | {figures['identical_share']:.1%} |",
        f"| latency median / p90{' (estimated, not measured)' if figures['tick_source'] == 'estimate' else ''}"
        f" | {_us(lat.get('median_us'))} / {_us(lat.get('p90_us'))} |",
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
    if figures["tick_source"] == "estimate":
        lines += ["", "This is a twin: TFLM's own kernels ran on this host, so accuracy is what they compute; "
                      "the arena figure is from a 64-bit host build of TFLM, and latency is the board's "
                      "*estimated* time (the cost model's cycles for this model at the board's clock, as "
                      "`tinyfarm fit` computes them), not a measurement: it is the same for every input"
                      + ("." if figures.get("line_paced") else
                         ", and the upload crossed an unpaced pty, not the board's UART.")]
    if figures["tick_source"] == "host-ns":
        lines += ["", "This is a twin: TFLM's own kernels ran on this host, so accuracy is what they compute; "
                      "the arena figure is from a 64-bit host build of TFLM, and latency is host CPU time, "
                      "not the board's cycles"
                      + ("." if figures.get("line_paced") else
                         ", and the upload crossed an unpaced pty, not the board's UART.")]
    return lines
