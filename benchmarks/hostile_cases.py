"""The cases of ``hostile_inputs.py``: a bad input or a fault each, and what it takes to stage it.

A case is a ``tinyfarm`` command line (built from a :class:`Ctx`: the case's folder, the fixtures,
helper twins and servers), optionally something done while it runs (kill its device, signal it)
and a check after it (a marker file a hostile input must not have created).
"""

from __future__ import annotations

import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from hostile_fixtures import REPO, Fixtures
from hostile_procs import MARK, descendants

TINYFARM_SCRIPT = Path(sys.executable).with_name("tinyfarm")
TINYFARM = [str(TINYFARM_SCRIPT)] if TINYFARM_SCRIPT.exists() else [sys.executable, "-m", "tinyfarm.cli"]
#: a folder nobody may write: chmod does not stop root, sysfs does
READONLY = Path("/sys/tinyfarm-hostile") if os.geteuid() == 0 else None
FARM_EXAMPLE = REPO / "farm.example.yaml"


class Ctx:
    """One case's world: its folder, the fixtures, and helpers it started (stopped by :meth:`close`)."""

    def __init__(self, fx: Fixtures, folder: Path, token: str, base_env: dict[str, str]) -> None:
        self.fx, self.dir, self.token = fx, folder, token
        self.base_env = base_env
        self.helpers: list[subprocess.Popen] = []
        self.sockets: list[socket.socket] = []
        self.notes: list[str] = []

    @property
    def helper_token(self) -> str:
        return self.token + ":helper"

    def env(self, helper: bool = False) -> dict[str, str]:
        return dict(self.base_env, **{MARK: self.helper_token if helper else self.token})

    def readonly(self) -> Path:
        if READONLY is not None:
            return READONLY / "out"
        path = self.dir / "readonly"
        path.mkdir(exist_ok=True)
        path.chmod(0o555)
        return path / "out"

    def twin(self, *args: str) -> tuple[subprocess.Popen, str]:
        """A helper ``tinyfarm twin ARGS`` (not the case under test); its URL."""
        proc = subprocess.Popen(TINYFARM + ["twin", *args], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, env=self.env(helper=True), cwd=self.dir)
        self.helpers.append(proc)
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        url = proc.stdout.readline().decode().strip() if ready else ""
        if not url:
            raise RuntimeError("helper twin did not start")
        return proc, url

    def hold(self, url: str) -> None:
        """Connect to a TCP device and keep the connection (another client holding it)."""
        host, port = url.removeprefix("socket://").rsplit(":", 1)
        self.sockets.append(socket.create_connection((host, int(port))))
        time.sleep(0.3)

    def busy_port(self) -> int:
        """A loopback TCP port something else is listening on."""
        listener = socket.create_server(("127.0.0.1", 0))
        self.sockets.append(listener)
        return listener.getsockname()[1]

    def server(self, mode: str) -> str:
        """A misbehaving device on loopback TCP: ``close``, ``reset``, ``garbage`` or ``silent``."""
        listener = socket.create_server(("127.0.0.1", 0))
        self.sockets.append(listener)

        def serve() -> None:
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                self.sockets.append(conn)
                if mode == "reset":
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                if mode in ("close", "reset"):
                    conn.close()
                elif mode == "garbage":
                    conn.recv(64)
                    conn.sendall(b"\xa5\x5a" + bytes(range(256)) * 8)
                    conn.close()

        threading.Thread(target=serve, daemon=True).start()
        return f"socket://127.0.0.1:{listener.getsockname()[1]}"

    def close(self) -> None:
        for s in self.sockets:
            try:
                s.close()
            except OSError:
                pass
        for proc in self.helpers:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            proc.stdout.close()


@dataclass
class Case:
    name: str
    args: Callable[[Ctx], list]
    quick: bool = False
    timeout: float = 90.0
    needs: str | None = None  # "keras" (TensorFlow fixtures) or "qemu"
    during: Callable[[Ctx, subprocess.Popen], None] | None = None
    check: Callable[[Ctx], str | None] | None = None
    env: dict[str, str] = field(default_factory=dict)


def kill_helper_after(delay: float) -> Callable[[Ctx, subprocess.Popen], None]:
    def during(ctx: Ctx, proc: subprocess.Popen) -> None:
        time.sleep(delay)
        for helper in ctx.helpers:
            helper.kill()
    return during


