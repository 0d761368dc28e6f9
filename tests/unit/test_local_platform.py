"""The CPython glue (pysync.browser.LocalPlatform): what the sync client needs of the browser,
with the browser's behaviour: an exclusive lock per name, granted in request order, and
online / offline events after the state changes."""

from __future__ import annotations

import asyncio

from pysync.browser import LocalPlatform


def test_a_lock_held_by_one_is_not_available_to_another() -> None:
    async def main() -> None:
        platform = LocalPlatform()
        assert await platform.lock("l", if_available=True) is not None
        assert await platform.lock("l", if_available=True) is None
        assert await platform.lock("other", if_available=True) is not None

    asyncio.run(main())


def test_a_released_lock_goes_to_the_first_waiter() -> None:
    async def main() -> list[str]:
        platform = LocalPlatform()
        release = await platform.lock("l", if_available=False)
        order: list[str] = []

        async def wait(name: str) -> None:
            got = await platform.lock("l", if_available=False)
            order.append(name)
            assert got is not None
            got()

        waiters = [asyncio.ensure_future(wait(n)) for n in ("first", "second")]
        await asyncio.sleep(0)
        assert order == []
        assert release is not None
        release()
        await asyncio.gather(*waiters)
        assert not platform.holds("l")
        return order

    assert asyncio.run(main()) == ["first", "second"]


def test_a_cancelled_wait_for_a_lock_leaves_it_to_the_others() -> None:
    async def main() -> None:
        platform = LocalPlatform()
        release = await platform.lock("l", if_available=False)
        waiter = asyncio.ensure_future(platform.lock("l", if_available=False))
        await asyncio.sleep(0)
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        assert release is not None
        release()
        assert not platform.holds("l")

    asyncio.run(main())


def test_going_offline_and_online_calls_the_listeners_from_the_event_loop() -> None:
    async def main() -> list[str]:
        platform = LocalPlatform()
        events: list[str] = []
        stop = platform.listen(lambda: events.append("online"), lambda: events.append("offline"))
        platform.set_online(False)
        assert not platform.online()
        assert events == []
        await asyncio.sleep(0)
        platform.set_online(True)
        await asyncio.sleep(0)
        stop()
        platform.set_online(False)
        await asyncio.sleep(0)
        return events

    assert asyncio.run(main()) == ["offline", "online"]
