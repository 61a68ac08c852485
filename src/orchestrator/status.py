"""Between domain errors and gRPC status, both ways, in one place.

The server turns an `OrchestratorError` into a `google.rpc.Status` (with a
`BadRequest` detail listing field violations); the client SDK turns the
status back into the same class, violations included.
"""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from orchestrator.errors import BY_CODE, FieldViolation, InvalidArgument, OrchestratorError

# Status and details travel in trailers, which have a size limit: a request
# with thousands of problems still gets its INVALID_ARGUMENT, with the first.
MAX_VIOLATIONS = 100
MAX_MESSAGE = 1000


def to_status(error: OrchestratorError) -> grpc.Status:
    message = error.message
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 1] + "…"
    proto = status_pb2.Status(code=error.grpc_code.value[0], message=message)
    if isinstance(error, InvalidArgument) and error.violations:
        shown = list(error.violations[:MAX_VIOLATIONS])
        if len(error.violations) > MAX_VIOLATIONS:
            rest = len(error.violations) - MAX_VIOLATIONS
            shown.append(FieldViolation("", f"… and {rest} more problems"))
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=v.field, description=v.description[:MAX_MESSAGE]
                )
                for v in shown
            ]
        )
        proto.details.add().Pack(bad_request)
    return rpc_status.to_status(proto)


def from_rpc_error(error: grpc.aio.AioRpcError) -> OrchestratorError:
    """The domain error a failed call stands for; a plain
    `OrchestratorError` for codes the server never sends on purpose."""
    code = error.code()
    message = error.details() or code.name
    cls = BY_CODE.get(code)
    if cls is InvalidArgument:
        return InvalidArgument(message, violations=violations(error))
    if cls is None:
        return OrchestratorError(f"{code.name}: {message}")
    return cls(message)


def violations(error: grpc.aio.AioRpcError) -> list[FieldViolation]:
    """The field violations a failed call carries in its rich status."""
    try:
        # An aio error is a grpc.Call in all but name: same methods.
        status = rpc_status.from_call(error)  # type: ignore[arg-type]
    except ValueError:  # details disagree with the status: no rich status to trust
        return []
    found: list[FieldViolation] = []
    for detail in status.details if status else ():
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(bad_request):
            found.extend(
                FieldViolation(v.field, v.description) for v in bad_request.field_violations
            )
    return found
