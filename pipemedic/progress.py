"""The progress bar of long transfers (capture, replay): records, rate and ETA on a terminal.

rich's progress, drawn on stderr only when stderr is a terminal (or when forced, as
``bench/replay.py`` does to show it works) and never under ``--json``: piped output stays clean.
The callers report ``(done, expected)`` now and then, never per record.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

Report = Callable[[int, int], None]


class RateColumn(ProgressColumn):
    """Records per second, as rich estimates the task's speed."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f} rec/s", style="progress.data.speed")


@contextlib.contextmanager
def progress_bar(
    description: str, *, enabled: bool = True, force: bool = False
) -> Iterator[Report | None]:
    """``with progress_bar("capture") as report:`` report(done, expected); None when quiet."""
    console = Console(stderr=True, force_terminal=force or None)
    if not enabled or not (force or console.is_terminal):
        yield None
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(description, total=None)

        def report(done: int, expected: int) -> None:
            bar.update(task, completed=done, total=max(expected, done))

        yield report
