"""The client SDK: every RPC of the server as a typed async method returning
plain Python values, plus a small blocking facade for scripts.

    from orchestrator.client import Client

    async with Client.from_env() as client:        # URL and identity as the CLI
        task = await client.tasks.run("echo", {"greeting": "hi"})
        print(task.status, task.output)

    async with Client("127.0.0.1:50051") as client:
        await client.login("admin", "orchestrator-dev")
        workflow = await client.workflows.find("etl")
        async with client.workflows.execute(workflow.id, {"rows": 3}) as events:
            async for event in events:                  # survives a server restart
                print(event.sequence, event.type, event.node_id)

Namespaces: `client.tasks`, `client.workflows`, `client.runs` (workflow
runs), `client.schedules`, `client.users` (admins), `client.tokens` (API
tokens); on the client itself: `login`, `refresh`, `logout`, `whoami`,
`health`, `workers`, `status` (admins).

Errors are the server's own classes from `orchestrator.errors`
(`NotFound`, `InvalidArgument` with `.violations`, `Unauthenticated`,
`Unavailable`, ...).
"""

from orchestrator.client._client import Client
from orchestrator.client._definitions import WorkflowSpec, definition_from_dict, parse_workflow
from orchestrator.client._retry import RetryPolicy
from orchestrator.client._session import Session, SessionFile, config_dir
from orchestrator.client._status import Queue, Replica, ServerStatus, WaitingTask
from orchestrator.client._streams import RunStream, TaskStream
from orchestrator.client._sync import SyncClient
from orchestrator.client._values import (
    ApiToken,
    ConnectedWorker,
    Fire,
    Health,
    NewApiToken,
    NodeRun,
    Page,
    Schedule,
    Task,
    TaskEvent,
    TaskSpec,
    User,
    WhoAmI,
    Workflow,
    WorkflowEvent,
    WorkflowRun,
    to_jsonable,
)
from orchestrator.model import (
    Definition,
    EdgeSpec,
    NodeSpec,
    NodeStatus,
    Overlap,
    RunStatus,
    TaskEventType,
    TaskStatus,
    WorkflowEventType,
)

__all__ = [
    "ApiToken",
    "Client",
    "ConnectedWorker",
    "Definition",
    "EdgeSpec",
    "Fire",
    "Health",
    "NewApiToken",
    "NodeRun",
    "NodeSpec",
    "NodeStatus",
    "Overlap",
    "Page",
    "Queue",
    "Replica",
    "RetryPolicy",
    "RunStatus",
    "RunStream",
    "Schedule",
    "ServerStatus",
    "Session",
    "SessionFile",
    "SyncClient",
    "Task",
    "TaskEvent",
    "TaskEventType",
    "TaskSpec",
    "TaskStatus",
    "TaskStream",
    "User",
    "WaitingTask",
    "WhoAmI",
    "Workflow",
    "WorkflowEvent",
    "WorkflowEventType",
    "WorkflowRun",
    "WorkflowSpec",
    "config_dir",
    "definition_from_dict",
    "parse_workflow",
    "to_jsonable",
]
