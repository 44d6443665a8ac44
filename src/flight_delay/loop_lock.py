"""An asyncio lock for whichever event loop is running: a worker has one loop, tests run several."""

from __future__ import annotations

import asyncio


class LoopLock:
    """Hands out one asyncio.Lock per running event loop, made on first use in that loop.

    Objects built before any loop runs (at app start-up) cannot make their lock then, and a lock
    made in one loop must not be awaited in another.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock: asyncio.Lock | None = None

    def __call__(self) -> asyncio.Lock:
        """The running loop's lock."""
        loop = asyncio.get_running_loop()
        if self._lock is None or self._loop is not loop:
            self._loop, self._lock = loop, asyncio.Lock()
        return self._lock
