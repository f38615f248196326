"""The firmware builds tinyfarm boots on emulators: which CMake preset, which TFLM tree, which ELF.

TFLM's C++ sources are in no package registry, so the engine builds compile a TFLM tree found
without configuration: ``$TFLM_ROOT``, else ``../shared/tflm`` beside the checkout. Without one,
only the engine-less presets build (the protocol-conformance firmware), and whatever needs an engine
says so and skips. The presets themselves live in ``firmware/CMakePresets.json`` (the one place a
build configuration is written); this module names them, builds them (``make firmware`` runs
``python -m device_harness.firmware_builds``) and finds their ELFs:

``--device qemu`` / ``renode`` boot the reference-kernel TFLM build when it exists (the one whose
outputs are identical to the host TFLM), else the engine-less one; ``qemu:cmsis-nn`` boots the
CMSIS-NN build. Builds go through ccache when it is installed (``~/.cache/ccache``), and a file lock
per preset keeps two processes from building the same tree at once.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from device_harness.shared_folder import REPO_ROOT, SHARED_TFLM
from tinyfarm.errors import DeviceError

FIRMWARE_DIR = REPO_ROOT / "firmware"
BUILD_DIR = FIRMWARE_DIR / "build"


@dataclass(frozen=True)
class FirmwareBuild:
    """One preset of ``firmware/CMakePresets.json`` and the device name that boots its ELF."""

    preset: str
    emulator: str        # "qemu" | "renode": the backend that boots it
    kernels: str         # "none" (engine-less) | "reference" | "cmsis-nn"
    variant: str | None  # the device-name suffix: None = the emulator's default, "cmsis-nn", ...

    @property
    def needs_tflm(self) -> bool:
        return self.kernels != "none"

    @property
    def device(self) -> str:
        return f"{self.emulator}:{self.variant}" if self.variant else self.emulator


#: every build ``make firmware`` makes, the preferred build of each device name first
BUILDS: tuple[FirmwareBuild, ...] = (
    FirmwareBuild("qemu-mps2-an386-tflm", "qemu", "reference", None),
    FirmwareBuild("qemu-mps2-an386", "qemu", "none", "engine-less"),
    FirmwareBuild("qemu-mps2-an386-tflm-cmsis-nn", "qemu", "cmsis-nn", "cmsis-nn"),
    FirmwareBuild("renode-stm32f4-discovery-tflm", "renode", "reference", None),
    FirmwareBuild("renode-stm32f4-discovery", "renode", "none", "engine-less"),
)
VARIANTS = {(b.emulator, b.variant) for b in BUILDS if b.variant}


def get_build(preset: str) -> FirmwareBuild:
    for build in BUILDS:
        if build.preset == preset:
            return build
    raise DeviceError(f"unknown firmware preset {preset!r}; known: {', '.join(b.preset for b in BUILDS)}")


def tflm_root() -> Path | None:
    """The TFLM tree the engine builds compile: ``$TFLM_ROOT``, else ``../shared/tflm``; None without."""
    env = os.environ.get("TFLM_ROOT")
    root = Path(env).expanduser() if env else SHARED_TFLM
    return root.resolve() if (root / "tensorflow" / "lite" / "micro" / "micro_interpreter.h").is_file() else None


def tflm_missing() -> str | None:
    """Why no engine build can be made here (None when a TFLM tree was found)."""
    if tflm_root() is not None:
        return None
    env = os.environ.get("TFLM_ROOT")
    where = (f"TFLM_ROOT={env} is not a TFLM tree" if env else
             f"no TFLM tree: TFLM_ROOT unset and {SHARED_TFLM} absent")
    return f"{where} (TFLM's C++ sources are in no registry; see firmware/README.md)"


def toolchain_missing() -> str | None:
    """Why the firmware cannot be built here (None when cmake and arm-none-eabi-gcc are present)."""
    for tool in ("cmake", "arm-none-eabi-gcc", "arm-none-eabi-size"):
        if shutil.which(tool) is None:
            return f"{tool} not on PATH (install cmake and gcc-arm-none-eabi; `make test` does as root)"
    return None


def build_missing(preset: str) -> str | None:
    """Why ``preset`` cannot be built here, or None."""
    return toolchain_missing() or (tflm_missing() if get_build(preset).needs_tflm else None)


def preset_build_dir(preset: str) -> Path:
    return BUILD_DIR / preset


def preset_elf(preset: str) -> Path | None:
    """The ELF a preset's build produced, or None when it has not been built."""
    elfs = sorted(preset_build_dir(preset).glob("*.elf"))
    return elfs[0] if elfs else None


