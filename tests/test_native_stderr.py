"""Native start-up chatter is held back, and given back when the import it came from fails."""

from __future__ import annotations

import os

import pytest

from tinyfarm.native_stderr import native_stderr_held


def test_fd2_writes_inside_the_block_are_held(capfd):
    with native_stderr_held():
        os.write(2, b"I0000 cudart_stub.cc:31] Could not find cuda drivers\n")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"


def test_held_text_is_replayed_when_the_block_raises(capfd):
    with pytest.raises(ImportError):
        with native_stderr_held():
            os.write(2, b"libfoo.so: cannot open shared object file\n")
            raise ImportError("libfoo")
    assert "cannot open shared object file" in capfd.readouterr().err
