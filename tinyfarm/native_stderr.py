"""Keep native libraries' start-up chatter off the console.

TensorFlow's and LiteRT's shared libraries log through absl while they load ("All log messages
before absl::InitializeLog() ...", "Could not find cuda drivers ..."), before any Python-side
setting such as ``TF_CPP_MIN_LOG_LEVEL`` can reach them. The only handle is file descriptor 2:
hold it while the import runs, and give the text back if the import fails so nothing is lost.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def native_stderr_held() -> Iterator[None]:
    """Redirect fd 2 to a temporary file for the block; replay it to stderr if the block raises."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable fd 2 (embedded interpreter): nothing to hold
        yield
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode("utf-8", "replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
