"""Upload goodput to the firmware on QEMU mps2-an386, side by side with the emulated line's capacity.

Boots the engine-less firmware (`qemu:engine-less`; built here if missing) and measures, in
one run:
  * upload goodput: model bytes / wall time of DeviceClient.upload (MODEL_BEGIN, chunks, MODEL_END
    with SHA-256 verification on the device): 64 KB uploads alternating with raw-line measurements
    (so both see the same host load; medians reported), then one 300 KB upload;
  * raw line capacity into the device: a burst of bytes the firmware's parser skips (no sync), then
    one ECHO -- bytes per second the emulated UART delivers, the ceiling for any upload (QEMU's
    CMSDK UART model hands the guest one byte per main-loop wake-up);
  * ECHO of max-size payloads (round trip, both directions).
Prints a table and, last, ONE line of JSON with the figures and ratios.

    .venv/bin/python benchmarks/qemu_upload_goodput.py [--rounds 3] [--big 307200]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import serial

from device_harness.backends.qemu import QemuBackend
from device_harness.firmware_builds import build_preset, device_elf
from device_harness.client import DeviceClient
from device_harness.protocol import FrameDecoder, MsgType, encode_frame


def raw_rx_rate(url: str, nbytes: int) -> float:
    """Bytes/s the device consumes: `nbytes` of 0x00 (skipped while hunting for sync), then an ECHO."""
    port = serial.serial_for_url(url, timeout=0.05)
    decoder = FrameDecoder()
    t0 = time.perf_counter()
    port.write(bytes(nbytes) + encode_frame(MsgType.ECHO, 1, b"done"))
    events: list = []
    while not events:
        if time.perf_counter() - t0 > 300:
            raise TimeoutError("no ECHO answer after the raw burst")
        events = decoder.feed(port.read(4096))
    dt = time.perf_counter() - t0
    port.close()
    return (nbytes + 18) / dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="alternating raw / 64 KB upload rounds")
    ap.add_argument("--big", type=int, default=307200, help="size of the one large upload")
    ap.add_argument("--echo-rounds", type=int, default=5)
    args = ap.parse_args()
    elf = device_elf("qemu", "engine-less") or build_preset("qemu-mps2-an386")  # random bytes: no engine
    figures: dict[str, float | int | str] = {"elf": os.path.basename(elf), "machine": "mps2-an386"}
    small = 65536
    raw, up_small, retrans = [], [], 0
    with QemuBackend(elf) as backend:
        # Alternate raw-line and upload measurements so both see the same host load.
        for _ in range(args.rounds):
            raw.append(raw_rx_rate(backend.url, small))
            with DeviceClient.open(backend.url, baud=backend.baud) as dev:
                info = dev.hello()
                result = dev.upload(os.urandom(small))
                assert result.verified
                up_small.append(small / result.seconds)
                retrans += result.retransmitted_bytes
        raw.append(raw_rx_rate(backend.url, small))
        with DeviceClient.open(backend.url, baud=backend.baud) as dev:
            info = dev.hello()
            payload = os.urandom(info.max_payload)
            t0 = time.perf_counter()
            for _ in range(args.echo_rounds):
                assert dev.echo(payload) == payload
            echo_rate = args.echo_rounds * (len(payload) + 14) / (time.perf_counter() - t0)
            big = dev.upload(os.urandom(args.big))
            assert big.verified
        raw.append(raw_rx_rate(backend.url, small))
    line = statistics.median(raw)
    goodput = statistics.median(up_small)
    big_rate = args.big / big.seconds
    figures.update({
        "max_payload": info.max_payload, "rx_window": info.rx_window,
        "raw_rx_bytes_per_s_median": round(line), "raw_rx_bytes_per_s_min": round(min(raw)),
        "raw_rx_bytes_per_s_max": round(max(raw)),
        "upload_64k_bytes_per_s_median": round(goodput), "upload_64k_vs_raw_rx": round(goodput / line, 3),
        "upload_64k_retransmitted_bytes": retrans,
        f"upload_{args.big // 1024}k_s": round(big.seconds, 2),
        f"upload_{args.big // 1024}k_bytes_per_s": round(big_rate),
        f"upload_{args.big // 1024}k_vs_raw_rx": round(big_rate / line, 3),
        "echo_round_trip_bytes_per_s": round(echo_rate),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    })
    print(f"raw line rate into the device: median {line / 1e3:.1f} kB/s "
          f"(min {min(raw) / 1e3:.1f}, max {max(raw) / 1e3:.1f}, {len(raw)} runs)", file=sys.stderr)
    print(f"upload 64 KB: median {goodput / 1e3:.1f} kB/s = {goodput / line:.0%} of the raw line rate",
          file=sys.stderr)
    print(f"upload {args.big:,} B: {big.seconds:.1f} s, {big_rate / 1e3:.1f} kB/s = {big_rate / line:.0%} "
          f"of the raw line rate; ECHO round trip {echo_rate / 1e3:.1f} kB/s each way", file=sys.stderr)
    sys.stderr.flush()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
