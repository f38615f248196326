"""One farm job on a device session: upload (verified), arena, bench — and accuracy on request.

The figures are the session's (:mod:`device_harness.measure`); this module only names them as the
results store's columns.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from device_harness.measure import LatencyStats
from tinyfarm.errors import DataError, ModelError

if TYPE_CHECKING:
    from device_harness.session import DeviceSession

    from .scheduler import ModelRef, RunOptions


def latency_columns(stats: LatencyStats) -> dict[str, float]:
    """Latency statistics as results-store columns."""
    st = stats.as_dict()
    return {
        "ticks_median": st["median_ticks"], "ticks_p90": st["p90_ticks"],
        "ticks_min": float(st["min_ticks"]), "ticks_max": float(st["max_ticks"]),
        "latency_us_median": st["median_us"], "latency_us_p90": st["p90_us"],
        "latency_us_min": st["min_us"], "latency_us_max": st["max_us"],
        "latency_us_mean": st["mean_us"],
    }


def measure(session: "DeviceSession", model: "ModelRef", options: "RunOptions") -> dict[str, Any]:
    """Upload + arena + bench of ``model`` on an open session; the metrics dict."""
    info = session.info
    data = model.path.read_bytes()
    t0 = time.perf_counter()
    up = session.upload(data)
    upload_s = time.perf_counter() - t0
    metrics: dict[str, Any] = {
        "upload_s": upload_s, "upload_bytes_per_s": len(data) / upload_s if upload_s else None,
        "tick_hz": float(info.tick_hz), "firmware_version": info.firmware_version,
        "tflm_version": info.tflm_version, "board": info.board, "tick_source": info.tick_source,
        "bench_runs": options.runs, "bench_warmup": options.warmup,
    }
    session.require_engine(up)
    used, capacity = session.arena()
    metrics.update(arena_used=used, arena_capacity=capacity)
    stats = session.bench(warmup=options.warmup, runs=options.runs, inputs=session.seeded_inputs())
    metrics.update(latency_columns(stats))
    if options.dataset:
        from .accuracy import on_device_accuracy
        try:
            metrics.update(on_device_accuracy(session, data, options.dataset, options.samples))
        except (DataError, ModelError) as exc:  # latency stands; say why accuracy is missing
            metrics["note"] = f"no accuracy on {options.dataset}: {exc}"
    return metrics
