"""Progress on stderr: a rich bar with accepted/rejected counts and tokens/s, or nothing (--quiet)."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn
from rich.progress import TimeElapsedColumn

from engine.pipeline import RunStats


class Progress:
    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.console = Console(stderr=True)
        self._bar: RichProgress | None = None
        self._task = None
        self._base = 0

    def say(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message, highlight=False, markup=False)

    def start(self, total: int, done: int) -> None:
        if self.quiet or not sys.stderr.isatty():
            return
        self._base = done
        self._bar = RichProgress(
            TextColumn("[bold]accepted"), BarColumn(), MofNCompleteColumn(),
            TextColumn("rejected {task.fields[rejected]}"), TextColumn("{task.fields[tps]} tok/s"),
            TimeElapsedColumn(), console=self.console, transient=False)
        self._task = self._bar.add_task("generate", total=total, completed=done, rejected=0, tps="-")
        self._bar.start()

    def update(self, stats: RunStats) -> None:
        if self._bar is None:
            return
        tps = stats.usage.completion_tokens / max(stats.elapsed, 1e-9)
        self._bar.update(self._task, completed=self._base + stats.accepted,
                         rejected=stats.rejected, tps=f"{tps:.0f}")

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