def signal_when_running(needle: str, sig: int, settle: float = 1.0):
    """Send ``sig`` to the case once a process whose command line holds ``needle`` runs below it."""
    def during(ctx: Ctx, proc: subprocess.Popen) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if any(needle in cmd for cmd in descendants(proc.pid).values()):
                time.sleep(settle)
                ctx.notes.append(f"sent {signal.Signals(sig).name}")
                proc.send_signal(sig)
                return
            time.sleep(0.1)
        ctx.notes.append(f"{needle} never ran")
    return during


def marker_absent(attr: str) -> Callable[[Ctx], str | None]:
    def check(ctx: Ctx) -> str | None:
        marker = getattr(ctx.fx, attr)
        return f"{marker.name} exists: code from the file ran" if marker.exists() else None
    return check


def build_cases() -> list[Case]:
    C = Case
    m = lambda ctx: ctx.fx.model  # noqa: E731
    run_cfg = lambda name, **sections: (lambda ctx: ["run", ctx.fx.config(name, **sections), "--out", "out"])  # noqa: E731
    npy_in = lambda attr, cmd="invoke": (lambda ctx: [cmd, m(ctx), "-i", getattr(ctx.fx, attr)]  # noqa: E731
                                         + (["-o", "out"] if cmd == "invoke" else []))
    return [
        # -- numbers and options ------------------------------------------------------------------
        C("deploy_arena_bytes_negative", lambda c: ["deploy", m(c), "--arena-bytes", "-5"]),
        C("deploy_arena_bytes_zero", lambda c: ["deploy", m(c), "--arena-bytes", "0"], quick=True),
        C("deploy_baud_zero", lambda c: ["deploy", m(c), "--baud", "0"], quick=True),
        C("bench_runs_zero", lambda c: ["bench", m(c), "--runs", "0"]),
        C("bench_warmup_negative", lambda c: ["bench", m(c), "--warmup", "-1"]),
        C("evaluate_limit_zero", lambda c: ["evaluate", m(c), "--dataset", "digits", "--limit", "0"]),
        C("twin_port_70000", lambda c: ["twin", "--tcp", "--port", "70000"], quick=True, timeout=30),
        C("twin_port_negative", lambda c: ["twin", "--tcp", "--port", "-1"], timeout=30),
        C("twin_idle_timeout_nan", lambda c: ["twin", "--tcp", "--idle-timeout", "nan"], timeout=30),
        C("farm_status_timeout_nan", lambda c: ["farm", "status", "--farm", FARM_EXAMPLE, "--timeout", "nan"]),
        C("run_seed_negative", lambda c: ["run", "--out", "out", "--seed", "-1"]),
        C("deploy_unknown_board", lambda c: ["deploy", m(c), "--board", "no-such-board"]),
        # -- model files ----------------------------------------------------------------------------
        C("deploy_truncated_tflite", lambda c: ["deploy", c.fx.truncated_model], quick=True),
        C("deploy_text_as_tflite", lambda c: ["deploy", c.fx.text_as_model]),
        C("deploy_empty_tflite", lambda c: ["deploy", c.fx.empty_model]),
        C("deploy_directory_as_model", lambda c: ["deploy", c.fx.model_dir]),
        C("deploy_missing_model", lambda c: ["deploy", "missing.tflite"]),
        C("deploy_model_too_large_for_board", lambda c: ["deploy", c.fx.padded_model, "--device", "twin"]),
        # -- arrays -----------------------------------------------------------------------------------
        C("invoke_too_many_inputs", lambda c: ["invoke", m(c), "-i", c.fx.npy_good, "-i", c.fx.npy_good,
                                               "-o", "out"]),
        C("invoke_npy_wrong_shape", npy_in("npy_wrong_shape")),
        C("invoke_npy_wrong_dtype", npy_in("npy_wrong_dtype")),
        C("invoke_npy_pickled_objects", npy_in("npy_pickled"), check=marker_absent("pickle_marker")),
        C("bench_npy_pickled_objects", npy_in("npy_pickled", "bench"), quick=True,
          check=marker_absent("pickle_marker")),
        C("invoke_text_as_npy", npy_in("npy_text")),
        C("invoke_npz_as_input", npy_in("npz_as_input")),
        C("invoke_output_dir_is_a_file",
          lambda c: ["invoke", m(c), "-i", c.fx.npy_good, "-o", c.fx.csv_data]),
        C("invoke_output_dir_readonly",
          lambda c: ["invoke", m(c), "-i", c.fx.npy_good, "-o", c.readonly()]),
        # -- data sets ------------------------------------------------------------------------------
        C("evaluate_csv_dataset", lambda c: ["evaluate", m(c), "--dataset", c.fx.csv_data]),
        C("evaluate_empty_npz", lambda c: ["evaluate", m(c), "--dataset", c.fx.empty_npz]),
        C("evaluate_mismatched_npz", lambda c: ["evaluate", m(c), "--dataset", c.fx.mismatched_npz]),
        C("evaluate_nan_npz", lambda c: ["evaluate", m(c), "--dataset", c.fx.nan_for_model]),
        C("evaluate_unknown_dataset", lambda c: ["evaluate", m(c), "--dataset", "no-such-data"]),
        C("evaluate_data_shape_mismatch", lambda c: ["evaluate", m(c), "--dataset", "digits", "--limit", "5"]),
        # -- devices ----------------------------------------------------------------------------------
        C("device_path_missing", lambda c: ["info", "--device", "/dev/tinyfarm-no-such-tty"]),
        C("device_socket_refused", lambda c: ["info", "--device", "socket://127.0.0.1:1"], quick=True),
        C("device_url_without_port", lambda c: ["info", "--device", "socket://127.0.0.1"]),
        C("device_unknown_scheme", lambda c: ["info", "--device", "nosuch://x"], quick=True),
        C("device_twin_unknown_board", lambda c: ["info", "--device", "twin:no-such-board"]),
        C("device_qemu_missing_elf", lambda c: ["info", "--device", "qemu:/nonexistent/fw.elf"]),
        C("device_qemu_text_as_elf", lambda c: ["info", "--device", f"qemu:{c.fx.csv_data}"]),
        C("device_renode_not_installed", lambda c: ["info", "--device", f"renode:{c.fx.csv_data}"]),
        C("device_dev_null", lambda c: ["info", "--device", "/dev/null"]),
        C("twin_port_in_use", lambda c: ["twin", "--tcp", "--port", c.busy_port()], timeout=30),
        C("device_unknown_name", lambda c: ["info", "--device", "no-such-device"]),
        C("device_regular_file", lambda c: ["info", "--device", c.fx.csv_data]),
        C("device_closes_connection", lambda c: ["deploy", m(c), "--device", c.server("close")], quick=True),
        C("device_resets_connection", lambda c: ["deploy", m(c), "--device", c.server("reset")]),
        C("device_sends_garbage", lambda c: ["info", "--device", c.server("garbage")]),
        C("device_never_answers", lambda c: ["info", "--device", c.server("silent")]),
        C("twin_busy_held_by_another_client",
          lambda c: (lambda url: (c.hold(url), ["info", "--device", url])[1])(c.twin("--tcp")[1]), quick=True),
        C("twin_killed_mid_upload_tcp",
          lambda c: ["deploy", m(c), "--device", c.twin("--tcp", "--baud", "600")[1]],
          during=kill_helper_after(2.5)),
        C("twin_killed_mid_upload_pty",
          lambda c: ["deploy", m(c), "--device", c.twin("--baud", "600")[1]], during=kill_helper_after(2.5)),
        C("sigkill_during_deploy_to_twin", lambda c: ["deploy", m(c), "--device", "twin", "--baud", "300"],
          quick=True, during=signal_when_running("tflm_child", signal.SIGKILL)),
        C("sigterm_during_deploy_to_twin", lambda c: ["deploy", m(c), "--device", "twin", "--baud", "300"],
          during=signal_when_running("tflm_child", signal.SIGTERM)),
        C("sigkill_during_deploy_to_qemu", lambda c: ["deploy", m(c), "--device", "qemu"], needs="qemu",
          during=signal_when_running("qemu-system-arm", signal.SIGKILL, settle=0.5)),
        C("sigterm_during_deploy_to_qemu", lambda c: ["deploy", m(c), "--device", "qemu"], needs="qemu",
          during=signal_when_running("qemu-system-arm", signal.SIGTERM, settle=0.5)),
        C("sigkill_twin_command", lambda c: ["twin", "--tcp"],
          during=signal_when_running("tflm_child", signal.SIGKILL, settle=0.5)),
        # -- farm and regress -------------------------------------------------------------------------
        C("sigkill_during_farm_run", lambda c: ["farm", "run", "--farm", FARM_EXAMPLE, "--models", m(c),
                                                "--db", "r.sqlite"],
          during=signal_when_running("tflm_child", signal.SIGKILL)),
        C("sigterm_during_farm_run", lambda c: ["farm", "run", "--farm", FARM_EXAMPLE, "--models", m(c),
                                                "--db", "r.sqlite"],
          during=signal_when_running("tflm_child", signal.SIGTERM)),
        C("farm_yaml_alias_bomb", lambda c: ["farm", "list", "--farm", c.fx.bomb_farm], quick=True),
        C("farm_url_without_port", lambda c: ["farm", "list", "--farm", c.fx.farm(
            "badurl.yaml", "{name: b1, backend: board, connection: {url: 'socket://127.0.0.1'}}")]),
        C("farm_unknown_backend", lambda c: ["farm", "list", "--farm", c.fx.farm(
            "badbackend.yaml", "{name: x1, backend: qmeu}")]),
        C("farm_missing_file", lambda c: ["farm", "list", "--farm", "missing.yaml"]),
        C("farm_labgrid_place_without_name_or_tags", lambda c: ["farm", "list", "--farm", c.fx.farm(
            "lgplace.yaml", "{name: l1, backend: labgrid, place: {match: [a/b/NetworkSerialPort]}}")]),
        C("labgrid_no_coordinator", lambda c: ["info", "--device", "labgrid:p1"],
          env={"LG_COORDINATOR": "127.0.0.1:1"}),
        C("farm_db_foreign_sqlite", lambda c: ["farm", "report", "--db", c.fx.foreign_sqlite]),
        C("farm_db_not_sqlite", lambda c: ["farm", "report", "--db", c.fx.text_as_sqlite]),
        C("farm_report_run_id_overflow", lambda c: ["farm", "report", "--db", c.fx.empty_store,
                                                    "--run", "9" * 30]),
        C("farm_run_missing_models", lambda c: ["farm", "run", "--farm", FARM_EXAMPLE, "--models",
                                                "no-such-dir", "--db", "r.sqlite"]),
        C("regress_unknown_suite", lambda c: ["regress", "--suite", "no-such-suite", "--baseline", "b.json"]),
        C("regress_yaml_alias_bomb", lambda c: ["regress", "--suite", c.fx.bomb_config, "--baseline", "b.json"]),
        # -- the pipeline -----------------------------------------------------------------------------
        C("run_config_yaml_alias_bomb", lambda c: ["run", c.fx.bomb_config, "--out", "out"]),
        C("run_config_unknown_key", run_cfg("unknown_key.yaml", baseline={"widht": 4}), quick=True),
        C("run_config_missing", lambda c: ["run", "missing.yaml", "--out", "out"]),
        C("run_dataset_csv", lambda c: run_cfg("csv.yaml", dataset={"name": "mine", "path": str(c.fx.csv_data)})(c)),
        C("run_dataset_empty_npz", lambda c: run_cfg("empty.yaml", dataset={"path": str(c.fx.empty_npz)})(c)),
        C("run_dataset_mismatched_npz",
          lambda c: run_cfg("mismatched.yaml", dataset={"path": str(c.fx.mismatched_npz)})(c)),
        C("run_dataset_nan", lambda c: run_cfg("nan.yaml", dataset={"path": str(c.fx.nan_npz)})(c), timeout=180),
        C("run_dataset_unknown", run_cfg("unknown_ds.yaml", dataset={"name": "no-such-data"})),
        C("run_out_is_a_file", lambda c: ["run", c.fx.config("ok.yaml"), "--out", c.fx.csv_data]),
        C("run_out_readonly", lambda c: ["run", c.fx.config("ok.yaml"), "--out", c.readonly()], timeout=180),
        C("run_h5_with_lambda_layer", lambda c: run_cfg("lambda.yaml", baseline={
            "model_path": str(c.fx.keras_models["lambda"]), "train": False})(c), needs="keras",
          check=marker_absent("lambda_marker"), timeout=180),
        C("run_model_input_mismatch", lambda c: run_cfg("mismatch_model.yaml", baseline={
            "model_path": str(c.fx.keras_models["small_input"]), "train": False})(c), needs="keras",
          timeout=180),
    ]
