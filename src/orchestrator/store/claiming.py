"""The SQL of a claim (store/tasks.py `claim`): which queued tasks it
reads, in dispatch order, per dialect, and how it starts them. The
statements are built once: building them per claim cost more than running
them.

A claim whose first rows carry no concurrency key or rate bucket takes them
as they are (`chosen`). Otherwise store/limits.py decides, and reads on past
keys and buckets that cannot start now (`further`), so a full key's backlog
does not hide the tasks behind it.
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import (
    ColumnElement,
    FromClause,
    Integer,
    Select,
    String,
    any_,
    bindparam,
    func,
    literal,
    or_,
    select,
    true,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql

from orchestrator.model import TaskStatus
from orchestrator.store.schema import tasks

# Claimed tasks made RUNNING, one row per parameter set.
START = (
    update(tasks)
    .where(tasks.c.id == bindparam("claimed_id"))
    .values(
        status=TaskStatus.RUNNING,
        worker_id=bindparam("claimed_by"),
        attempt=tasks.c.attempt + 1,
        fencing_token=tasks.c.fencing_token + 1,
        started_at=bindparam("claimed_at"),
        updated_at=bindparam("claimed_at"),
        lease_expires_at=bindparam("lease"),
        deadline_at=bindparam("deadline"),
        progress=0,
        progress_message="",
        last_sequence=tasks.c.last_sequence + 1,
    )
)


@functools.cache
def chosen(dialect: str, *, by_owner: bool) -> Select[Any]:
    """The first `claim_wanted` claimable tasks of `claim_types` in dispatch
    order, read type by type from `ix_tasks_dispatch_order_by_type`, where
    each type's queue is a range of its own, already in dispatch order: the
    first rows of each type, merged. (An index without the type walks past
    other types' backlogs.)

    SQLite does this with a plain `type IN (...)`: it reads the IN list's
    ranges one by one and leaves each as soon as its rows can no longer
    make the LIMIT (its ORDER BY … LIMIT early-out), so it reads about
    `claim_wanted` rows per type, whatever the backlog (the tests measure
    it). SQLite has one writer: nothing to lock."""
    if dialect == "postgresql":
        return _chosen_and_locked(by_owner=by_owner)
    return (
        select(tasks)
        .where(
            tasks.c.type.in_(bindparam("claim_types", expanding=True)),
            *_claimable(tasks, by_owner=by_owner),
        )
        .order_by(*_in_order(tasks))
        .limit(bindparam("claim_wanted"))
    )


def _chosen_and_locked(*, by_owner: bool) -> Select[Any]:
    """PostgreSQL reads every row of the types in a `type IN (...)` to sort
    them, so each type's first rows are read on their own: an `unnest` of
    the types LATERAL-joined to each one's range of the index.

    FOR UPDATE is refused over a LATERAL join (or a UNION), so these
    candidates are read unlocked and the tasks then locked by id, skipping
    those another replica holds. Locking re-checks the conditions against
    the row as last committed: a task another replica claimed meanwhile
    drops out. Twice as many candidates as wanted (`claim_candidates`) keep
    a claim full while another replica takes the same head of the queue.

    `id = ANY(ARRAY(candidates))`, not `id IN (candidates)`: the ids come
    from an InitPlan and the tasks by primary key even in a generic plan,
    where the planner, not knowing the LIMIT, guesses 10,000 candidates and
    would hash them against a scan of the whole table (160 ms behind a
    backlog of 300,000)."""
    listed = bindparam("claim_types", type_=postgresql.ARRAY(String))
    key = func.unnest(listed).table_valued("type").render_derived()
    queued = tasks.alias("queued")
    heads = (
        select(*_in_order(queued))
        .where(queued.c.type == key.c.type, *_claimable(queued, by_owner=by_owner))
        .order_by(*_in_order(queued))
        .limit(bindparam("claim_candidates"))
        .lateral("heads")
    )
    candidates = (
        select(heads.c.id)
        .select_from(key.join(heads, true()))
        .order_by(*_in_order(heads))
        .limit(bindparam("claim_candidates"))
    )
    return (
        select(tasks)
        .where(
            tasks.c.id == any_(func.array(candidates.scalar_subquery())),
            tasks.c.type == any_(listed),
            *_claimable(tasks, by_owner=by_owner),
        )
        .order_by(*_in_order(tasks))
        .limit(bindparam("claim_wanted"))
        .with_for_update(skip_locked=True)
    )


@functools.cache
def further(dialect: str, *, by_owner: bool) -> Select[Any]:
    """Claimable tasks after the `after_*` cursor in dispatch order, leaving
    out those of the keys and buckets (owner id, SEPARATOR, name) in `skip_keys`
    and `skip_buckets`: at most `claim_candidates`, unlocked (store/limits.py
    locks what it takes)."""
    if dialect != "postgresql":
        return (
            select(tasks)
            .where(
                tasks.c.type.in_(bindparam("claim_types", expanding=True)),
                *_claimable(tasks, by_owner=by_owner),
                *_past(tasks),
            )
            .order_by(*_in_order(tasks))
            .limit(bindparam("claim_candidates"))
        )
    listed = bindparam("claim_types", type_=postgresql.ARRAY(String))
    key = func.unnest(listed).table_valued("type").render_derived()
    queued = tasks.alias("queued")
    heads = (
        select(queued)
        .where(
            queued.c.type == key.c.type,
            *_claimable(queued, by_owner=by_owner),
            *_past(queued),
        )
        .order_by(*_in_order(queued))
        .limit(bindparam("claim_candidates"))
        .lateral("heads")
    )
    return (
        select(heads)
        .select_from(key.join(heads, true()))
        .order_by(*_in_order(heads))
        .limit(bindparam("claim_candidates"))
    )


# PostgreSQL: the tasks store/limits.py chose, locked, skipping those another
# replica holds; locking re-checks that each is still queued.
LOCK_CHOSEN = (
    select(tasks)
    .where(
        tasks.c.id == any_(bindparam("chosen_ids", type_=postgresql.ARRAY(String))),
        tasks.c.status == TaskStatus.QUEUED,
    )
    .with_for_update(skip_locked=True)
)

# Between an owner's id and a key or bucket name in `skip_keys` and
# `skip_buckets`: a unit separator. A name may hold one, but an owner id is a
# UUID and comes first, so no two (owner, name) pairs join to one string.
SEPARATOR = "\x1f"


def _past(rows: FromClause) -> list[ColumnElement[bool]]:
    cursor = tuple_(
        bindparam("after_rank", type_=Integer),
        bindparam("after_queued", type_=tasks.c.queued_at.type),
        bindparam("after_id", type_=String),
    )
    skipped_key = rows.c.owner_id + literal(SEPARATOR) + rows.c.concurrency_key
    skipped_bucket = rows.c.owner_id + literal(SEPARATOR) + rows.c.rate_bucket
    return [
        tuple_(*_in_order(rows)) > cursor,
        or_(
            rows.c.concurrency_key.is_(None),
            skipped_key.not_in(bindparam("skip_keys", expanding=True)),
        ),
        or_(
            rows.c.rate_bucket.is_(None),
            skipped_bucket.not_in(bindparam("skip_buckets", expanding=True)),
        ),
    ]


def _claimable(rows: FromClause, *, by_owner: bool) -> list[ColumnElement[bool]]:
    conditions = [rows.c.status == TaskStatus.QUEUED, rows.c.available_at <= bindparam("claim_now")]
    if by_owner:
        conditions.append(rows.c.owner_id == bindparam("claim_owner"))
    return conditions


def _in_order(rows: FromClause) -> tuple[ColumnElement[Any], ...]:
    """Dispatch order: highest priority (lowest rank), then oldest, then id."""
    return (rows.c.dispatch_rank, rows.c.queued_at, rows.c.id)
