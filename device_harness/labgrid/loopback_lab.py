"""A whole labgrid lab on one machine, on loopback: a coordinator, exporters, ser2net and twins.

What the tests and ``benchmarks/labgrid_farm.py`` run, and a way to try a labgrid farm before a
lab has one. Each "host" is one exporter with one ser2net serving its twins' ptys over RFC 2217 —
the layout of a real lab host with USB boards. Everything binds 127.0.0.1 (labgrid's coordinator
would listen on every interface by default, and the ser2net configuration an exporter writes for
a ``RawSerialPort`` does too: so the lab runs its own ser2net and exports ``NetworkSerialPort``),
and every process is started with :func:`tinyfarm.child_process.spawn`, so none outlives it.

    with LoopbackLab({"host-a": ["twin-1", "twin-2"], "host-b": ["twin-3"]}, pace_baud=115200) as lab:
        lab.farm_file(path)          # a farm file with one labgrid device per twin
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterable

import yaml

from device_harness.backends.base import free_port
from tinyfarm import child_process
from tinyfarm.atomic_files import write_text
from tinyfarm.errors import ConfigError, DeviceError

from . import require


def _wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DeviceError(f"{what} exited at start (status {proc.returncode})")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise DeviceError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:g} s")


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None and name == "ser2net" and os.path.exists("/usr/sbin/ser2net"):
        found = "/usr/sbin/ser2net"
    if found is None:
        raise ConfigError(f"{name} is not installed (labgrid: pip install 'tinyfarm[labgrid]'; "
                          "ser2net: apt-get install ser2net)")
    return found


class Host:
    """One lab host: an exporter and its ser2net, serving some twins."""

    def __init__(self, name: str, twins: list[str]):
        self.name, self.twins = name, twins
        self.ports: dict[str, int] = {}
        self.exporter: subprocess.Popen | None = None
        self.ser2net: subprocess.Popen | None = None
        self.twin_procs: dict[str, subprocess.Popen] = {}


class LoopbackLab:
    def __init__(self, hosts: dict[str, list[str]], *, pace_baud: int | None = None,
                 board: str | None = None, workdir: Path | None = None):
        require()
        self.hosts = {name: Host(name, list(twins)) for name, twins in hosts.items()}
        self.pace_baud, self.board = pace_baud, board
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="tinyfarm-lab-")
        self.workdir = Path(workdir or self._tmp.name)
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.coordinator: subprocess.Popen | None = None

    # -- processes ---------------------------------------------------------------------------------
    def _spawn(self, cmd: list[str], log: str) -> subprocess.Popen:
        out = open(self.workdir / log, "ab")  # noqa: SIM115 - the child keeps it
        try:
            return child_process.spawn(cmd, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=out,
                                       stderr=subprocess.STDOUT, new_session=True)
        finally:
            out.close()

    def start_coordinator(self) -> None:
        self.coordinator = self._spawn([_tool("labgrid-coordinator"), "-l", self.address],
                                       "coordinator.log")
        _wait_port(self.port, self.coordinator, "labgrid-coordinator")

    def _start_twin(self, host: Host, twin: str) -> str:
        cmd = [sys.executable, "-m", "device_harness.twin", "--exit-with-parent"]
        if self.board:
            cmd += ["--board", self.board]
        if self.pace_baud:
            cmd += ["--baud", str(self.pace_baud)]
        proc = child_process.spawn(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL, new_session=True)
        line = proc.stdout.readline().decode().strip() if proc.stdout else ""
        if not line.startswith("/dev/"):
            child_process.stop(proc)
            raise DeviceError(f"twin {twin} did not start (printed {line!r})")
        host.twin_procs[twin] = proc
        return line

    def start_host(self, name: str) -> None:
        """Twins, ser2net and the exporter of one host (again after :meth:`kill_host`)."""
        host = self.hosts[name]
        connections, exports = [], {}
        for twin in host.twins:
            pty = self._start_twin(host, twin)
            port = host.ports.setdefault(twin, free_port())
            connections.append({
                "accepter": f"telnet(rfc2217,mode=server),tcp,127.0.0.1,{port}",
                "connector": f"serialdev(nouucplock=true),{pty},115200n81,local"})
            exports[twin] = {"NetworkSerialPort": {"host": "127.0.0.1", "port": port,
                                                   "protocol": "rfc2217"}}
        lines = []  # ser2net's YAML: one "connection: &name" entry per port
        for i, c in enumerate(connections):
            lines += [f"connection: &{host.name.replace('-', '_')}_{i}",
                      f"  accepter: {c['accepter']}", f"  connector: {c['connector']}",
                      "  options:", "    max-connections: 1", ""]
        text = "\n".join(lines)
        config = self.workdir / f"ser2net-{name}.yaml"
        write_text(config, text)
        host.ser2net = self._spawn([_tool("ser2net"), "-d", "-n", "-c", str(config)],
                                   f"ser2net-{name}.log")
        for twin in host.twins:
            _wait_port(host.ports[twin], host.ser2net, f"ser2net of {name}")
        export_file = self.workdir / f"exporter-{name}.yaml"
        write_text(export_file, yaml.safe_dump(exports))
        host.exporter = self._spawn([_tool("labgrid-exporter"), "-c", self.address, "-n", name,
                                     "--hostname", "127.0.0.1", str(export_file)],
                                    f"exporter-{name}.log")
        self._wait_exported(name, host.twins)

    def _wait_exported(self, host: str, groups: Iterable[str], timeout: float = 30.0) -> None:
        from .coordinator import coordinator  # noqa: PLC0415

        wanted = set(groups)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            _, resources = coordinator(self.address).snapshot()
            if wanted <= {p[1] for p in resources if p[0] == host}:
                return
            time.sleep(0.1)
        log = (self.workdir / f"exporter-{host}.log").read_text(errors="replace").strip()
        raise DeviceError(f"exporter {host} did not announce {sorted(wanted)} within {timeout:g} s"
                          f" (its log ends: {log[-300:]!r})")

    def kill_exporter(self, name: str, sig: int = 9) -> None:
        """The exporter alone, as ``kill -9`` would (its ser2net keeps serving)."""
        proc = self.hosts[name].exporter
        if proc is not None:
            proc.send_signal(sig)
            proc.wait(10)

    def kill_coordinator(self) -> None:
        if self.coordinator is not None:
            self.coordinator.kill()
            self.coordinator.wait(10)

    def stop_host(self, name: str) -> None:
        host = self.hosts[name]
        _stop_all([host.exporter, host.ser2net, *host.twin_procs.values()])
        host.exporter, host.ser2net = None, None
        host.twin_procs.clear()

    def pids(self) -> list[int]:
        procs = [self.coordinator] + [p for h in self.hosts.values()
                                      for p in [h.exporter, h.ser2net, *h.twin_procs.values()]]
        return [p.pid for p in procs if p is not None and p.poll() is None]

    # -- the farm file -----------------------------------------------------------------------------
    def farm_file(self, path: Path, *, tags: dict[str, str] | None = None,
                  defaults: dict | None = None, lock_dir: Path | None = None) -> Path:
        """A farm file with one labgrid device per twin, its place matched to the twin's port."""
        devices = []
        for host in self.hosts.values():
            for twin in host.twins:
                place = {"name": twin, "match": [f"{host.name}/{twin}/NetworkSerialPort"],
                         "tags": {"kind": "twin", "host": re.sub(r"[^a-z0-9_]", "_", host.name),
                                  **(tags or {})}}
                devices.append({"name": twin, "backend": "labgrid", "board": self.board,
                                "place": place, "labels": ["lab"]})
        doc = {"farm": "loopback-lab", "labgrid": {"coordinator": self.address},
               "defaults": defaults or {"job_timeout_s": 120, "retries": 1},
               "devices": [{k: v for k, v in d.items() if v is not None} for d in devices]}
        if lock_dir is not None:
            doc["lock_dir"] = str(lock_dir)
        write_text(path, yaml.safe_dump(doc, sort_keys=False))
        return path

    # -- lifetime ----------------------------------------------------------------------------------
    def start(self) -> "LoopbackLab":
        try:
            self.start_coordinator()
            for name in self.hosts:
                self.start_host(name)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        from .coordinator import disconnect  # noqa: PLC0415

        disconnect(self.address)
        hosts = list(self.hosts.values())
        _stop_all([self.coordinator] + [p for h in hosts
                                        for p in [h.exporter, h.ser2net, *h.twin_procs.values()]])
        for host in hosts:
            host.exporter, host.ser2net = None, None
            host.twin_procs.clear()
        self.coordinator = None
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> "LoopbackLab":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _stop_all(procs: list, timeout: float = 5.0) -> None:
    """SIGTERM to all at once, then reap each (ser2net takes about a second to react)."""
    live = [p for p in procs if p is not None and p.poll() is None]
    for proc in live:
        proc.terminate()
    for proc in live:
        child_process.stop(proc, timeout)


def listening_sockets(pids: Iterable[int]) -> list[tuple[int, str]]:
    """(pid, "address:port") of every TCP socket the processes listen on, read from /proc."""
    inodes: dict[str, int] = {}
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes[target[8:-1]] = pid
        except OSError:
            continue
    found = []
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            hex_addr, hex_port = fields[1].split(":")
            found.append((inodes[fields[9]], f"{_address(hex_addr, width)}:{int(hex_port, 16)}"))
    return found


def _address(hex_addr: str, width: int) -> str:
    raw = bytes.fromhex(hex_addr)
    if width == 8:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
    return socket.inet_ntop(socket.AF_INET6, words)
