"""A raw-mode pseudo-terminal pair: the twin keeps the master, a client opens the slave path."""

from __future__ import annotations

import os
import tty


def open_raw_pty() -> tuple[int, int, str]:
    """(master_fd, slave_fd, slave_path), both ends raw (no echo, no line discipline, 8 bits)."""
    master, slave = os.openpty()
    tty.setraw(slave)
    tty.setraw(master)
    return master, slave, os.ttyname(slave)
