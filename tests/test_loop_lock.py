"""LoopLock: one asyncio lock per running event loop."""

from __future__ import annotations

import asyncio

import pytest

from flight_delay.loop_lock import LoopLock


def test_one_loop_gets_one_lock_and_another_loop_its_own() -> None:
    lock = LoopLock()

    async def twice() -> tuple[asyncio.Lock, asyncio.Lock]:
        return lock(), lock()

    first, again = asyncio.run(twice())
    [in_another_loop, _] = asyncio.run(twice())

    assert first is again
    assert in_another_loop is not first


def test_the_lock_excludes_within_its_loop() -> None:
    lock = LoopLock()
    inside: list[int] = []
    overlapped = []

    async def hold(n: int) -> None:
        async with lock():
            overlapped.append(bool(inside))
            inside.append(n)
            await asyncio.sleep(0.01)
            inside.remove(n)

    async def together() -> None:
        await asyncio.gather(*(hold(n) for n in range(5)))

    asyncio.run(together())

    assert overlapped == [False] * 5


def test_outside_a_loop_there_is_no_lock() -> None:
    with pytest.raises(RuntimeError):
        LoopLock()()
