"""The one exception hierarchy. Each class carries its gRPC status code as
data, and its docstring is its default message; `orchestrator.status` turns
them into gRPC status and back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import grpc


@dataclass(frozen=True)
class FieldViolation:
    """One problem with one field of a request (`definition.nodes[2].id`)."""

    field: str
    description: str


class OrchestratorError(Exception):
    """Something went wrong."""

    grpc_code: ClassVar[grpc.StatusCode] = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str | None = None) -> None:
        self.message = message or (self.__doc__ or "").strip()
        super().__init__(self.message)


class InvalidArgument(OrchestratorError):
    """The request is invalid."""

    grpc_code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(
        self, message: str | None = None, violations: Sequence[FieldViolation] = ()
    ) -> None:
        self.violations = tuple(violations)
        if message is None and self.violations:
            message = "; ".join(f"{v.field}: {v.description}" for v in self.violations)
        super().__init__(message)

    @classmethod
    def field(cls, field: str, description: str) -> InvalidArgument:
        return cls(violations=[FieldViolation(field, description)])

    def under(self, prefix: str) -> InvalidArgument:
        """The same problems, named as fields of a message within the
        request (`tasks[3].`, `schedule.`)."""
        return InvalidArgument(
            violations=[FieldViolation(prefix + v.field, v.description) for v in self.violations]
        )


class NotFound(OrchestratorError):
    """Not found."""

    grpc_code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(OrchestratorError):
    """It already exists."""

    grpc_code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(OrchestratorError):
    """Not possible in the current state."""

    grpc_code = grpc.StatusCode.FAILED_PRECONDITION


class Unauthenticated(OrchestratorError):
    """Missing or invalid credentials: log in again."""

    grpc_code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(OrchestratorError):
    """You are not allowed to do this."""

    grpc_code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(OrchestratorError):
    """Too many requests: try again later."""

    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Aborted(OrchestratorError):
    """The change conflicted with a concurrent one: try again."""

    grpc_code = grpc.StatusCode.ABORTED


class Unavailable(OrchestratorError):
    """The server is unavailable: try again."""

    grpc_code = grpc.StatusCode.UNAVAILABLE


class Unimplemented(OrchestratorError):
    """This method is not implemented yet."""

    grpc_code = grpc.StatusCode.UNIMPLEMENTED


class Internal(OrchestratorError):
    """Internal error: the server logged the details."""

    grpc_code = grpc.StatusCode.INTERNAL


BY_CODE: dict[grpc.StatusCode, type[OrchestratorError]] = {
    cls.grpc_code: cls
    for cls in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        FailedPrecondition,
        Unauthenticated,
        PermissionDenied,
        ResourceExhausted,
        Aborted,
        Unavailable,
        Unimplemented,
        Internal,
    )
}
