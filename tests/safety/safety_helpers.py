"""Helpers of the hostile-input tests: run the CLI in-process, check the one error line."""

from __future__ import annotations

from click.testing import CliRunner


def run_cli(args: list[str]):
    """``tinyfarm ARGS`` in-process: (result, non-empty output lines)."""
    from tinyfarm.cli import cli

    result = CliRunner().invoke(cli, args)
    return result, [ln for ln in result.output.splitlines() if ln.strip()]


def assert_one_error_line(result, lines, *fragments: str) -> str:
    """Non-zero exit, no traceback, exactly one line ``error: ...`` holding every fragment."""
    assert result.exit_code not in (0, None), result.output
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]

