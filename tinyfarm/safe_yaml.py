"""The one YAML loader for files a user gives us (pipeline config, farm file, regress suite, boards).

``yaml.safe_load`` builds no Python objects, but it still follows anchors and aliases: a few
hundred bytes of ``&a [*b, *b, ...]`` ("billion laughs") describe a document of billions of nodes.
PyYAML shares the aliased objects, so loading itself is cheap; whatever walks the result next (a
validator copying it, an error message echoing a value) expands it and exhausts memory.
:func:`load` measures the document *as it would expand* from the composed node graph, before any
Python object is built, and refuses it beyond :data:`MAX_NODES` nodes, :data:`MAX_DEPTH` levels
or a recursive alias. Files over :data:`MAX_BYTES` are refused unread.

Malformed YAML still raises ``yaml.YAMLError`` (callers word it with the file's name); a refused
document raises :class:`YamlTooLarge`, a :class:`~tinyfarm.errors.ConfigError`, one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tinyfarm.errors import ConfigError

MAX_BYTES = 1 << 20  # a config, farm file or suite is a few KiB
MAX_NODES = 100_000  # scalars, sequences and mappings, every alias counted as what it expands to
MAX_DEPTH = 64
_SCALAR_WEIGHT = 256  # a long scalar counts as one node per this many characters


class YamlTooLarge(ConfigError):
    """A YAML document that expands (through aliases) or nests beyond the limits."""


class _Expansion:
    """Sizes of composed nodes as they would expand, each node measured once (aliases share)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sizes: dict[int, int] = {}
        self.open: set[int] = set()

    def refuse(self, why: str) -> YamlTooLarge:
        return YamlTooLarge(f"{self.source}: refused: {why}")

    def size(self, node: yaml.Node, depth: int = 0) -> int:
        key = id(node)
        if key in self.sizes:
            return self.sizes[key]
        if key in self.open:
            raise self.refuse("an alias refers to a node that contains it (recursive YAML)")
        if depth > MAX_DEPTH:
            raise self.refuse(f"YAML nested more than {MAX_DEPTH} levels deep")
        self.open.add(key)
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            children = []
        total = 1 + len(str(node.value)) // _SCALAR_WEIGHT if not children else 1
        for child in children:
            total += self.size(child, depth + 1)
            if total > MAX_NODES:
                raise self.refuse(f"the YAML expands to more than {MAX_NODES} values through its "
                                  "aliases (*name); write the values out or use fewer aliases")
        self.open.discard(key)
        self.sizes[key] = total
        return total


class LimitedSafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that measures each composed document before constructing it."""

    source = "YAML"

    def compose_document(self) -> yaml.Node:  # type: ignore[override]
        node = super().compose_document()
        _Expansion(self.source).size(node)
        return node


def load(text: str | bytes, source: str = "YAML") -> Any:
    """``yaml.safe_load`` with the limits above; ``source`` names the file in the messages."""
    if len(text) > MAX_BYTES:
        raise YamlTooLarge(f"{source}: refused: larger than {MAX_BYTES // 1024} KiB")
    loader = LimitedSafeLoader(text)
    loader.source = source
    try:
        return loader.get_single_data()
    except RecursionError:  # the composer itself recurses per nesting level
        raise YamlTooLarge(f"{source}: refused: YAML nested too deeply") from None
    finally:
        loader.dispose()


def load_file(path: str | Path) -> Any:
    """Read and :func:`load` a file; ``OSError``/``UnicodeDecodeError`` are the caller's to word.

    The size is checked before the file is read."""
    path = Path(path)
    if path.is_file() and path.stat().st_size > MAX_BYTES:
        raise YamlTooLarge(f"{path}: refused: larger than {MAX_BYTES // 1024} KiB")
    return load(path.read_text(), source=str(path))
