"""Regression suites and their committed baselines for ``tinyfarm regress`` (data only)."""
