"""Says which stage long work is in: a live bar on a terminal, plain log lines anywhere else.

Everything goes to stderr (or the stream given), never stdout, which the commands keep for their
JSON. A library function takes a `Progress` and calls `stage`; the command that owns the terminal
builds it with the list of its stages, so lines read "train: stage 2/5: boosting".
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, TextIO

log = logging.getLogger(__name__)

Advance = Callable[..., None]
# Plain lines report a stage's steps at every tenth of them, not at every step.
LOGGED_FRACTION = 10


class Progress:
    """The stages of one piece of work; each may have a number of steps shown as a bar."""

    def __init__(
        self,
        task: str,
        stages: Sequence[str] = (),
        *,
        stream: TextIO | None = None,
        interactive: bool | None = None,
    ) -> None:
        self.task = task
        self.stages = tuple(stages)
        self.stream = sys.stderr if stream is None else stream
        # Not a terminal (a pipe, a file, CI, a notebook kernel): no redrawn bars, plain lines.
        self.interactive = is_terminal(self.stream) if interactive is None else interactive

    def label(self, name: str) -> str:
        """Names a stage with its place among the stages: 'train: stage 2/5: boosting'."""
        if name not in self.stages:
            return f"{self.task}: {name}"
        return f"{self.task}: stage {self.stages.index(name) + 1}/{len(self.stages)}: {name}"

    def stage(
        self, name: str, total: int | None = None, unit: str = "steps"
    ) -> AbstractContextManager[Advance]:
        """Runs a stage; yields advance(n=1), which moves its bar on when it has `total` steps."""
        show = terminal_stage if self.interactive else logged_stage
        return show(self.label(name), total, unit, self.stream)


def is_terminal(stream: TextIO) -> bool:
    """True when the stream is an interactive terminal."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


@contextmanager
def logged_stage(label: str, total: int | None, unit: str, stream: TextIO) -> Iterator[Advance]:
    """Logs the stage's start, its steps every tenth of the way, and its end with the time it took."""
    started = time.perf_counter()
    log.info("%s", label)
    every = max(1, (total or 0) // LOGGED_FRACTION)
    done = 0

    def advance(steps: int = 1) -> None:
        """Counts steps done and logs when a tenth of them (or the last) is reached."""
        nonlocal done
        before, done = done, done + steps
        if total and (done // every > before // every or done == total):
            log.info("%s: %d/%d %s", label, done, total, unit)

    yield advance
    log.info("%s: done in %.1f s", label, time.perf_counter() - started)


@contextmanager
def terminal_stage(label: str, total: int | None, unit: str, stream: TextIO) -> Iterator[Advance]:
    """Shows a spinner, or a bar over `total` steps, with the time elapsed; the line stays when done."""
    from rich.console import Console
    from rich.progress import Progress as Bar
    from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

    columns: list[Any] = [SpinnerColumn(finished_text="✓"), TextColumn("{task.description}")]
    if total:
        from rich.progress import BarColumn, MofNCompleteColumn

        columns += [BarColumn(), MofNCompleteColumn(), TextColumn(unit)]
    with Bar(*columns, TimeElapsedColumn(), console=Console(file=stream, force_terminal=True)) as bar:
        task = bar.add_task(label, total=total)
        yield lambda steps=1: bar.advance(task, steps)
        bar.update(task, total=total or 1, completed=total or 1)


def boosting_callback(advance: Advance) -> Callable[[Any], None]:
    """A LightGBM callback moving a bar on by one step per boosting round."""

    def callback(env: Any) -> None:
        """Called by lgb.train after each round (env is LightGBM's CallbackEnv)."""
        advance(1)

    return callback
