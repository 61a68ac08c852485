"""`orchestrator schedule create|list|get|pause|resume|trigger|backfill|delete`."""

from __future__ import annotations

import enum
import json
from typing import Annotated

import typer

from orchestrator.cli import inputs, render, times
from orchestrator.cli.connect import run
from orchestrator.cli.exits import UsageError
from orchestrator.cli.options import Input, Limit, Output, OutputFormat, Url
from orchestrator.client import Client, Fire, Overlap, Schedule, TaskSpec

app = typer.Typer(
    name="schedule",
    help="Schedules: tasks and workflow runs on an interval or a cron expression.",
    no_args_is_help=True,
)

# How many of the next fire times `get` shows.
SHOWN_FIRE_TIMES = 5

NameOrId = Annotated[
    str, typer.Argument(metavar="ID_OR_NAME", help="A schedule's id or name.", show_default=False)
]
Note = Annotated[str, typer.Option("--note", metavar="TEXT", help="Why, for the record.")]


class OverlapChoice(enum.StrEnum):
    SKIP = "skip"
    BUFFER_ONE = "buffer-one"
    ALLOW_ALL = "allow-all"
    CANCEL_OTHER = "cancel-other"


@app.command()
def create(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Unique among your schedules.")],
    cron: Annotated[
        str | None,
        typer.Option(
            "--cron",
            metavar="EXPR",
            help='When, as 5 fields (minute hour day month weekday), e.g. "*/15 * * * *", '
            "or @hourly, @daily, @weekly, @monthly, @yearly.",
        ),
    ] = None,
    every: Annotated[
        str | None,
        typer.Option(
            "--every",
            metavar="DURATION",
            help="When, as an interval: 30s, 5m, 1h30m; the first fire is one interval from now.",
        ),
    ] = None,
    tz: Annotated[
        str,
        typer.Option("--tz", metavar="ZONE", help="The time zone of cron times: Europe/Paris."),
    ] = "UTC",
    task: Annotated[
        str | None,
        typer.Option("--task", metavar="TYPE", help="Each fire queues a task of this type."),
    ] = None,
    workflow: Annotated[
        str | None,
        typer.Option(
            "--workflow",
            metavar="NAME_OR_ID",
            help="Each fire starts a run of this workflow (its latest version).",
        ),
    ] = None,
    input: Input = "{}",
    title: Annotated[
        str, typer.Option("--title", metavar="TEXT", help="The tasks' title (default: the type).")
    ] = "",
    overlap: Annotated[
        OverlapChoice,
        typer.Option(
            "--overlap",
            case_sensitive=False,
            help="While the previous fire's task or run is unfinished: skip this time, "
            "buffer-one (run it once that ends), allow-all, or cancel-other.",
        ),
    ] = OverlapChoice.SKIP,
    jitter: Annotated[
        str,
        typer.Option(
            "--jitter", metavar="DURATION", help="Start each fire up to this much later, at random."
        ),
    ] = "0s",
    start: Annotated[
        str | None,
        typer.Option(
            "--start",
            metavar="TIME",
            help="No fire before this ISO 8601 time (without an offset: local time).",
        ),
    ] = None,
    end: Annotated[
        str | None, typer.Option("--end", metavar="TIME", help="No fire after this time.")
    ] = None,
    catchup: Annotated[
        str,
        typer.Option(
            "--catchup",
            metavar="DURATION",
            help="After the server was down, the missed times this recent fire "
            "(0s: only the latest).",
        ),
    ] = "0s",
    paused: Annotated[bool, typer.Option("--paused", metavar="", help="Create it paused.")] = False,
    note: Note = "",
    url: Url = None,
    output: Output = OutputFormat.TABLE,
) -> None:
    """Create a schedule that queues a task or starts a workflow run,
    every DURATION (--every) or at the times of a cron expression (--cron).

    Example: orchestrator schedule create heartbeat --every 1m --task echo --input '{"ping": 1}'
    """

    async def command(client: Client) -> None:
        if (cron is None) == (every is None):
            raise UsageError("give one of --cron EXPR and --every DURATION")
        if (task is None) == (workflow is None):
            raise UsageError("give one of --task TYPE and --workflow NAME_OR_ID")
        if title and task is None:
            raise UsageError("--title goes with --task")
        data = inputs.json_object(input)
        schedule = await client.schedules.create(
            name,
            cron=cron,
            interval=times.duration(every, "--every") if every is not None else None,
            time_zone=tz,
            task=TaskSpec(task, data, title=title) if task is not None else None,
            workflow=workflow,
            input=data if workflow is not None else None,
            overlap=Overlap[overlap.name],
            jitter=times.duration(jitter, "--jitter"),
            start_at=times.moment(start, "--start") if start is not None else None,
            end_at=times.moment(end, "--end") if end is not None else None,
            catchup_window=times.duration(catchup, "--catchup"),
            paused=paused,
            note=note,
        )
        show(schedule, output)

    run(command, url)


@app.command("list")
def list_schedules(limit: Limit = 50, url: Url = None, output: Output = OutputFormat.TABLE) -> None:
    """List schedules with their next fire times."""

    async def command(client: Client) -> None:
        found = await render.first(client.schedules.list_all(), limit)
        if output is OutputFormat.JSON:
            render.json_document(found)
            return
        render.table(
            ("ID", "NAME", "SPEC", "ZONE", "PAUSED", "NEXT FIRE", "LAST FIRED"),
            (
                (
                    s.id,
                    s.name,
                    spec(s),
                    s.time_zone,
                    "paused" if s.paused else "",
                    render.when(s.next_fire_times[0]) if s.next_fire_times else "",
                    render.when(s.last_fired_at),
                )
                for s in found
            ),
            empty="no schedules",
        )

    run(command, url)


