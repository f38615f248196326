"""A few hundred bytes of YAML aliases ("billion laughs") are refused before they grow, in every
YAML file a user gives (pipeline config, farm file, regress suite); values echoed in error
messages are bounded."""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tinyfarm import safe_yaml
from tinyfarm.errors import ConfigError, TinyfarmError, short

REPO = Path(__file__).resolve().parents[2]


def bomb(key_line: str) -> str:
    """``key_line`` ends in ``*a8``: 9**9 (387 million) strings once expanded."""
    lines = ['x0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"x{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 9)]
    return "\n".join(lines) + "\n" + key_line + "\n"


def _cli_limited(args, cwd):
    """The CLI in a child with 1.5 GiB of address space and 60 s: a regression fails, not swaps."""
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (3 << 29, 3 << 29))
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-c", "from tinyfarm.cli import main; main()", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=60,
                          preexec_fn=limit)
    return proc


@pytest.mark.parametrize("name, text, args", [
    ("farm.yaml", "devices:\n  - name: d0\n    backend: *a8\n", ["farm", "list", "--farm", "farm.yaml"]),
    ("c.yaml", "dataset:\n  name: *a8\n", ["run", "c.yaml", "--out", "out"]),
    ("suite.yaml", "models:\n  - name: *a8\n    synthetic_bytes: 10\n",
     ["regress", "--suite", "suite.yaml", "--baseline", "b.json"]),
])
def test_alias_bomb_is_refused_in_one_line(tmp_path, name, text, args):
    (tmp_path / name).write_text(bomb(text.rstrip("\n").split("\n")[0]) + "\n".join(text.split("\n")[1:]))
    assert (tmp_path / name).stat().st_size < 600
    proc = _cli_limited(args, tmp_path)
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    assert proc.returncode not in (0, None) and proc.returncode > 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "MemoryError" not in proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), lines[:5]
    assert "refused: the YAML expands to more than" in lines[0] and name in lines[0]


def test_the_loader_refuses_bombs_recursion_depth_and_size():
    with pytest.raises(safe_yaml.YamlTooLarge, match="expands to more than"):
        safe_yaml.load(bomb("y: *a8"), "b.yaml")
    with pytest.raises(safe_yaml.YamlTooLarge, match="recursive"):
        safe_yaml.load("a: &a [1, *a]\n", "r.yaml")
    with pytest.raises(safe_yaml.YamlTooLarge, match="nested"):
        safe_yaml.load("a: " + "[" * 200 + "]" * 200 + "\n", "d.yaml")
    with pytest.raises(safe_yaml.YamlTooLarge, match="nested too deeply"):
        safe_yaml.load("a: " + "[" * 5000 + "]" * 5000 + "\n", "d.yaml")
    with pytest.raises(safe_yaml.YamlTooLarge, match="larger than"):
        safe_yaml.load("a: " + "x" * (safe_yaml.MAX_BYTES + 1), "big.yaml")
    assert isinstance(safe_yaml.YamlTooLarge("x"), ConfigError)


def test_ordinary_yaml_loads_as_safe_load_does():
    text = ("base: &base {epochs: 2, width: 4}\nbaseline:\n  <<: *base\n  depth: 2\n"
            "kinds: [float32, int8]\nnested: {a: [1, 2, {b: null}]}\nwhen: 2024-01-01\n")
    assert safe_yaml.load(text, "ok.yaml") == yaml.safe_load(text)
    for path in [*REPO.glob("configs/*.yaml"), REPO / "farm.example.yaml",
                 *REPO.glob("device_harness/regress_suites/*.yaml"), REPO / "device_harness/boards.yaml"]:
        assert safe_yaml.load_file(path) == yaml.safe_load(path.read_text()), path


def test_no_other_yaml_loader_reads_user_files():
    """Every YAML load of a user file goes through tinyfarm.safe_yaml (our own protocol spec aside)."""
    allowed = {REPO / "tinyfarm/safe_yaml.py", REPO / "device_harness/protocol/spec.py",
               REPO / "device_harness/protocol/codegen.py"}
    offenders = []
    for folder in ("tinyfarm", "pipeline", "device_harness", "datasets"):
        for path in (REPO / folder).rglob("*.py"):
            if path not in allowed and re.search(r"\byaml\.(safe_load|load|full_load|unsafe_load)\(|"
                                                 r"\byaml\.(C?Safe)?Loader\b", path.read_text()):
                offenders.append(str(path.relative_to(REPO)))
    assert not offenders


def test_echoed_values_are_bounded():
    huge = ["lol"] * 10_000
    shared = [huge] * 1000  # what an alias-expanded value looks like: cheap to hold, huge to print
    assert len(short(shared)) <= 80 and len(short("x" * 10_000)) <= 80
    err = TinyfarmError("bad value: " + "y" * 100_000 + "\nsecond line")
    assert len(str(err)) <= 600 and "\n" not in str(err)
    from device_harness.farm.inventory import parse_farm

    with pytest.raises(ConfigError) as info:
        parse_farm("devices:\n  - name: d0\n    backend: " + "z" * 5000 + "\n", Path("f.yaml"))
    assert len(str(info.value)) < 300 and "unknown backend 'zzz" in str(info.value)