def device_elf(emulator: str, variant: str | None = None) -> Path | None:
    """The ELF ``--device EMULATOR[:VARIANT]`` boots: the first build of that name that exists."""
    for build in BUILDS:
        if build.emulator == emulator and (build.variant == variant or (variant is None and not build.needs_tflm)):
            elf = preset_elf(build.preset)
            if elf is not None:
                return elf
    return None


def engine_elf(emulator: str) -> Path | None:
    """The ELF of ``emulator``'s reference-kernel TFLM build (what ``--device EMULATOR`` boots), if built."""
    build = next(b for b in BUILDS if b.emulator == emulator and b.variant is None)
    return preset_elf(build.preset)


def firmware_elf(emulator: str, elf: Path | None, variant: str | None = None) -> Path:
    """The ELF an emulator backend boots: ``elf``, else the build ``--device EMULATOR[:VARIANT]``
    names; DeviceError (one line) when there is none or it is not an ELF file."""
    elf = elf or device_elf(emulator, variant)
    if elf is None:
        raise DeviceError(f"{build_hint(emulator, variant)}, or use {emulator}:PATH.elf")
    if not elf.is_file():
        raise DeviceError(f"firmware ELF {elf} does not exist")
    with open(elf, "rb") as fh:
        if fh.read(4) != b"\x7fELF":
            raise DeviceError(f"{elf} is not an ELF file")
    return elf


def build_hint(emulator: str, variant: str | None = None) -> str:
    """What to do so that ``--device EMULATOR[:VARIANT]`` has firmware (or why it cannot have any)."""
    presets = [b.preset for b in BUILDS if b.emulator == emulator and b.variant == variant]
    preset = presets[0] if presets else next(b.preset for b in BUILDS if b.emulator == emulator)
    name = f"--device {emulator}{':' + variant if variant else ''}"
    reason = build_missing(preset)
    if reason:
        return f"no firmware built for {name}, and it cannot be built here: {reason}"
    return (f"no firmware built for {name}: run `make firmware` (or `cmake --preset {preset} && "
            f"cmake --build --preset {preset}` in {FIRMWARE_DIR})")


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    root = tflm_root()
    if root is not None:
        env["TFLM_ROOT"] = str(root)
    return env


def build_preset(preset: str, *, timeout_s: float = 3600.0, echo: bool = False) -> Path:
    """Configure and build ``preset`` (``cmake --preset P && cmake --build --preset P``); its ELF.

    Up-to-date builds take a second; one process builds a preset at a time (file lock). ``echo``
    streams CMake's output (``make firmware``); otherwise a failure raises DeviceError with the tail
    of the log.
    """
    reason = build_missing(preset)
    if reason:
        raise DeviceError(f"cannot build firmware preset {preset}: {reason}")
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    with FileLock(str(BUILD_DIR / f".{preset}.lock")):
        jobs = f"-j{os.cpu_count() or 2}"
        for cmd in (["cmake", "--preset", preset], ["cmake", "--build", "--preset", preset, jobs]):
            proc = subprocess.run(cmd, cwd=FIRMWARE_DIR, env=_environment(), timeout=timeout_s, text=True,
                                  stdout=None if echo else subprocess.PIPE,
                                  stderr=None if echo else subprocess.STDOUT)
            if proc.returncode != 0:
                tail = "" if echo else "\n" + "\n".join(proc.stdout.strip().splitlines()[-15:])
                raise DeviceError(f"`{' '.join(cmd)}` failed in {FIRMWARE_DIR}{tail}")
    elf = preset_elf(preset)
    if elf is None:
        raise DeviceError(f"the {preset} build produced no .elf in {preset_build_dir(preset)}")
    return elf


def main(argv: list[str] | None = None) -> int:
    """``make firmware``: build every preset this machine can build; say why the others are skipped."""
    parser = argparse.ArgumentParser(prog="python -m device_harness.firmware_builds", description=main.__doc__)
    parser.add_argument("presets", nargs="*", help="presets to build (default: every one buildable here)")
    args = parser.parse_args(argv)
    builds = [get_build(p) for p in args.presets] if args.presets else list(BUILDS)
    failed = False
    for build in builds:
        reason = build_missing(build.preset)
        if reason:
            print(f"firmware: skipping {build.preset}: {reason}", flush=True)
            failed = failed or bool(args.presets)
            continue
        print(f"firmware: building {build.preset} (kernels: {build.kernels}; --device {build.device})", flush=True)
        start = time.monotonic()
        try:
            elf = build_preset(build.preset, echo=True)
        except DeviceError as exc:
            print(f"error: {exc}", file=sys.stderr, flush=True)
            return 1
        print(f"firmware: {build.preset} ready in {time.monotonic() - start:.0f} s: {elf}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
