"""asyncio primitives for whichever event loop is running: a worker has one loop, tests run several."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class PerLoop(Generic[T]):
    """Hands out one object per running event loop (a lock, a semaphore), made on first use in it.

    Objects built before any loop runs (at app start-up) cannot make theirs then, and a primitive
    made in one loop must not be awaited in another.
    """

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._loop: asyncio.AbstractEventLoop | None = None
        self._made: T | None = None

    def __call__(self) -> T:
        """The running loop's object."""
        loop = asyncio.get_running_loop()
        if self._made is None or self._loop is not loop:
            self._loop, self._made = loop, self._factory()
        return self._made


class LoopLock(PerLoop[asyncio.Lock]):
    """One asyncio.Lock per running event loop."""

    def __init__(self) -> None:
        super().__init__(asyncio.Lock)
