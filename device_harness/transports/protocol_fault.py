"""pyserial URL handler ``fault://<inner-url>#corrupt=R&drop=R&dup=R&seed=N&direction=both``."""

from device_harness.transports._wrapper_url import make_serial_class
from device_harness.transports.faulty import FaultyPort


def _wrap(inner, opts):
    known = {"corrupt": float, "drop": float, "dup": float, "seed": int, "direction": str}
    unknown = set(opts) - set(known)
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(unknown)}")
    return FaultyPort(inner, **{k: known[k](v) for k, v in opts.items()})


Serial = make_serial_class("fault", _wrap)