@app.command()
def get(schedule: NameOrId, url: Url = None, output: Output = OutputFormat.TABLE) -> None:
    """Show a schedule and its next fire times."""

    async def command(client: Client) -> None:
        show(await client.schedules.find(schedule), output)

    run(command, url)


@app.command()
def pause(
    schedule: NameOrId, note: Note = "", url: Url = None, output: Output = OutputFormat.TABLE
) -> None:
    """Pause a schedule: nothing more fires until it is resumed."""

    async def command(client: Client) -> None:
        found = await client.schedules.find(schedule)
        changed(await client.schedules.pause(found.id, note), "Paused", output)

    run(command, url)


@app.command()
def resume(
    schedule: NameOrId, note: Note = "", url: Url = None, output: Output = OutputFormat.TABLE
) -> None:
    """Resume a schedule from its next time after now (times missed while
    paused do not run)."""

    async def command(client: Client) -> None:
        found = await client.schedules.find(schedule)
        changed(await client.schedules.resume(found.id, note), "Resumed", output)

    run(command, url)


@app.command()
def trigger(schedule: NameOrId, url: Url = None, output: Output = OutputFormat.TABLE) -> None:
    """Fire a schedule once, now, whatever its overlap policy."""

    async def command(client: Client) -> None:
        found = await client.schedules.find(schedule)
        fire = await client.schedules.trigger(found.id)
        if output is OutputFormat.JSON:
            render.json_document(fire)
            return
        render.out.print(f"Fired schedule {found.name}: {started(fire)}.", markup=False)

    run(command, url)


@app.command()
def backfill(
    schedule: NameOrId,
    start: Annotated[
        str,
        typer.Option(
            "--from",
            metavar="TIME",
            help="From this ISO 8601 time (not included; without an offset: local time).",
            show_default=False,
        ),
    ],
    end: Annotated[
        str,
        typer.Option("--to", metavar="TIME", help="To this time (included).", show_default=False),
    ],
    url: Url = None,
    output: Output = OutputFormat.TABLE,
) -> None:
    """Fire once for every scheduled time in a past range that has not fired
    (at most 1,000), whatever the overlap policy."""

    async def command(client: Client) -> None:
        start_at, end_at = times.moment(start, "--from"), times.moment(end, "--to")
        found = await client.schedules.find(schedule)
        fires = await client.schedules.backfill(found.id, start_at, end_at)
        if output is OutputFormat.JSON:
            render.json_document(fires)
            return
        render.table(
            ("SCHEDULED AT", "STARTED"),
            ((render.when(f.scheduled_at), started(f)) for f in fires),
            empty="nothing to fire: the range holds no scheduled time that has not fired yet",
        )

    run(command, url)


@app.command()
def delete(schedule: NameOrId, url: Url = None) -> None:
    """Delete a schedule; the tasks and runs it started go on."""

    async def command(client: Client) -> None:
        found = await client.schedules.find(schedule)
        await client.schedules.delete(found.id)
        render.out.print(f"Deleted schedule {found.name} ({found.id}).", markup=False)

    run(command, url)


def spec(schedule: Schedule) -> str:
    """When it fires, in one short phrase."""
    if schedule.cron:
        return schedule.cron
    return f"every {times.spoken(schedule.interval_seconds)}"


def what(schedule: Schedule) -> str:
    if schedule.task is not None:
        data = json.dumps(dict(schedule.task.input or {}), ensure_ascii=False)
        named = schedule.task.title not in ("", schedule.task.type)
        title = f" ({schedule.task.title})" if named else ""
        return f"task {schedule.task.type}{title} {data}"
    return f"workflow {schedule.workflow_id} {json.dumps(schedule.input, ensure_ascii=False)}"


def started(fire: Fire) -> str:
    return f"task {fire.task_id}" if fire.task_id else f"workflow run {fire.run_id}"


def changed(schedule: Schedule, verb: str, output: OutputFormat) -> None:
    if output is OutputFormat.JSON:
        render.json_document(schedule)
        return
    following = (
        f"; next fire {render.when(schedule.next_fire_times[0])}"
        if schedule.next_fire_times
        else ""
    )
    render.out.print(f"{verb} schedule {schedule.name}{following}.", markup=False)


def show(schedule: Schedule, output: OutputFormat) -> None:
    if output is OutputFormat.JSON:
        render.json_document(schedule)
        return
    last = (
        f"{render.when(schedule.last_fired_at)}: "
        f"{started(Fire(schedule.last_fired_at, schedule.last_task_id, schedule.last_run_id))}"
        if schedule.last_fired_at
        else ""
    )
    render.fields(
        [
            ("id", schedule.id),
            ("name", schedule.name),
            ("spec", spec(schedule)),
            ("zone", schedule.time_zone),
            ("starts", what(schedule)),
            ("overlap", schedule.overlap.value.lower().replace("_", "-")),
            ("jitter", times.spoken(schedule.jitter_seconds) if schedule.jitter_seconds else ""),
            (
                "catch-up",
                f"missed times of the last {times.spoken(schedule.catchup_window_seconds)}"
                if schedule.catchup_window_seconds
                else "the latest missed time only",
            ),
            ("from", render.when(schedule.start_at)),
            ("until", render.when(schedule.end_at)),
            ("paused", "yes" if schedule.paused else "no"),
            ("note", schedule.note),
            ("last fired", last),
            ("created", render.when(schedule.created_at)),
            (
                "next fires",
                "\n".join(render.when(t) for t in schedule.next_fire_times[:SHOWN_FIRE_TIMES]),
            ),
        ]
    )
