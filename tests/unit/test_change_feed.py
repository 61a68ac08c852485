"""The change feed that wakes live pages: a waiter for anything, waiters for
keys, keys learnt after a read, and shutdown."""

from __future__ import annotations

from orchestrator.engine.changes import ChangeFeed


async def test_a_page_of_many_wakes_at_any_change() -> None:
    feed = ChangeFeed()
    waiter = feed.waiter()
    assert feed.waiter() is waiter  # one event for every such page
    feed.changed(["task-1"])
    assert waiter.is_set() and feed.version == 1
    assert not feed.waiter().is_set()


async def test_a_page_of_one_wakes_for_its_keys_alone() -> None:
    feed = ChangeFeed()
    run_page = feed.waiter("run-1")
    feed.changed(["task-9"])
    assert not run_page.is_set()
    feed.also(run_page, ["task-1"])
    feed.changed(["task-1"])
    assert run_page.is_set()


async def test_a_forgotten_waiter_leaves_nothing_behind() -> None:
    feed = ChangeFeed()
    waiter = feed.waiter("run-1", "task-1")
    feed.forget(waiter, ["run-1", "task-1"])
    feed.changed(["run-1", "task-1"])
    assert not waiter.is_set()
    assert not feed._keys


async def test_a_poke_from_another_replica_wakes_every_keyed_page() -> None:
    feed = ChangeFeed()
    pages = [feed.waiter(f"run-{i}") for i in range(3)]
    feed.changed(["*"])
    assert all(page.is_set() for page in pages)


async def test_closing_wakes_everyone_and_later_waiters_at_once() -> None:
    feed = ChangeFeed()
    keyed, anything = feed.waiter("run-1"), feed.waiter()
    feed.close()
    assert keyed.is_set() and anything.is_set()
    assert feed.waiter("run-2").is_set() and feed.waiter().is_set()
