"""The worker SDK: run handlers for the task types the server assigns.

    from orchestrator.worker import PermanentError, TaskContext, Worker

    worker = Worker(name="resizer", slots=10)

    @worker.task("resize")
    async def resize(ctx: TaskContext, input: dict) -> dict:
        ctx.progress(50, "half way")
        if input.get("width", 1) <= 0:
            raise PermanentError("width must be positive")  # no retry
        return {"ok": True}

    @worker.task("checksum")
    def checksum(ctx: TaskContext, input: dict) -> dict:  # plain: runs in a thread
        ...

    await worker.run()  # ORCHESTRATOR_URL, ORCHESTRATOR_TOKEN; until worker.stop()

`orchestrator worker module:attr` runs such a worker with signal handling.
"""

from orchestrator.worker._context import TaskContext
from orchestrator.worker._errors import PermanentError
from orchestrator.worker._handlers import Handler
from orchestrator.worker._worker import Worker

__all__ = ["Handler", "PermanentError", "TaskContext", "Worker"]
