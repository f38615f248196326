"""One farm job on a connected device: upload (verified), arena, bench — and accuracy on request."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from tinyfarm.errors import DeviceError

from .runner import ModelRef, RunOptions


class NotBenchable(DeviceError):
    """The device verified the model but cannot run it (e.g. an engine-less firmware)."""

    transient = False


def seeded_inputs(client: Any, seed: int = 0) -> list[np.ndarray]:
    """Deterministic inputs matching the loaded model's tensors (latency does not depend on
    values for these kernels, but a fixed seed keeps runs comparable anyway)."""
    rng = np.random.default_rng(seed)
    out = []
    for t in client.inputs:
        dtype = t.numpy_dtype
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            arr = rng.integers(max(info.min, -128), min(info.max, 127) + 1, size=t.dims)
        elif dtype == np.bool_:
            arr = rng.integers(0, 2, size=t.dims)
        else:
            arr = rng.standard_normal(size=t.dims)
        out.append(arr.astype(dtype))
    return out


def latency_stats(ticks: list[int], tick_hz: float) -> dict[str, float]:
    """The harness's latency statistics, as results-store columns."""
    from device_harness.measure import latency_stats as harness_stats

    st = harness_stats(ticks, int(tick_hz)).as_dict()
    return {
        "ticks_median": st["median_ticks"], "ticks_p90": st["p90_ticks"],
        "ticks_min": float(st["min_ticks"]), "ticks_max": float(st["max_ticks"]),
        "latency_us_median": st["median_us"], "latency_us_p90": st["p90_us"],
        "latency_us_min": st["min_us"], "latency_us_max": st["max_us"],
        "latency_us_mean": st["mean_us"],
    }


def measure(client: Any, model: ModelRef, options: RunOptions) -> dict[str, Any]:
    """Upload + arena + bench of ``model`` on an open, HELLO'd ``client``; the metrics dict."""
    info = client.info if client.info is not None else client.hello()
    data = model.path.read_bytes()
    t0 = time.perf_counter()
    up = client.upload(data)
    upload_s = time.perf_counter() - t0
    metrics: dict[str, Any] = {
        "upload_s": upload_s, "upload_bytes_per_s": len(data) / upload_s if upload_s else None,
        "tick_hz": float(info.tick_hz), "firmware_version": info.firmware_version,
        "tflm_version": info.tflm_version, "board": info.board, "tick_source": info.tick_source,
        "bench_runs": options.runs, "bench_warmup": options.warmup,
    }
    if not up.loaded:
        raise NotBenchable(f"the model was verified on {info.board} but not loaded "
                           f"(firmware {info.firmware_version} has no TFLM engine)")
    used, capacity = client.arena()
    metrics.update(arena_used=used, arena_capacity=capacity)
    client.set_inputs(seeded_inputs(client))
    ticks = client.bench(warmup=options.warmup, runs=options.runs)
    metrics.update(latency_stats(ticks, info.tick_hz))
    if options.dataset:
        from tinyfarm.errors import DataError, ModelError

        from .accuracy import on_device_accuracy
        try:
            metrics.update(on_device_accuracy(client, model, options.dataset, options.samples))
        except (DataError, ModelError) as exc:  # latency stands; say why accuracy is missing
            metrics["note"] = f"no accuracy on {options.dataset}: {exc}"
    return metrics
