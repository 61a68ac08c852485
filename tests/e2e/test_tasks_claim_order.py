"""Order kept (DESIGN §5): tasks claimed together go out to the worker
highest priority first, then oldest first."""

from __future__ import annotations

from tests.e2e.conftest import Client, RawWorker

EQUAL = 30
# Interleaved with the equal ones, so neither creation order nor id order
# alone gives the expected order.
HIGHER = {4: 5, 11: 9, 19: 5, 26: 9}


async def test_tasks_claimed_together_go_out_by_priority_then_age(admin: Client) -> None:
    created: list[tuple[int, str]] = []
    for index in range(EQUAL + len(HIGHER)):
        priority = HIGHER.get(index, 0)
        task = await admin.create("order.job", {"index": index}, start=True, priority=priority)
        created.append((priority, task.id))
    # Stable: equal priorities keep their creation order.
    expected = [task_id for _, task_id in sorted(created, key=lambda c: -c[0])]

    token = await admin.worker_token("order")
    worker = RawWorker(admin, (("authorization", f"Bearer {token}"),))
    await worker.hello("order", ["order.job"], slots=len(created) + 10)
    received = [(await worker.assignment()).task_id for _ in created]
    await worker.close()

    assert received == expected
