"""The transfer progress bar: drawn on a terminal (or when forced), never under --json."""

from __future__ import annotations

import io

from pipemedic.progress import RateColumn, progress_bar


def test_quiet_unless_a_terminal_or_forced(monkeypatch) -> None:
    with progress_bar("capture", enabled=False, force=True) as report:
        assert report is None  # --json
    monkeypatch.setattr("sys.stderr", io.StringIO())  # piped: not a terminal
    with progress_bar("capture") as report:
        assert report is None


def test_forced_it_counts_rate_and_eta(monkeypatch) -> None:
    monkeypatch.setattr("sys.stderr", io.StringIO())
    with progress_bar("replay", force=True) as report:
        assert report is not None
        report(0, 100)
        report(50, 100)
        report(100, 100)
    from types import SimpleNamespace

    assert str(RateColumn().render(SimpleNamespace(finished_speed=None, speed=1234.4))) == (
        "1,234 rec/s"
    )
